[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
T0=$(date +%s)
B="python3 scripts/bench_networks_gpu.py --nets MPSI --mamba-src .mamba_src/mamba_ssm-2.3.2.post1"
$B --out $OUT/net18i --skip-train --modes ref fp32-cuda-graph tf32-cuda-graph tf32-cuda-compile-graph --deadline 480 2>&1 | grep -v "^$" | grep -v "^| MPSI.*(train\|^##\|^| ---\|^| network" 
echo "infer done $(( $(date +%s) - T0 )) s"
$B --out $OUT/net18t --skip-infer --modes ref tf32-cuda-graph-lean1 --deadline 120 2>&1 | grep "^train"
echo "end $(( $(date +%s) - T0 )) s"

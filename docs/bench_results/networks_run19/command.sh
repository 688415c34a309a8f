[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
T0=$(date +%s)
python3 scripts/bench_networks_gpu.py --nets MPSI MMA-B --mamba-src .mamba_src/mamba_ssm-2.3.2.post1 --out $OUT/net19 --skip-train --modes ref tf32-cuda-graph tf32-cuda-compile-graph --deadline 500 2>&1 | grep -v "^$" | grep "^infer\|^| M\|built"
echo "end $(( $(date +%s) - T0 )) s"

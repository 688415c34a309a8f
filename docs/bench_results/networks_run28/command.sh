[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
echo "tests+grid $(( $(date +%s) - T0 )) s"; wait; echo "build $(( $(date +%s) - T0 )) s"
timeout $(( 585 - ($(date +%s) - T0) )) python3 scripts/bench_networks_gpu.py --nets MMA-B MambaIRv2-B --mamba-src $M --out $OUT/net28 --skip-train --modes ref tf32-cuda-compile-graph --infer-iters 20 --deadline 300 > $OUT/net.log 2>&1
grep "^infer\|^| M\|built" $OUT/net.log
echo "end $(( $(date +%s) - T0 )) s"

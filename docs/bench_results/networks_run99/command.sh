[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r99; mkdir -p $R
python3 scripts/bench_networks_gpu.py --nets MMA-B MambaIRv2-B MambaIRv2-light --out $R/net99 --skip-infer --modes tf32-cuda-graph-lean1 bf16-cuda-graph --steps 20 --deadline 420 > $OUT/net.log 2>&1
grep -E "^train|^\| M|rror" $OUT/net.log | head -20
echo "end $(( $(date +%s) - T0 )) s"
tar czf $OUT/results.tgz -C $R .

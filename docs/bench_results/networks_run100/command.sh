[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r100; mkdir -p $R
for i in 1 2; do
python3 scripts/bench_networks_gpu.py --nets MMA-B --out $R/net100_default$i --skip-infer --modes tf32-cuda-graph-lean1 --steps 30 --deadline 120 > $OUT/net_default$i.log 2>&1
grep -E "^train|rror" $OUT/net_default$i.log | head -3
python3 scripts/bench_networks_gpu.py --nets MMA-B --out $R/net100_dtu0$i --skip-infer --modes tf32-cuda-graph-lean1 --steps 30 --deadline 120 --scan-override DTU2=0 > $OUT/net_dtu0$i.log 2>&1
grep -E "^train|rror" $OUT/net_dtu0$i.log | head -3
echo "t $(( $(date +%s) - T0 )) s"
done
tar czf $OUT/results.tgz -C $R .

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_networks_gpu.py --nets MambaIRv2-light --out $OUT/net52 --skip-infer --modes tf32-cuda-graph bf16-cuda-graph --steps 20 --deadline 200 > $OUT/net.log 2>&1
grep -E "^train|^\| M|rror" $OUT/net.log | head; echo "tp $(( $(date +%s) - T0 )) s"
python3 scripts/bench_networks_gpu.py --nets MambaIRv2-light --out $OUT/net52_tp0 --skip-infer --modes tf32-cuda-graph bf16-cuda-graph --steps 20 --deadline 200 --scan-override TP=0 > $OUT/net_tp0.log 2>&1
grep -E "^train|^\| M|rror" $OUT/net_tp0.log | head
echo "end $(( $(date +%s) - T0 )) s"

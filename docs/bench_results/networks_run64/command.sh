[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_networks_gpu.py --nets MMA-B MPSI --out $OUT/net64 --skip-train --modes tf32-cuda-graph bf16-cuda-graph --infer-iters 20 --deadline 200 > $OUT/net.log 2>&1
grep -E "^infer|^\| M|rror" $OUT/net.log | head -12
echo "default $(( $(date +%s) - T0 )) s"
python3 scripts/bench_networks_gpu.py --nets MMA-B MPSI --out $OUT/net64_old --skip-train --modes tf32-cuda-graph bf16-cuda-graph --infer-iters 20 --deadline 200 --scan-override ASYNC=0 DEFER=0 > $OUT/net_old.log 2>&1
grep -E "^infer|^\| M|rror" $OUT/net_old.log | head -12
echo "end $(( $(date +%s) - T0 )) s"

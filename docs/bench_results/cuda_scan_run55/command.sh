[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/scan55 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MPSI MMA-B --cuda-variants-grad "" T=16 T=16,NS=2 NS=2 T=16,NS=2,BWD_MINB=2 T=16,NS=2,NTHREADS=256 T=16,TF=32 "" > $OUT/bench.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench.log | head -60
echo "end $(( $(date +%s) - T0 )) s"

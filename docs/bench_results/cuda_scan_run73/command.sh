[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/var73 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MMA-B MPSI "MMA-B infer 256^2" --cuda-variants "" NTHREADS=64 NTHREADS=64,T=32 T=32 NS=4 NS=4,T=32 NS=4,NTHREADS=64 NTHREADS=64,SEG_WARPS=64 T=32,SEG_WARPS=64 NTHREADS=64,T=32,SEG_WARPS=64 NTHREADS=32 "" > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

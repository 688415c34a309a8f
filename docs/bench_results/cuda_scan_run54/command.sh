[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/scan54 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MPSI "MMA-B infer 256^2" --cuda-variants-grad "" BWD_MINB=2 NS=2 NS=8 T=16 TF=32 NTHREADS=256 SEG_WARPS=8 SEG_WARPS=32 "" > $OUT/bench.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench.log | head -60
echo "grad $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $OUT/scan54f --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MPSI MMA-B "MMA-B infer 256^2" --cuda-variants "" NS=1 NS=4 PG=8 TF=32 NTHREADS=256 SEG_WARPS=16 SEG_WARPS=64 SEG_MAX=256 "" > $OUT/bench_f.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench_f.log | head -60
echo "end $(( $(date +%s) - T0 )) s"

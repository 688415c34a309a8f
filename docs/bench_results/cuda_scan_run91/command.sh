[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r91; mkdir -p $R
python3 -m pytest -q -m gpu tests/test_cuda_scan.py -k "time_parallel" -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
echo "tests $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $R/var91a --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants "" TP_FASTMASK=0 "" TP_FASTMASK=0 "" TP_FASTMASK=0 > $OUT/variants_a.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants_a.log | head -20
echo "a $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $R/var91b --skip-grid --skip-sweep --skip-timing --impls cuda --shapes "MMA-B infer 256^2" --cuda-variants "" SEG_WARPS=64,SEG_MAX=512 SEG_WARPS=96,SEG_MAX=512 SEG_WARPS=128,SEG_MAX=512 SEG_WARPS=64,SEG_MAX=512,FNTHREADS=128 SEGMENTS=88 SEGMENTS=176 "" > $OUT/variants_b.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants_b.log | head -20
echo "end $(( $(date +%s) - T0 )) s"
tar czf $OUT/results.tgz -C $R .

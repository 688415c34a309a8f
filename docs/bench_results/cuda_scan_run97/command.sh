[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r97; mkdir -p $R
python3 -m pytest -q -m gpu tests/test_cuda_scan.py -k "time_parallel" -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
echo "tests $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $R/var97 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants "" TP_RCA=1 TP_BCA=1 TP_BCA=1,TP_RCA=1 TP_BCA=0 "" TP_RCA=1 TP_BCA=1,TP_RCA=1 TP_BCA=0,TP_RCA=0 > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -20
echo "end $(( $(date +%s) - T0 )) s"
tar czf $OUT/results.tgz -C $R .

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r93; mkdir -p $R
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
echo "tests $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $R/var93 --skip-grid --skip-sweep --skip-timing --impls cuda --cuda-variants "" DTU2=0 "" DTU2=0 "" DTU2=0 --cuda-variants-grad "" DTU2=0 "" DTU2=0 > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -30
echo "var $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $R/grid93 --skip-sweep --skip-timing --impls cuda --grid-impls cuda > $OUT/grid.log 2>&1
grep -c " ok " $OUT/grid.log; grep -E "FAIL|fail" $OUT/grid.log | head -3
echo "end $(( $(date +%s) - T0 )) s"
tar czf $OUT/results.tgz -C $R .

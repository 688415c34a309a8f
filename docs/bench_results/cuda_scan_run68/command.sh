[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 -m pytest -q -m gpu tests/test_cuda_scan.py -p no:cacheprovider -k "async or float64 or reverse" > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
python3 scripts/bench_gpu.py --out $OUT/var68 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MMA-B MPSI --cuda-variants "" > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -10
echo "end $(( $(date +%s) - T0 )) s"

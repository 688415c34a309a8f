[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -14
echo "tests $(( $(date +%s) - T0 )) s"
for o in "" TP=0; do for g in "" --no-grad; do python3 scripts/profile_cuda_scan.py MambaIRv2-light MMA-B --host-time $g --override "$o" 2>&1 | grep host; done; done
python3 .whl/host3.py cuda fake 2>&1 | head -2
python3 scripts/bench_gpu.py --out $OUT/scan37 --skip-sweep --skip-timing --impls cuda --grid-impls cuda > $OUT/bench.log 2>&1
grep -E "pass|FAIL|fail" $OUT/bench.log | grep -v " ok " | head; grep -c " ok " $OUT/bench.log
echo "end $(( $(date +%s) - T0 )) s"

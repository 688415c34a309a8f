[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; tail -2 $OUT/gpu_tests.log
python3 scripts/bench_gpu.py --out $OUT/scan24 --skip-grid --skip-sweep --skip-timing --impls cuda --cuda-variants "" PG=2 PG=4 PG=8 PG=16 NS=4 NS=4,PG=4 > $OUT/bench.log 2>&1
grep "^|" $OUT/bench.log; grep -i "fail" $OUT/bench.log | head
echo "variants $(( $(date +%s) - T0 )) s"
python3 scripts/profile_cuda_scan.py MambaIRv2-light --iters 3 --torch-profile > $OUT/prof_light_fb.txt 2>&1
head -40 $OUT/prof_light_fb.txt | cut -c1-160
echo "end $(( $(date +%s) - T0 )) s"

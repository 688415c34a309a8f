[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; tail -2 $OUT/gpu_tests.log
echo "tests $(( $(date +%s) - T0 )) s"; wait; echo "build $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $OUT/scan26 --mamba-src $M --skip-sweep --impls cuda --grid-impls cuda --deadline 300 --cuda-variants "" SEG_WARPS=16 SEG_WARPS=24 SEG_WARPS=48 SEG_WARPS=64,SEG_MAX=256 --cuda-variants-grad "" TF=8 > $OUT/bench.log 2>&1
grep -E "pass|FAIL|fail" $OUT/bench.log | grep -v " ok " | head; grep -c " ok " $OUT/bench.log
grep -E "^[A-Za-z].* (cuda|mamba) |^\|" $OUT/bench.log
echo "end $(( $(date +%s) - T0 )) s"

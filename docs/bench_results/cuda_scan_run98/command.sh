[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1; R=/tmp/r98; mkdir -p $R
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
python3 scripts/bench_gpu.py --out $R/grid98 --skip-sweep --skip-timing --impls cuda --grid-impls cuda > $OUT/grid.log 2>&1
grep -c " ok " $OUT/grid.log; grep -E "FAIL|fail" $OUT/grid.log | head -3
echo "tests+grid $(( $(date +%s) - T0 )) s"; wait; echo "build $(( $(date +%s) - T0 )) s"; tail -2 /tmp/build.log
timeout $(( 585 - ($(date +%s) - T0) )) python3 scripts/bench_gpu.py --out $R/scan98 --mamba-src $M --skip-grid --skip-sweep --impls cuda --deadline 60 > $OUT/bench.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench.log | head -30
tar czf $OUT/results.tgz -C $R .
echo "end $(( $(date +%s) - T0 )) s"

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -14
echo "tests $(( $(date +%s) - T0 )) s"
for o in "" TP=0; do for g in "" --no-grad; do python3 scripts/profile_cuda_scan.py MambaIRv2-light MMA-B MPSI --host-time $g --override "$o" 2>&1 | grep -E "host|Error" | cut -c1-200; done; done > $OUT/host_time.txt; cat $OUT/host_time.txt
wait; echo "build $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $OUT/scan39 --mamba-src $M --skip-grid --skip-sweep --impls cuda --deadline 300 --cuda-variants "" TP=0 --cuda-variants-grad "" TP=0 TP_MINB=2 > $OUT/bench.log 2>&1
grep -E "^[A-Za-z].* (cuda|mamba) |^\||FAIL|rror" $OUT/bench.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

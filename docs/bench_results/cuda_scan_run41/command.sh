[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 -m pytest -q -m gpu tests/test_cuda_scan.py -p no:cacheprovider -k "time_parallel or reverse or fresh" > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
S="--section SpeedOfLight --section WarpStateStats --section InstructionStats --section SourceCounters --section Occupancy"
for v in 3 2; do
timeout 100 ncu --kernel-name regex:ssm_bwd_tp --launch-skip 1 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MambaIRv2-light --iters 3 --override TP_MINB=$v > $OUT/ncu_bwd_minb$v.txt 2>&1
grep -E "Duration|Issued Instructions  |Registers Per|Achieved Active|excessive" $OUT/ncu_bwd_minb$v.txt | head -8
done
python3 scripts/bench_gpu.py --out $OUT/scan41 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants-grad "" TP=0 TP_MINB=2 > $OUT/bench.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

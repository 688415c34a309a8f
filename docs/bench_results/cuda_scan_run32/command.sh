[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 -m pytest -q -m gpu tests/test_cuda_scan.py -p no:cacheprovider -k "time_parallel or reverse" > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed" $OUT/gpu_tests.log | cut -c1-300 | tail -12
echo "tests $(( $(date +%s) - T0 )) s"
S="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats --section InstructionStats --section SchedulerStats"
for v in 1 0; do
timeout 100 ncu --kernel-name regex:ssm_fwd_tp --launch-skip 2 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MambaIRv2-light --no-grad --iters 4 --override TP_PF=$v > $OUT/ncu_tp_light_fp32_pf$v.txt 2>&1
grep -E "Duration|Issued Instructions  |Registers Per|Achieved Active|Eligible Warps|No Eligible|DRAM Through|highest-util" $OUT/ncu_tp_light_fp32_pf$v.txt | head -12
done
python3 scripts/bench_gpu.py --out $OUT/scan32 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants "" TP_PF=0 TP_MINB=4 TP_MINB=2 TP=0 "" TP_PF=0 TP_MINB=4 TP=0 --cuda-variants-grad "" TP=0 "" TP=0 > $OUT/bench.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

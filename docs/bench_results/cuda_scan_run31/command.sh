[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed" $OUT/gpu_tests.log | cut -c1-300 | tail -12
echo "tests $(( $(date +%s) - T0 )) s"
S="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats --section InstructionStats --section SchedulerStats"
timeout 100 ncu --kernel-name regex:ssm_fwd_tp --launch-skip 2 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MambaIRv2-light --no-grad --iters 4 > $OUT/ncu_tp_light_fp32.txt 2>&1
grep -E "Duration|Issued Instructions  |Registers Per|Achieved Active|Eligible Warps|No Eligible|Memory Throughput|DRAM Through|highest-util|fused" $OUT/ncu_tp_light_fp32.txt | head -12
python3 scripts/bench_gpu.py --out $OUT/scan31 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants "" TP=0 TP_MINB=3 TP_DB=8,TP_MINB=2 TP_T=16 --cuda-variants-grad "" TP=0 > $OUT/bench.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider -x > $OUT/gpu_tests.log 2>&1; tail -15 $OUT/gpu_tests.log | cut -c1-400
echo "tests $(( $(date +%s) - T0 )) s"
S="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats --section InstructionStats --section SchedulerStats"
timeout 100 ncu --kernel-name regex:ssm_fwd_tp --launch-skip 2 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MambaIRv2-light --no-grad --iters 4 > $OUT/ncu_tp_light_fp32.txt 2>&1
grep -E "Duration|Issued Instructions  |Registers Per|Achieved Active|Eligible Warps|No Eligible|Memory Throughput|DRAM Through" $OUT/ncu_tp_light_fp32.txt | head -12
echo "ncu $(( $(date +%s) - T0 )) s"; wait; echo "build $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $OUT/scan30 --mamba-src $M --skip-grid --skip-sweep --impls cuda --shapes MambaIRv2-light --deadline 300 --cuda-variants "" TP=0 TP_T=16,TP_MINB=2 TP_DB=8 TP_MINB=2 TP_MINB=4 --cuda-variants-grad "" TP=0 > $OUT/bench.log 2>&1
grep -E "^[A-Za-z].* (cuda|mamba) |^\||FAIL|rror" $OUT/bench.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

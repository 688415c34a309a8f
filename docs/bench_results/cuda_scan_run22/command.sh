[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); which ncu; nvidia-smi --query-gpu=name,clocks.max.sm --format=csv
S="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section WarpStateStats --section Occupancy --section LaunchStats --section InstructionStats --section SchedulerStats --section SourceCounters"
for cfg in "MMA-B fp32" "MMA-B bf16" "MambaIRv2-light fp32" "MPSI bf16"; do
  set -- $cfg
  MAMBA_SR_NVRTC_LINEINFO=1 timeout 120 ncu --kernel-name regex:ssm_fwd --launch-skip 2 --launch-count 2 $S python3 scripts/profile_cuda_scan.py $1 --no-grad --dtype $2 --iters 4 > $OUT/ncu_fwd_$1_$2.txt 2>&1
  echo "$cfg $(( $(date +%s) - T0 )) s"
done
MAMBA_SR_NVRTC_LINEINFO=1 timeout 150 ncu --kernel-name regex:ssm_ --launch-skip 4 --launch-count 4 $S python3 scripts/profile_cuda_scan.py MambaIRv2-light --iters 3 > $OUT/ncu_fb_light.txt 2>&1
echo "light fb $(( $(date +%s) - T0 )) s"
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; tail -2 $OUT/gpu_tests.log
timeout 200 python3 scripts/bench_gpu.py --out $OUT/scan22 --skip-grid --skip-sweep --impls cuda 2>&1 | grep -v "^\s*$" | tail -15
echo "end $(( $(date +%s) - T0 )) s"

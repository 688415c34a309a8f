[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; tail -2 $OUT/gpu_tests.log
S="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats --section InstructionStats --section SchedulerStats"
for cfg in "MMA-B fp32" "MMA-B bf16" "MPSI fp32"; do
  set -- $cfg
  timeout 100 ncu --kernel-name regex:ssm_fwd --launch-skip 2 --launch-count 1 $S python3 scripts/profile_cuda_scan.py $1 --no-grad --dtype $2 --iters 4 > $OUT/ncu_fwd_$1_$2.txt 2>&1
done
timeout 100 ncu --kernel-name regex:ssm_bwd --launch-skip 1 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MMA-B --dtype bf16 --iters 3 > $OUT/ncu_bwd_MMA-B_bf16.txt 2>&1
echo "tests+ncu $(( $(date +%s) - T0 )) s"; wait; echo "build $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $OUT/scan23 --mamba-src $M --skip-sweep --impls cuda --grid-impls cuda --deadline 300 > $OUT/bench.log 2>&1
grep -E "^\s*[0-9]+ +[0-9]+ .*(True|False|pass|FAIL)|FAILED|^[A-Za-z].* (cuda|mamba) " $OUT/bench.log | tail -45
echo "end $(( $(date +%s) - T0 )) s"

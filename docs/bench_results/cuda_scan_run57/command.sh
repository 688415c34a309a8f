[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
S="--section SpeedOfLight --section WarpStateStats --section InstructionStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy"
timeout 90 ncu --kernel-name regex:ssm_fwd --launch-skip 1 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MMA-B --no-grad --dtype bf16 --iters 3 > $OUT/ncu_mmab_fwd_bf16.txt 2>&1
grep -v "^==PROF==" $OUT/ncu_mmab_fwd_bf16.txt | grep -v "^\s*-*\s*$" | grep -vE "^\s+(OPT|INF|WRN)|^\s{10}" | cut -c1-120 | head -90

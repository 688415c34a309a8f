[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
S="--section SpeedOfLight --section WarpStateStats --section InstructionStats --section Occupancy"
i=0; for v in "" TP_BU=2 TP_BU=8; do i=$((i+1))
timeout 60 ncu --kernel-name regex:ssm_bwd_tp --launch-skip 1 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MambaIRv2-light --iters 3 ${v:+--override $v} > $OUT/ncu_bwd_v$i.txt 2>&1
echo "bwd v$i $v"; grep -E " Duration  | Executed Instructions  |Achieved Active|Warp Cycles Per Issued" $OUT/ncu_bwd_v$i.txt | head -5
done
echo "tests+ncu $(( $(date +%s) - T0 )) s"; wait; echo "build $(( $(date +%s) - T0 )) s"
timeout $(( 590 - ($(date +%s) - T0) )) python3 scripts/bench_gpu.py --out $OUT/scan48 --mamba-src $M --skip-grid --skip-sweep --impls cuda --shapes MambaIRv2-light --deadline 60 --cuda-variants-grad "" TP_BU=2 TP_BU=8 TP=0 > $OUT/bench.log 2>&1
grep -E "^[A-Za-z].* (cuda|mamba) |^\||FAIL|rror" $OUT/bench.log | head -60
echo "end $(( $(date +%s) - T0 )) s"

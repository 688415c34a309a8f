[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/scan53 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants "" TP_PF=0 TP_PF=1 TP_PF=2 TP_PF=3 "" TP_PF=2 > $OUT/bench.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench.log | head -60
S="--section SpeedOfLight --section WarpStateStats --section InstructionStats --section Occupancy"
i=0; for v in "" TP_PF=2; do i=$((i+1))
timeout 60 ncu --kernel-name regex:ssm_fwd_tp --launch-skip 1 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MambaIRv2-light --no-grad --iters 3 ${v:+--override $v} > $OUT/ncu_fwd_v$i.txt 2>&1
echo "fwd fp32 v$i $v"; grep -E " Duration  | Executed Instructions  |Warp Cycles Per Issued" $OUT/ncu_fwd_v$i.txt | head -5
done
echo "end $(( $(date +%s) - T0 )) s"

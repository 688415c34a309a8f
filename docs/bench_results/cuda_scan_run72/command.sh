[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/var72 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MMA-B MPSI "MMA-B infer 256^2" --cuda-variants "" NS=4 NS=1 T=32 NTHREADS=64 NTHREADS=256 PG=8 SEG_WARPS=16 SEG_WARPS=64 "" > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -40
echo "variants $(( $(date +%s) - T0 )) s"
S="--section SpeedOfLight --section InstructionStats --section WarpStateStats --section MemoryWorkloadAnalysis_Tables --print-details all"
timeout 90 ncu --kernel-name regex:'ssm_fwd$' --launch-skip 1 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MMA-B --no-grad --dtype bf16 --iters 3 > $OUT/ncu_mmab_fwd_bf16.txt 2>&1
grep -E " Duration  | Executed Instructions  |Warp Cycles Per Issued|L1/TEX Cache Throughput|Stall" $OUT/ncu_mmab_fwd_bf16.txt | head -20
echo "end $(( $(date +%s) - T0 )) s"

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/var71 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MMA-B MPSI "MMA-B infer 256^2" --cuda-variants "" BCD=0 "" BCD=0 > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -40
echo "variants $(( $(date +%s) - T0 )) s"
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
echo "tests $(( $(date +%s) - T0 )) s"
S="--section SpeedOfLight --section InstructionStats --section WarpStateStats --section MemoryWorkloadAnalysis_Tables"
timeout 90 ncu --kernel-name regex:'ssm_fwd$' --launch-skip 1 --launch-count 1 $S python3 scripts/profile_cuda_scan.py MMA-B --no-grad --dtype bf16 --iters 3 > $OUT/ncu_mmab_fwd_bf16.txt 2>&1
grep -E " Duration  | Executed Instructions  |Warp Cycles Per Issued|L1/TEX Cache Throughput|wavefronts_mem_shared.sum  " $OUT/ncu_mmab_fwd_bf16.txt | head -8
python3 scripts/bench_gpu.py --out $OUT/grid71 --skip-sweep --skip-timing --impls cuda --grid-impls cuda > $OUT/grid.log 2>&1
grep -c " ok " $OUT/grid.log; grep -E "FAIL|fail" $OUT/grid.log | head -3
echo "end $(( $(date +%s) - T0 )) s"

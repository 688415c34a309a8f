[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider -x > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
timeout 60 ncu --kernel-name regex:ssm_fwd --launch-skip 1 --launch-count 1 --section SpeedOfLight --section InstructionStats python3 scripts/profile_cuda_scan.py MMA-B --no-grad --dtype bf16 --iters 3 > $OUT/ncu_mmab_fwd_bf16.txt 2>&1
grep -E " Duration  | Executed Instructions  " $OUT/ncu_mmab_fwd_bf16.txt
python3 scripts/bench_gpu.py --out $OUT/scan59 --skip-grid --skip-sweep --skip-timing --impls cuda --cuda-variants "" --cuda-variants-grad "" > $OUT/bench.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

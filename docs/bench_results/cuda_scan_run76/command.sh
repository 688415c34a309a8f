[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/var76 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MMA-B MPSI "MMA-B infer 256^2" --cuda-variants-grad "" FNTHREADS=64 TF=32 FNTHREADS=64,TF=32 SEG_WARPS=24 "" > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -40
echo "variants $(( $(date +%s) - T0 )) s"
python3 -m pytest -q -m gpu tests/test_cuda_scan.py -k "time_parallel or without_autograd" -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
echo "tests $(( $(date +%s) - T0 )) s"
cat > /tmp/long.py <<'PY'
import sys, torch
sys.path.insert(0, '.')
from mamba_sr_archs.ops import cuda_scan as cs
g = torch.Generator(device='cuda').manual_seed(0)
b, d, L, n = 1, 384, 65536, 16
kw = dict(device='cuda', generator=g)
u, dt, z = (torch.randn(b, d, L, **kw).bfloat16() for _ in range(3))
A = -torch.rand(d, n, **kw) - 0.1
B, C = (torch.randn(b, 1, n, L, **kw).bfloat16() for _ in range(2))
D, bias = torch.randn(d, **kw), torch.randn(d, **kw)
with torch.no_grad():
    for _ in range(3):
        cs.selective_scan_cuda(u, dt, A, B, C, D, z, bias, delta_softplus=True)
torch.cuda.synchronize()
PY
timeout 90 ncu --kernel-name regex:'ssm_fwd$' --launch-skip 2 --launch-count 2 --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --print-details all python3 /tmp/long.py > $OUT/ncu_long_bf16.txt 2>&1
grep -E " Duration  |Grid Size|Block Size|Warp Cycles Per Issued|Achieved Active|Stall (Long|Short|Wait|Barrier|Not)" $OUT/ncu_long_bf16.txt | head -30
echo "end $(( $(date +%s) - T0 )) s"

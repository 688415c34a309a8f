[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1; R=/tmp/r81; mkdir -p $R
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -8
python3 scripts/bench_gpu.py --out $R/grid81 --skip-sweep --skip-timing --impls cuda --grid-impls cuda > $OUT/grid.log 2>&1
grep -c " ok " $OUT/grid.log; grep -E "FAIL|fail" $OUT/grid.log | head -3
echo "tests+grid $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $R/varg81 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes "MMA-B infer 256^2" --cuda-variants-grad "" SEG_WARPS=24 SEG_WARPS=32 SEG_WARPS=12 "" > $OUT/variants_grad.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants_grad.log | head -20
cat > /tmp/long.py <<'PY'
import sys, torch
sys.path.insert(0, '.')
from mamba_sr_archs.ops import cuda_scan as cs
g = torch.Generator(device='cuda').manual_seed(0)
b, d, L, n = 1, 384, 65536, 16
kw = dict(device='cuda', generator=g)
u, dt, z = (torch.randn(b, d, L, **kw).bfloat16().requires_grad_() for _ in range(3))
A = (-torch.rand(d, n, **kw) - 0.1).requires_grad_()
B, C = (torch.randn(b, 1, n, L, **kw).bfloat16().requires_grad_() for _ in range(2))
D, bias = torch.randn(d, **kw).requires_grad_(), torch.randn(d, **kw).requires_grad_()
for _ in range(3):
    y = cs.selective_scan_cuda(u, dt, A, B, C, D, z, bias, delta_softplus=True)
    y.backward(torch.ones_like(y))
torch.cuda.synchronize()
PY
timeout 120 ncu --kernel-name regex:'ssm_' --launch-skip 8 --launch-count 4 --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --print-details all python3 /tmp/long.py > $OUT/ncu_long_fb_bf16.txt 2>&1
grep -E "^  ssm| Duration  |Pipe Xu|Issue Active|Warp Cycles Per Issued|Achieved Occ|Registers Per" $OUT/ncu_long_fb_bf16.txt | head -40
echo "ncu $(( $(date +%s) - T0 )) s"; wait; echo "build $(( $(date +%s) - T0 )) s"; tail -3 /tmp/build.log
timeout $(( 585 - ($(date +%s) - T0) )) python3 scripts/bench_gpu.py --out $R/scan81 --mamba-src $M --skip-grid --skip-sweep --impls cuda --deadline 60 > $OUT/bench.log 2>&1
grep -E "^\||FAIL|rror" $OUT/bench.log | head -30
tar czf $OUT/results.tgz -C $R .
echo "end $(( $(date +%s) - T0 )) s"

#!/usr/bin/env python
"""Run the NVRTC CUDA scan (forward + backward, twice) at a network's training shape, for a profiler.

Usage on a CUDA machine (the numbers in docs/benchmarks.md came from this):
    MAMBA_SR_NVRTC_LINEINFO=1 ncu --kernel-name regex:ssm_ --launch-skip 2 --launch-count 2 \\
        --section SpeedOfLight --section InstructionStats --section WarpStateStats \\
        python scripts/profile_cuda_scan.py MMA-B
MAMBA_SR_NVRTC_LINEINFO=1 adds source lines to the kernels, for ncu's source view.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mamba_sr_archs.ops import cuda_scan  # noqa: E402

# name -> (batch, channels, L, N, grouped B/C (b, 1, N, L), gate z): the scan calls of the networks' training steps
SHAPES = {'MambaIRv2-light': (16, 96, 4096, 8, True, False), 'MMA-B': (16, 384, 4096, 16, False, True),
          'MPSI': (16, 240, 4096, 32, False, True)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('shapes', nargs='+', choices=list(SHAPES))
    ap.add_argument('--iters', type=int, default=2)
    args = ap.parse_args()
    for name in args.shapes:
        b, d, L, N, grouped, has_z = SHAPES[name]
        kw = dict(device='cuda')
        bc_shape = (b, 1, N, L) if grouped else (b, N, L)
        ins = [torch.randn(b, d, L, **kw), torch.randn(b, d, L, **kw) * 0.5 - 1, -torch.rand(d, N, **kw) - 0.1,
               torch.randn(*bc_shape, **kw), torch.randn(*bc_shape, **kw), torch.randn(d, **kw),
               torch.randn(b, d, L, **kw) if has_z else None, torch.randn(d, **kw) * 0.1]
        for t in ins:
            if t is not None:
                t.requires_grad_()
        for _ in range(args.iters):
            out = cuda_scan.selective_scan_cuda(*ins, delta_softplus=True)
            out.backward(torch.ones_like(out))
        torch.cuda.synchronize()
        print(f'{name}: ok, config {cuda_scan.launch_config(b, d, 1, N, L)}')


if __name__ == '__main__':
    main()

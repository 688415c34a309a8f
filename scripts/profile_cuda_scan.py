#!/usr/bin/env python
"""Run the NVRTC CUDA scan (forward + backward, twice) at a network's training shape, for a profiler.

Usage on a CUDA machine (the numbers in docs/benchmarks.md came from this):
    MAMBA_SR_NVRTC_LINEINFO=1 ncu --kernel-name regex:ssm_ --launch-skip 2 --launch-count 2 \\
        --section SpeedOfLight --section InstructionStats --section WarpStateStats \\
        python scripts/profile_cuda_scan.py MMA-B
(``--no-grad``: the forward without autograd, as at inference; ``--dtype bf16``: bf16 inputs; ``--override TP=0``:
another launch configuration.)
MAMBA_SR_NVRTC_LINEINFO=1 adds source lines to the kernels, for ncu's source view.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamba_sr_archs.ops import cuda_scan  # noqa: E402
from bench_gpu import host_and_wall, parse_override  # noqa: E402  (shared with the GPU benchmarks)

# name -> (batch, channels, L, N, grouped B/C (b, 1, N, L), gate z): the scan calls of the networks' training steps
SHAPES = {'MambaIRv2-light': (16, 96, 4096, 8, True, False), 'MMA-B': (16, 384, 4096, 16, False, True),
          'MPSI': (16, 240, 4096, 32, False, True)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('shapes', nargs='+', choices=list(SHAPES))
    ap.add_argument('--iters', type=int, default=2)
    ap.add_argument('--no-grad', action='store_true', help='forward without autograd only (the inference kernels)')
    ap.add_argument('--dtype', choices=['fp32', 'bf16'], default='fp32', help='dtype of u, delta, B, C, z')
    ap.add_argument('--torch-profile', action='store_true',
                    help="print torch.profiler's table of the last iteration (every kernel and copy, not only the scan)")
    ap.add_argument('--host-time', action='store_true',
                    help='time 50 steps: host time to issue them (no sync) and wall time to finish them')
    ap.add_argument('--override', default='', metavar='KEY=INT[,KEY=INT]',
                    help='cuda_scan._CONFIG_OVERRIDE entries for the run, e.g. TP=0 or TP_PF=0')
    args = ap.parse_args()
    cuda_scan._CONFIG_OVERRIDE.update(parse_override(args.override))
    dtype = {'fp32': torch.float32, 'bf16': torch.bfloat16}[args.dtype]
    for name in args.shapes:
        b, d, L, N, grouped, has_z = SHAPES[name]
        kw = dict(device='cuda')
        bc_shape = (b, 1, N, L) if grouped else (b, N, L)
        ins = [torch.randn(b, d, L, **kw), torch.randn(b, d, L, **kw) * 0.5 - 1, -torch.rand(d, N, **kw) - 0.1,
               torch.randn(*bc_shape, **kw), torch.randn(*bc_shape, **kw), torch.randn(d, **kw),
               torch.randn(b, d, L, **kw) if has_z else None, torch.randn(d, **kw) * 0.1]
        for i in (0, 1, 3, 4, 6):
            if ins[i] is not None:
                ins[i] = ins[i].to(dtype)
        for t in ins:
            if t is not None:
                t.requires_grad_(not args.no_grad)
        def step():
            out = cuda_scan.selective_scan_cuda(*ins, delta_softplus=True)
            if not args.no_grad:
                out.backward(torch.ones_like(out))
        for _ in range(args.iters):
            step()
        torch.cuda.synchronize()
        if args.host_time:
            def step_zero():
                step()
                for t in ins:                   # as zero_grad(set_to_none=True) does between training steps
                    if t is not None:
                        t.grad = None
            step_zero()
            host, wall = host_and_wall(step_zero, 50)
            print(f'{name} {args.dtype} {args.override or "defaults"}: host issue {host * 1e3:.3f} ms/step, '
                  f'wall {wall * 1e3:.3f} ms/step')
        if args.torch_profile:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                step()
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by='cuda_time_total', row_limit=25, max_name_column_width=60))
        print(f'{name} {args.dtype}: ok, config {cuda_scan.launch_config(b, d, 1, N, L, grad=not args.no_grad)}')


if __name__ == '__main__':
    main()

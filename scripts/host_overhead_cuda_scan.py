#!/usr/bin/env python
"""Host (CPU) time of one forward+backward call of the CUDA scan at MambaIRv2-light's shape, with and without the
GPU work, to see how much of a call's wall time is Python, PyTorch and autograd.

    python scripts/host_overhead_cuda_scan.py cpu fake     # CPU tensors, launches skipped: Python + autograd only
    python scripts/host_overhead_cuda_scan.py cuda fake    # CUDA tensors (allocations, fills), launches skipped
    python scripts/host_overhead_cuda_scan.py cuda real    # the real calls: host issue time and wall time

Prints microseconds per step for the time-parallel kernels (TP=1) and the lane kernels (TP=0); ``cpu fake`` and
``cuda fake`` also print a cProfile table.  Results: docs/bench_results/cuda_scan_run35 and docs/benchmarks.md.
"""
import cProfile
import os
import pstats
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamba_sr_archs.ops import cuda_scan as cs  # noqa: E402
from bench_gpu import host_and_wall  # noqa: E402  (shared with profile_cuda_scan.py --host-time)


class _NoKernel:
    func, nthreads = None, 0


def _fill_slots_only(plan, tensors, device):
    plan.fill(tensors)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ('cpu', 'cuda') or sys.argv[2] not in ('fake', 'real'):
        sys.exit(__doc__)
    dev, mode = sys.argv[1:]
    if mode == 'fake':
        cs._kernel = lambda name, defines, device: _NoKernel()
        cs._Plan.run = _fill_slots_only
        cs._sm_count = lambda d: 132
        cs._SCAN.check_ready = lambda u: None
    elif dev == 'cpu':
        sys.exit('real launches need CUDA tensors')
    b, d, L, N = 16, 96, (64 if dev == 'cpu' else 4096), 8
    ins = [torch.randn(b, d, L), torch.randn(b, d, L), -torch.rand(d, N), torch.randn(b, 1, N, L),
           torch.randn(b, 1, N, L), torch.randn(d), None, torch.randn(d)]
    ins = [t.to(dev).requires_grad_() if t is not None else None for t in ins]

    def step():
        out = cs.selective_scan_cuda(*ins, delta_softplus=True)
        out.backward(torch.ones_like(out))
        for t in ins:
            if t is not None:
                t.grad = None

    for tp in (1, 0):
        cs._CONFIG_OVERRIDE['TP'] = tp
        for _ in range(5):
            step()
        host, wall = host_and_wall(step, 100, cuda=dev == 'cuda')
        print(f'{dev} {mode} TP={tp}: f+b host {host * 1e6:.1f} us/step, wall {wall * 1e6:.1f} us/step')
    if mode == 'fake':
        prof = cProfile.Profile()
        prof.runcall(lambda: [step() for _ in range(100)])
        pstats.Stats(prof).sort_stats('tottime').print_stats(20)


if __name__ == '__main__':
    main()

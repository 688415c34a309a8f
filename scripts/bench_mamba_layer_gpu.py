#!/usr/bin/env python
"""One Mamba layer, forward + backward, plain vs memory-lean (``ops.mamba_inner``), on a CUDA GPU.

At the training shapes of the networks that use the layer (TF32 on, our CUDA scan): MMA-B's Vim layer (d_model 192,
N 16, conv 4, expand 2, bidirectional; batch 4, 64x64 tokens) and MPSI's channel-Mamba layer (d_model 60, N 32,
conv 3, expand 4, bidirectional; batch 8, 64x64).  Paths: ``plain`` (autograd through conv, projections and the
scan), ``lean1`` (mamba_inner keeping the scan checkpoints), ``lean2`` (mamba_inner keeping none: the default);
each eagerly and under torch.compile (the layer alone).  Prints median ms of forward+backward, the memory the
forward leaves for the backward (allocated after the forward minus before), and with ``--profile`` the top CUDA
kernels of one eager step per path.

    python scripts/bench_mamba_layer_gpu.py [--iters 30] [--profile] [--out DIR]
"""
import argparse
import json
import os
import statistics
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mamba_sr_archs.archs.mamba_layer import Mamba  # noqa: E402

LAYERS = {   # name -> (Mamba kwargs, batch, tokens)
    'MMA-B vim': (dict(d_model=192, d_state=16, d_conv=4, expand=2, bimamba_type='v2'), 4, 4096),
    'MPSI cmb': (dict(d_model=60, d_state=32, d_conv=3, expand=4, bimamba_type='v2'), 8, 4096),
}
PATHS = {'plain': False, 'lean1': 1, 'lean2': 2}   # -> Mamba.lean_memory


def step_fn(layer, x, w):
    def step():
        out = layer(x)
        (out * w).sum().backward()
    return step


def time_ms(fn, iters):
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def kept_mb(layer, x):
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    out = layer(x)
    torch.cuda.synchronize()
    kept = torch.cuda.memory_allocated() - before - out.numel() * out.element_size()
    del out
    return kept / 2**20


def profile_top(fn, n=12):
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by='cuda_time_total', row_limit=n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--iters', type=int, default=30)
    ap.add_argument('--profile', action='store_true')
    ap.add_argument('--no-compile', action='store_true')
    ap.add_argument('--out', default=os.environ.get('OUT'))
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    os.environ['MAMBA_SR_SCAN_BACKEND'] = 'cuda'
    print('GPU', torch.cuda.get_device_name(), 'torch', torch.__version__)
    results = []
    for lname, (kw, batch, tokens) in LAYERS.items():
        torch.manual_seed(0)
        layer = Mamba(**kw).cuda()
        x = torch.randn(batch, tokens, kw['d_model'], device='cuda', requires_grad=True)
        w = torch.randn_like(x)
        for compiled in ((False,) if args.no_compile else (False, True)):
            for pname, level in PATHS.items():
                layer.lean_memory = level
                torch._dynamo.reset()
                fwd = torch.compile(layer) if compiled else layer
                ms = time_ms(step_fn(fwd, x, w), args.iters)
                mb = kept_mb(fwd, x)
                row = dict(layer=lname, path=pname, compiled=compiled, fwd_bwd_ms=ms, kept_mb=mb)
                results.append(row)
                print(f"{lname:10s} {pname:6s} {'compile' if compiled else 'eager':7s} fwd+bwd {ms:7.3f} ms  "
                      f"kept for backward {mb:7.1f} MB", flush=True)
                if args.profile and not compiled:
                    print(profile_top(step_fn(fwd, x, w)), flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, 'mamba_layer.json'), 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""Check and time the Triton selective scan on a CUDA GPU, in one call.

Sections (each guarded, so one failure does not hide the others):

1. environment (GPU, torch, triton) and the measured device-to-device copy bandwidth (bytes read + written);
2. correctness grid: Triton forward/backward against a float64 sequential reference run on the GPU
   (norm-relative error of out, last state and every input gradient; fp32 gate 1e-4, bf16 gate 1e-2),
   outputs poisoned with NaN beforehand, forward run twice and compared bit for bit; extreme valid values
   (delta up to 10 after softplus, A in [-64, -1e-3]) must stay finite;
3. timings (median of triton.testing.do_bench) of forward and forward+backward at the networks' scan shapes,
   with the HBM floor (bytes that must move / measured copy bandwidth) beside each: eager calls, and the same call
   replayed from a CUDA graph (the GPU's time alone); with mamba_ssm, its time / ours for each;
4. a small launch-configuration sweep;
5. optionally mamba_ssm's CUDA kernel (built here for the present GPU's arch only from an sdist folder given by
   --mamba-src; the build runs in a background process while sections 2-4 run).

Usage: python scripts/bench_gpu.py [--out DIR] [--mamba-src PATH] [--skip-grid] [--skip-sweep]
Writes results.json and a text log of the tables into --out (default $OUT, else docs/bench_results).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mamba_sr_archs.ops import cuda_scan as cs  # noqa: E402
from mamba_sr_archs.ops import triton_scan as ts  # noqa: E402

# The compiled scan backends of this package: name -> (module, selective_scan function).
BACKENDS = {'triton': (ts, ts.selective_scan_triton), 'cuda': (cs, cs.selective_scan_cuda)}

LOG_LINES = []


def write_results(out_dir, results):
    """results.json (every number) and log.txt (the printed tables) into ``out_dir``."""
    with open(os.path.join(out_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(out_dir, 'log.txt'), 'w') as f:
        f.write('\n'.join(LOG_LINES) + '\n')


def guarded(name, fn, after=None):
    """Run one benchmark section; a failure is logged (with its traceback) and the next section still runs."""
    try:
        fn()
    except Exception as exc:
        log(f'{name} failed: {exc!r}')
        traceback.print_exc()
    if after is not None:
        after()


def log(*args):
    line = ' '.join(str(a) for a in args)
    LOG_LINES.append(line)
    print(line, flush=True)


# ----------------------------------------------------------------------------------------------- reference

def scan_ref64(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Sequential selective scan in the inputs' dtype (float64 here); returns (out, last_state)."""
    b, d, L = u.shape
    dt = delta + delta_bias[:, None] if delta_bias is not None else delta
    if delta_softplus:
        dt = F.softplus(dt)
    B4 = B if B.dim() == 4 else B[:, None]
    C4 = C if C.dim() == 4 else C[:, None]
    B4 = B4.repeat_interleave(d // B4.shape[1], 1)  # (b, d, N, L)
    C4 = C4.repeat_interleave(d // C4.shape[1], 1)
    dA = torch.exp(dt[..., None] * A[:, None, :])                   # (b, d, L, N)
    dBu = (dt * u)[..., None] * B4.transpose(-1, -2)                 # (b, d, L, N)
    x = u.new_zeros(b, d, A.shape[1])
    xs = []
    for t in range(L):
        x = torch.addcmul(dBu[:, :, t], dA[:, :, t], x)
        xs.append(x)
    H = torch.stack(xs, 2)
    y = (H * C4.transpose(-1, -2)).sum(-1)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y, x


def rel_err(a, r):
    a = a.double()
    r = r.double()
    nr = r.norm().item()
    diff = (a - r).norm().item()
    return diff / nr if nr > 0 else diff


NAMES = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias']


def make_inputs(b, d, L, N, G, has_z=True, has_D=True, has_bias=True, softplus=True, extreme=False, seed=0):
    """Random float64 inputs on the GPU. G=0 means B, C of shape (b, N, L); G>=1 (b, G, N, L)."""
    gen = torch.Generator(device='cuda').manual_seed(seed)
    kw = dict(dtype=torch.float64, device='cuda', generator=gen)
    u = torch.randn(b, d, L, **kw)
    if extreme:
        # softplus(delta + bias) spans ~0 .. 10; |A| log-uniform over [1e-3, 64], both ends present.
        delta = torch.rand(b, d, L, **kw) * 19.5 - 10 if softplus else torch.rand(b, d, L, **kw) * 10
        lo, hi = math.log(1e-3), math.log(64.0)
        A = -torch.exp(torch.rand(d, N, **kw) * (hi - lo) + lo)
        A[0, 0], A[-1, -1] = -64.0, -1e-3
    else:
        delta = torch.randn(b, d, L, **kw) * 0.5 - 1.0 if softplus else torch.rand(b, d, L, **kw) * 0.2
        A = -(torch.rand(d, N, **kw) * 8 + 0.05)
    shape_bc = (b, G, N, L) if G else (b, N, L)
    B = torch.randn(*shape_bc, **kw)
    C = torch.randn(*shape_bc, **kw)
    D = torch.randn(d, **kw) if has_D else None
    z = torch.randn(b, d, L, **kw) if has_z else None
    bias = torch.randn(d, **kw) * 0.5 if has_bias else None
    return [u, delta, A, B, C, D, z, bias]


def cast_inputs(ins, dtype):
    """u, delta, B, C, z take `dtype`; A, D, delta_bias stay float32 (as in the networks)."""
    out = []
    for i, t in enumerate(ins):
        if t is None:
            out.append(None)
        elif NAMES[i] in ('A', 'D', 'delta_bias'):
            out.append(t.float())
        else:
            out.append(t.to(dtype))
    return out


def check_case(case, dtype, backend='triton'):
    b, d, L, N, G = case['b'], case['d'], case['L'], case['N'], case['G']
    flags = dict(has_z=case.get('z', True), has_D=case.get('D', True), has_bias=case.get('bias', True),
                 softplus=case.get('softplus', True), extreme=case.get('extreme', False))
    ins64 = make_inputs(b, d, L, N, G, seed=case.get('seed', 0), **flags)
    ins = cast_inputs(ins64, dtype)
    # The reference sees exactly the (rounded) values the kernel sees, in float64.
    ref_in = [t.double().detach().requires_grad_() if t is not None else None for t in ins]
    y64, last64 = scan_ref64(*ref_in, delta_softplus=flags['softplus'])
    w = torch.randn(y64.shape, dtype=torch.float64, device='cuda').to(dtype).double()
    (y64 * w).sum().backward()

    tin = [t.detach().clone().requires_grad_() if t is not None else None for t in ins]
    mod, scan = BACKENDS[backend]
    mod._POISON_OUTPUTS = True
    try:
        out, last = scan(*tin, delta_softplus=flags['softplus'], return_last_state=True)
        out.backward(w.to(out.dtype))
        # Without autograd the forward may split long sequences into segments (num_segments): it is
        # checked against the reference too, and run twice to check that it is deterministic.
        with torch.no_grad():
            plain = [t.detach() if t is not None else None for t in tin]
            out2, last2 = scan(*plain, delta_softplus=flags['softplus'], return_last_state=True)
            out3, last3 = scan(*plain, delta_softplus=flags['softplus'], return_last_state=True)
        torch.cuda.synchronize()
    finally:
        mod._POISON_OUTPUTS = False
    res = {'out': rel_err(out, y64.detach()), 'last': rel_err(last, last64.detach()),
           'out_nograd': rel_err(out2, y64.detach()), 'last_nograd': rel_err(last2, last64.detach())}
    finite = bool(torch.isfinite(out).all() and torch.isfinite(last).all())
    for name, t, r in zip(NAMES, tin, ref_in):
        if t is not None:
            res['d' + name] = rel_err(t.grad, r.grad)
            finite &= bool(torch.isfinite(t.grad).all())
    finite &= bool(torch.isfinite(out2).all() and torch.isfinite(last2).all())
    deterministic = bool(torch.equal(out2, out3) and torch.equal(last2, last3))
    assert out.dtype == ins[0].dtype and last.dtype == torch.float32 and last.shape == (b, d, N)
    return res, finite, deterministic


GRID = [
    dict(b=1, d=16, L=1, N=16, G=0),
    dict(b=1, d=16, L=1, N=1, G=1, z=False, bias=False),
    dict(b=16, d=32, L=2047, N=8, G=1, z=False),                 # MambaIRv2-like call: grouped G=1, no z
    dict(b=1, d=24, L=2049, N=32, G=0),
    dict(b=2, d=48, L=4096, N=32, G=0),                          # MPSI-like: 16-channel blocks, cp.async chunks
    dict(b=16, d=16, L=2049, N=1, G=0, D=False),
    dict(b=16, d=16, L=4096, N=16, G=2),
    dict(b=1, d=40, L=4096, N=64, G=1),
    dict(b=2, d=48, L=4096, N=16, G=0, softplus=False, z=False, D=False, bias=False),
    dict(b=1, d=8, L=16384, N=64, G=0),
    dict(b=16, d=12, L=16384, N=8, G=3),
    dict(b=16, d=96, L=333, N=8, G=1, z=False),
    dict(b=2, d=16, L=2049, N=16, G=0, extreme=True),
    dict(b=2, d=16, L=2049, N=64, G=1, extreme=True, softplus=False),
]


def section_grid(results, backend='triton'):
    log(f'\n== Correctness: {backend} vs float64 sequential reference (norm-relative errors) ==')
    hdr = f"{'b':>3} {'d':>4} {'L':>6} {'N':>3} {'G':>2} {'flags':<18} {'dtype':<5} " \
          f"{'out':>8} {'last':>8} {'nograd':>8} {'worst grad':>16} {'finite':>6} {'det':>4} {'pass':>5}"
    log(hdr)
    rows = []
    all_ok = True
    for case in GRID:
        for dtype in (torch.float32, torch.bfloat16):
            t0 = time.time()
            try:
                errs, finite, det = check_case(case, dtype, backend)
            except Exception as exc:  # report and keep going
                log(f'FAILED {case} {dtype}: {exc!r}')
                traceback.print_exc()
                rows.append(dict(case=case, dtype=str(dtype), error=repr(exc)))
                all_ok = False
                continue
            tol = 1e-4 if dtype == torch.float32 else 1e-2
            grads = {k: v for k, v in errs.items() if k.startswith('d')}
            worst = max(grads, key=grads.get)
            if case.get('extreme'):
                ok = finite and det
            else:
                ok = finite and det and max(errs.values()) < tol
            all_ok &= ok
            flags = ','.join(k for k in ('z', 'D', 'bias', 'softplus') if case.get(k, True))
            if case.get('extreme'):
                flags += ',EXT'
            log(f"{case['b']:>3} {case['d']:>4} {case['L']:>6} {case['N']:>3} {case['G']:>2} {flags:<18} "
                f"{str(dtype)[6:][:5]:<5} {errs['out']:8.1e} {errs['last']:8.1e} {errs['out_nograd']:8.1e} "
                f"{worst + '=' + format(grads[worst], '.1e'):>16} {str(finite):>6} {str(det)[0]:>4} "
                f"{'ok' if ok else 'FAIL':>5}  ({time.time() - t0:.1f}s)")
            rows.append(dict(case=case, dtype=str(dtype), errors=errs, finite=finite, deterministic=det,
                             tolerance=None if case.get('extreme') else tol, passed=ok))
    log(f'grid ({backend}): {"ALL PASS" if all_ok else "SOME FAILED"}  (extreme rows gate on finiteness only)')
    suffix = '' if backend == 'triton' else '_' + backend
    results['grid' + suffix] = rows
    results['grid_all_pass' + suffix] = all_ok

    # Cross-check the repository's reference against the float64 one at a small shape.
    try:
        from mamba_sr_archs.ops import selective_scan_ref
        ins = make_inputs(2, 8, 67, 4, 2, seed=3)
        y_repo, s_repo = selective_scan_ref(*ins, delta_softplus=True, return_last_state=True)
        y64, s64 = scan_ref64(*ins, delta_softplus=True)
        e = rel_err(y_repo, y64)
        log(f'repo selective_scan_ref (float64 inputs) vs float64 reference: out rel err {e:.1e}, '
            f'last state {rel_err(s_repo, s64):.1e}')
        results['repo_ref_vs_ref64'] = e
    except Exception as exc:
        log(f'repo selective_scan_ref cross-check failed: {exc!r}')


# ----------------------------------------------------------------------------------------------- timing

def copy_bandwidth():
    from triton.testing import do_bench
    n = 1 << 28  # 1 GiB of float32
    x = torch.randn(n, device='cuda')
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=50, rep=300, return_mode='median')
    del x, y
    return 2 * n * 4 / (ms * 1e-3)


SHAPES = [
    # name, b, d, L, N, G (0: B/C (b,N,L)), z
    ('MambaIRv2-light', 16, 96, 4096, 8, 1, False),
    ('MMA-B', 16, 384, 4096, 16, 0, True),
    ('MPSI', 16, 240, 4096, 32, 0, True),
    ('MMA-B infer 256^2', 1, 384, 65536, 16, 0, True),
]


def floor_bytes(b, d, L, N, G, has_z, elt):
    g = max(G, 1)
    bdl = b * d * L * elt
    bc = 2 * b * g * N * L * elt
    fwd = bdl * (3 + has_z) + bc                    # read u, delta, (z), B, C; write out
    # read u, delta, (z), dout, B, C; write du, ddelta, (dz), dB, dC
    bwd = bdl * (3 + has_z) + bc + bdl * (2 + has_z) + bc
    return fwd, bwd


def timing_inputs(b, d, L, N, G, has_z, dtype, seed=0):
    ins = make_inputs(b, d, L, N, G, has_z=has_z, seed=seed)
    return cast_inputs(ins, dtype)


def time_fn(fn, ins, grad=False, rep=200):
    from triton.testing import do_bench
    if not grad:
        with torch.no_grad():
            return do_bench(lambda: fn(*ins), warmup=25, rep=rep, return_mode='median')
    leaves = [t.requires_grad_() for t in ins if t is not None]
    out = fn(*ins)
    g = torch.randn_like(out)
    del out

    def step():
        fn(*ins).backward(g)
    ms = do_bench(step, warmup=25, rep=rep, grad_to_none=leaves, return_mode='median')
    for t in leaves:
        t.requires_grad_(False)
        t.grad = None
    return ms


def host_and_wall(step, n, cuda=True):
    """Seconds per call of ``step`` over ``n`` calls: (host time to issue them, no sync in between; wall time until
    the GPU has finished them).  Where the first is the larger, the calls are bound by the host."""
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    t1 = time.perf_counter()
    if cuda:
        torch.cuda.synchronize()
    return (t1 - t0) / n, (time.perf_counter() - t0) / n


def time_fn_graph(fn, ins, grad=False, rep=200):
    """GPU time of one call (forward, or forward+backward with ``grad``): the call captured once in a CUDA graph and
    replayed, so the host's time to issue it is not in the figure (``time_fn`` includes it wherever the host is
    slower than the GPU)."""
    from triton.testing import do_bench
    leaves = [t.requires_grad_() for t in ins if t is not None] if grad else []
    try:
        with torch.set_grad_enabled(grad):
            gout = torch.randn_like(fn(*ins)) if grad else None

            def step():
                out = fn(*ins)
                if grad:
                    out.backward(gout)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):         # warm-up off the default stream, as graph capture asks
                for _ in range(3):
                    step()
            torch.cuda.current_stream().wait_stream(side)
            for t in leaves:
                t.grad = None                     # the captured backward writes fresh gradients on every replay
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
        return do_bench(graph.replay, warmup=25, rep=rep, return_mode='median')
    finally:
        for t in leaves:
            t.requires_grad_(False)
            t.grad = None


# One image at inference (LR 256x256 -> L = 65536, batch 1) at each network's scan width: (name, d, N, G, z).
SEGMENT_SHAPES = [('MambaIRv2-light infer', 96, 8, 1, False), ('MPSI infer', 120, 16, 0, True),
                  ('MMA-B infer', 384, 16, 0, True)]


def section_segments(results, counts=(1, 2, 4, 8, 16)):
    """Forward without autograd at batch 1, L 65536: forced segment counts vs the automatic choice."""
    log('\n== Forward without autograd, b=1 L=65536, sequence split into S segments (median ms) ==')
    log('| shape | d | N | ' + ' | '.join(f'S={c}' for c in counts) + ' | auto (S) |')
    log('| --- | --- | --- | ' + ' | '.join('---' for _ in counts) + ' | --- |')
    rows = []
    for name, d, N, G, has_z in SEGMENT_SHAPES:
        ins = timing_inputs(1, d, 65536, N, G, has_z, torch.float32)
        fn = lambda *a: ts.selective_scan_triton(*a, delta_softplus=True)  # noqa: E731
        times = {}
        for c in counts:
            ts._CONFIG_OVERRIDE['fwd'] = {'SEGMENTS': c}
            try:
                times[c] = time_fn(fn, ins)
            finally:
                ts._CONFIG_OVERRIDE.pop('fwd', None)
        auto_s = ts.num_segments(1, d, max(G, 1), N, 65536, False, torch.cuda.get_device_properties(0)
                                 .multi_processor_count)
        t_auto = time_fn(fn, ins)
        rows.append(dict(shape=name, d=d, N=N, times=times, auto=t_auto, auto_segments=auto_s))
        log(f'| {name} | {d} | {N} | ' + ' | '.join(f'{times[c]:.3f}' for c in counts) +
            f' | {t_auto:.3f} ({auto_s}) |')
    results['segments'] = rows


def section_timing(results, bw, mamba_fn=None, triton_impl=True, key='timing', impls=('triton',)):
    log('\n== Timings (median ms; floor = bytes that must move / measured copy bandwidth; GPU = the call replayed '
        'from a CUDA graph, without host time) ==')
    log(f"{'shape':<20} {'b':>3} {'d':>4} {'L':>6} {'N':>3} {'dtype':<5} {'impl':<7} {'fwd ms':>8} "
        f"{'fwd floor':>9} {'fwd+bwd ms':>10} {'f+b floor':>9} {'f+b % floor':>11} {'fwd GPU':>8} {'f+b GPU':>8}")
    rows = []
    for name, b, d, L, N, G, has_z in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            elt = torch.tensor([], dtype=dtype).element_size()
            fb, bb = floor_bytes(b, d, L, N, G, has_z, elt)
            fns = [(name_, lambda *a, f=BACKENDS[name_][1]: f(*a, delta_softplus=True))
                   for name_ in impls] if triton_impl else []
            if mamba_fn is not None:
                fns.append(('mamba', lambda *a: mamba_fn(*a, delta_softplus=True)))
            for impl, fn in fns:
                try:
                    ins = timing_inputs(b, d, L, N, G, has_z, dtype)
                    t_f = time_fn(fn, ins)
                    t_fb = time_fn(fn, ins, grad=True)
                    g_f = time_fn_graph(fn, ins)
                    g_fb = time_fn_graph(fn, ins, grad=True)
                except Exception as exc:
                    log(f'{name} {dtype} {impl}: FAILED {exc!r}')
                    traceback.print_exc()
                    continue
                fl_f = fb / bw * 1e3
                fl_fb = (fb + bb) / bw * 1e3
                log(f"{name:<20} {b:>3} {d:>4} {L:>6} {N:>3} {str(dtype)[6:][:5]:<5} {impl:<7} {t_f:8.3f} "
                    f"{fl_f:9.3f} {t_fb:10.3f} {fl_fb:9.3f} {100 * fl_fb / t_fb:10.0f}% {g_f:8.3f} {g_fb:8.3f}")
                rows.append(dict(shape=name, b=b, d=d, L=L, N=N, G=G, z=has_z, dtype=str(dtype), impl=impl,
                                 fwd_ms=t_f, fwdbwd_ms=t_fb, fwd_gpu_ms=g_f, fwdbwd_gpu_ms=g_fb,
                                 fwd_floor_ms=fl_f, fwdbwd_floor_ms=fl_fb,
                                 fwd_bytes=fb, bwd_bytes=bb,
                                 kernels=ts._impl_for(b, d, N) if impl == 'triton' else None,
                                 cfg_fwd=ts.launch_config(b, d, max(G, 1), N, L, 'fwd', ts._sm_count(
                                     torch.device('cuda'))) if impl == 'triton' else None,
                                 cfg_bwd=ts.launch_config(b, d, max(G, 1), N, L, 'bwd', ts._sm_count(
                                     torch.device('cuda'))) if impl == 'triton' else None,
                                 cfg_cuda=cs.launch_config(b, d, max(G, 1), N, L) if impl == 'cuda' else None))
                torch.cuda.empty_cache()
    results[key] = rows


# Candidate geometries of the 'runs' kernels: (K positions per thread, R runs per chunk at N=16 (scaled by 16/N for
# other N), BLOCK_D, PREFETCH).  The forward list is timed on no-grad forwards, the backward list on
# forward+backward (BLOCK_D of the backward; K and R are shared by both passes).
SWEEP_FWD = [(8, 16, 2, 1), (8, 16, 2, 0), (16, 16, 1, 1), (4, 32, 1, 1), (8, 8, 2, 1), (16, 8, 2, 1)]
SWEEP_BWD = [(4, 8, 4, 1), (4, 8, 4, 0), (8, 8, 2, 1), (4, 8, 2, 1), (8, 16, 2, 1), (4, 16, 1, 1)]


def section_sweep(results, until, dtypes=(torch.float32,)):
    log('\n== Launch-geometry sweep of the runs kernels (K, R at N=16, BLOCK_D; num_warps 4) ==')
    rows = []
    fn = lambda *a: ts.selective_scan_triton(*a, delta_softplus=True)  # noqa: E731
    for dtype in dtypes:
        for name, b, d, L, N, G, has_z in SHAPES:
            ins = timing_inputs(b, d, L, N, G, has_z, dtype)
            bn = ts._next_pow2(N)
            for kind, cands in (('fwd', SWEEP_FWD), ('bwd', SWEEP_BWD)):
                best = None
                for k, r16, bd, pf in cands:
                    if time.time() > until:
                        log('sweep: out of time')
                        results['sweep'] = rows
                        return
                    r = max(1, r16 * 16 // bn)
                    ts._CONFIG_OVERRIDE.clear()
                    ts._CONFIG_OVERRIDE['fwd'] = {'K': k, 'R': r, 'PREFETCH': pf}
                    ts._CONFIG_OVERRIDE['bwd'] = {'PREFETCH': pf}
                    ts._CONFIG_OVERRIDE[kind]['BLOCK_D'] = bd
                    ts._IMPL = 'runs'
                    try:
                        ms = time_fn(fn, ins, grad=(kind == 'bwd'), rep=60)
                    except Exception as exc:
                        log(f'{name} {kind} K={k} R={r} BD={bd}: FAILED {exc!r}')
                        continue
                    finally:
                        ts._CONFIG_OVERRIDE.clear()
                        ts._IMPL = 'auto'
                    rows.append(dict(shape=name, dtype=str(dtype), kind=kind, K=k, R=r, BLOCK_D=bd, PREFETCH=pf,
                                     ms=ms))
                    log(f'{name:<18} {str(dtype)[6:][:5]:<5} {kind} K={k:<2} R={r:<2} BD={bd} PF={pf} {ms:8.3f} ms')
                    if best is None or ms < best[0]:
                        best = (ms, k, r, bd, pf)
                if best is not None:
                    log(f'{name:<18} {str(dtype)[6:][:5]:<5} {kind}: best K={best[1]} R={best[2]} BD={best[3]} '
                        f'PF={best[4]} {best[0]:.3f} ms')
                    rows.append(dict(shape=name, dtype=str(dtype), kind=kind, best=best))
            torch.cuda.empty_cache()
    results['sweep'] = rows


# ----------------------------------------------------------------------------------------------- mamba_ssm

MAMBA_SOURCES = ['selective_scan.cpp', 'selective_scan_fwd_fp32.cu', 'selective_scan_fwd_fp16.cu',
                 'selective_scan_fwd_bf16.cu', 'selective_scan_bwd_fp32_real.cu', 'selective_scan_bwd_fp32_complex.cu',
                 'selective_scan_bwd_fp16_real.cu', 'selective_scan_bwd_fp16_complex.cu',
                 'selective_scan_bwd_bf16_real.cu', 'selective_scan_bwd_bf16_complex.cu']
MAMBA_FLAGS = ['-O3', '-std=c++17', '-U__CUDA_NO_HALF_OPERATORS__', '-U__CUDA_NO_HALF_CONVERSIONS__',
               '-U__CUDA_NO_BFLOAT16_OPERATORS__', '-U__CUDA_NO_BFLOAT16_CONVERSIONS__',
               '-U__CUDA_NO_BFLOAT162_OPERATORS__', '-U__CUDA_NO_BFLOAT162_CONVERSIONS__',
               '--expt-relaxed-constexpr', '--expt-extended-lambda', '--use_fast_math', '-lineinfo']

_BUILD_SNIPPET = """
import sys, torch
from torch.utils.cpp_extension import load
src, bdir, flags = sys.argv[1], sys.argv[2], sys.argv[3].split('|')
names = sys.argv[4].split('|')
load(name='selective_scan_cuda', sources=[src + '/csrc/selective_scan/' + n for n in names],
     extra_cuda_cflags=flags, extra_cflags=['-O3', '-std=c++17'], build_directory=bdir, verbose=True)
print('BUILD OK')
"""


# Launch configurations of the CUDA kernels: (NS states per thread, T chunk length, threads per block).
SWEEP_CUDA = [(1, 16, 128, 1), (2, 16, 128, 1), (4, 16, 128, 1), (2, 16, 128, 4), (4, 16, 128, 3),
              (2, 8, 128, 1), (1, 8, 128, 1), (2, 16, 64, 1), (4, 8, 128, 1)]


def section_cuda_sweep(results, until, dtypes=(torch.float32,)):
    log('\n== Launch-configuration sweep of the CUDA kernels (NS, T, threads; median ms) ==')
    rows = []
    for name, b, d, L, N, G, has_z in SHAPES:
        for dtype in dtypes:
            ins = timing_inputs(b, d, L, N, G, has_z, dtype)
            fn = lambda *a: cs.selective_scan_cuda(*a, delta_softplus=True)  # noqa: E731
            for ns, t, nt, minb in SWEEP_CUDA:
                if time.time() > until:
                    log('(sweep stopped: time budget)')
                    results['sweep_cuda'] = rows
                    return
                if ns > max(1, N) or N // ns > 32:
                    continue
                cs._CONFIG_OVERRIDE.update(NS=ns, T=t, NTHREADS=nt, BWD_MINB=minb)
                try:
                    t_f = time_fn(fn, ins, rep=100)
                    t_fb = time_fn(fn, ins, grad=True, rep=100)
                except Exception as exc:
                    log(f'{name} NS={ns} T={t} threads={nt} minb={minb}: FAILED {exc!r}'[:300])
                    continue
                finally:
                    cs._CONFIG_OVERRIDE.clear()
                log(f'{name:<20} {str(dtype)[6:][:5]:<5} NS={ns} T={t:>2} threads={nt:>3} minb={minb}  fwd {t_f:7.3f}  '
                    f'fwd+bwd {t_fb:7.3f}')
                rows.append(dict(shape=name, dtype=str(dtype), NS=ns, T=t, threads=nt, bwd_minb=minb, fwd_ms=t_f,
                                 fwdbwd_ms=t_fb))
    results['sweep_cuda'] = rows


def parse_override(text):
    """'KEY=INT,KEY=INT' (a cuda_scan._CONFIG_OVERRIDE set; '' is none) as a dict."""
    return {k: int(v) for k, v in (kv.split('=') for kv in text.split(',') if kv)}


def section_cuda_variants(results, variants, grad=False, dtypes=(torch.float32, torch.bfloat16)):
    """The CUDA kernels at every timing shape under launch-configuration overrides, side by side.

    ``variants``: strings 'KEY=INT,KEY=INT' of ``cuda_scan._CONFIG_OVERRIDE`` entries ('' = the defaults), e.g.
    'PG=4' or 'NS=4,PG=1'.  ``grad``: time forward+backward instead of the forward without autograd.  GPU time: each
    call is replayed from a CUDA graph (``time_fn_graph``), as in the table against mamba_ssm; timed eagerly, the
    MambaIRv2-light forward (0.05 ms) measured the host's launch time on a slow host.
    """
    what = 'fwd+bwd' if grad else 'forward without autograd'
    log(f'\n== CUDA kernels, {what}, under configuration overrides (median ms, GPU time from CUDA graphs) ==')
    parsed = [parse_override(v) for v in variants]
    log('| shape | dtype | ' + ' | '.join(v or 'defaults' for v in variants) + ' |')
    log('| --- | --- | ' + ' | '.join('---' for _ in variants) + ' |')
    rows = []
    fn = lambda *a: cs.selective_scan_cuda(*a, delta_softplus=True)  # noqa: E731
    for name, b, d, L, N, G, has_z in SHAPES:
        for dtype in dtypes:
            ins = timing_inputs(b, d, L, N, G, has_z, dtype)
            times = []
            for over in parsed:
                cs._CONFIG_OVERRIDE.update(over)
                try:
                    times.append(time_fn_graph(fn, ins, grad=grad, rep=100))
                except Exception as exc:
                    log(f'{name} {dtype} {over}: FAILED {exc!r}'[:300])
                    times.append(float('nan'))
                finally:
                    cs._CONFIG_OVERRIDE.clear()
            log(f'| {name} | {str(dtype)[6:]} | ' + ' | '.join(f'{t:.3f}' for t in times) + ' |')
            rows.append(dict(shape=name, dtype=str(dtype), grad=grad, variants=list(variants), ms=times))
            torch.cuda.empty_cache()
    results.setdefault('cuda_variants', []).extend(rows)


def start_mamba_build(src, build_dir):
    os.makedirs(build_dir, exist_ok=True)
    env = dict(os.environ)
    major, minor = torch.cuda.get_device_capability()
    env['TORCH_CUDA_ARCH_LIST'] = f'{major}.{minor}'   # build this GPU's arch only (sm_90 on Hopper)
    env.setdefault('MAX_JOBS', '12')
    logf = open(os.path.join(build_dir, 'build.log'), 'w')
    return subprocess.Popen([sys.executable, '-c', _BUILD_SNIPPET, src, build_dir, '|'.join(MAMBA_FLAGS),
                             '|'.join(MAMBA_SOURCES)], stdout=logf, stderr=subprocess.STDOUT, env=env), logf


def load_mamba(src, build_dir):
    from torch.utils.cpp_extension import load
    os.environ['TORCH_CUDA_ARCH_LIST'] = '%d.%d' % torch.cuda.get_device_capability()
    return load(name='selective_scan_cuda', sources=[f'{src}/csrc/selective_scan/{n}' for n in MAMBA_SOURCES],
                extra_cuda_cflags=MAMBA_FLAGS, extra_cflags=['-O3', '-std=c++17'], build_directory=build_dir)


def make_mamba_fn(ext):
    """selective_scan_fn semantics on top of mamba_ssm's compiled selective_scan_cuda (as its interface does)."""

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
            sq_b, sq_c = B.dim() == 3, C.dim() == 3
            B = B.unsqueeze(1) if sq_b else B
            C = C.unsqueeze(1) if sq_c else C
            out, x, *rest = ext.fwd(u, delta, A, B.contiguous(), C.contiguous(), D, z, delta_bias, delta_softplus)
            ctx.meta = (delta_softplus, sq_b, sq_c, z is not None)
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out)
            return rest[0] if z is not None else out

        @staticmethod
        def backward(ctx, dout):
            u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
            sp, sq_b, sq_c, has_z = ctx.meta
            du, ddelta, dA, dB, dC, dD, dbias, *rest = ext.bwd(
                u, delta, A, B, C, D, z, delta_bias, dout.contiguous(), x, out if has_z else None, None, sp, False)
            return (du, ddelta, dA, dB.squeeze(1) if sq_b else dB, dC.squeeze(1) if sq_c else dC,
                    dD if D is not None else None, rest[0] if has_z else None,
                    dbias if delta_bias is not None else None, None)

    def fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        return Fn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return fn


def section_ratios(results):
    """mamba_ssm's time / ours per shape, dtype and pass, eager (host time included) and GPU time (graph replay)."""
    ours = {(r['shape'], r['dtype']): r for r in results.get('timing', []) if r['impl'] == 'cuda'}
    theirs = {(r['shape'], r['dtype']): r for r in results.get('timing_mamba', [])}
    log('\n== mamba_ssm time / ours (x > 1: ours faster); ms as ours vs mamba_ssm ==')
    log('| shape | dtype | fwd eager | fwd GPU | fwd+bwd eager | fwd+bwd GPU |')
    log('| --- | --- | --- | --- | --- | --- |')
    rows = []
    for key in [k for k in ours if k in theirs]:
        o, m = ours[key], theirs[key]
        cells = []
        for col in ('fwd_ms', 'fwd_gpu_ms', 'fwdbwd_ms', 'fwdbwd_gpu_ms'):
            cells.append(f"{m[col] / o[col]:.2f}x ({o[col]:.3f} vs {m[col]:.3f})")
        log(f'| {key[0]} | {key[1][6:]} | ' + ' | '.join(cells) + ' |')
        rows.append(dict(shape=key[0], dtype=key[1], **{col: m[col] / o[col] for col in
                                                          ('fwd_ms', 'fwd_gpu_ms', 'fwdbwd_ms', 'fwdbwd_gpu_ms')}))
    results['ratios'] = rows


def section_mamba_check(mamba_fn, results):
    """mamba_ssm's kernel against the float64 reference at one shape, to trust its timings."""
    ins64 = make_inputs(2, 32, 2049, 16, 0, seed=5)
    ins = cast_inputs(ins64, torch.float32)
    ref_in = [t.double().detach().requires_grad_() if t is not None else None for t in ins]
    y64, _ = scan_ref64(*ref_in, delta_softplus=True)
    w = torch.randn_like(y64)
    (y64 * w).sum().backward()
    tin = [t.detach().clone().requires_grad_() if t is not None else None for t in ins]
    out = mamba_fn(*tin, delta_softplus=True)
    out.backward(w.float())
    errs = {'out': rel_err(out, y64)}
    for name, t, r in zip(NAMES, tin, ref_in):
        if t is not None:
            errs['d' + name] = rel_err(t.grad, r.grad)
    log('mamba_ssm vs float64 reference (b=2 d=32 L=2049 N=16 fp32): ' +
        ' '.join(f'{k}={v:.1e}' for k, v in errs.items()))
    results['mamba_check'] = errs


# ----------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=os.environ.get('OUT') or os.path.join(ROOT, 'docs', 'bench_results'))
    ap.add_argument('--mamba-src', default=None, help='unpacked mamba_ssm sdist; builds selective_scan_cuda')
    ap.add_argument('--mamba-build-dir', default='/tmp/mamba_ss_build')
    ap.add_argument('--skip-grid', action='store_true')
    ap.add_argument('--skip-sweep', action='store_true')
    ap.add_argument('--skip-timing', action='store_true')
    ap.add_argument('--deadline', type=float, default=540, help='seconds after start to stop waiting for the build')
    ap.add_argument('--sweep-until', type=float, default=250, help='seconds after start to stop the sweep')
    ap.add_argument('--sweep-bf16', action='store_true', help='sweep bf16 inputs too')
    ap.add_argument('--segments', action='store_true',
                    help='time the no-autograd forward at batch 1, L 65536 with the sequence split into segments')
    ap.add_argument('--compare-lanes', action='store_true',
                    help="also time the 'lanes' and the 'runs' kernels on every shape, side by side")
    ap.add_argument('--sweep-after-mamba', action='store_true', help='run the sweep after the mamba_ssm timings')
    ap.add_argument('--impls', nargs='+', default=['triton', 'cuda'], choices=list(BACKENDS),
                    help='backends of this package to check and time (the grid runs for each)')
    ap.add_argument('--grid-impls', nargs='+', default=None, choices=list(BACKENDS),
                    help='backends the correctness grid runs for (default: --impls)')
    ap.add_argument('--cuda-sweep', action='store_true', help='sweep the CUDA kernels\' launch configurations')
    ap.add_argument('--cuda-variants', nargs='+', default=None, metavar='KEY=INT[,KEY=INT]',
                    help="time the CUDA kernels' forward without autograd under these _CONFIG_OVERRIDE sets "
                         "('' = defaults), side by side")
    ap.add_argument('--cuda-variants-grad', nargs='+', default=None, metavar='KEY=INT[,KEY=INT]',
                    help='the same for forward+backward')
    ap.add_argument('--shapes', nargs='+', default=None, choices=[row[0] for row in SHAPES],
                    help='time only these shapes (timings and variants)')
    args = ap.parse_args()
    if args.shapes:
        SHAPES[:] = [row for row in SHAPES if row[0] in args.shapes]
    if not torch.cuda.is_available() or not ts.is_available():
        sys.exit('bench_gpu.py needs a CUDA GPU and Triton')
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    build = None
    if args.mamba_src and os.path.isdir(args.mamba_src):
        build = start_mamba_build(args.mamba_src, args.mamba_build_dir)

    import triton
    props = torch.cuda.get_device_properties(0)
    results = dict(command=' '.join(sys.argv), gpu=props.name, sm_count=props.multi_processor_count,
                   torch=torch.__version__, triton=triton.__version__, cuda=torch.version.cuda,
                   date=time.strftime('%Y-%m-%d %H:%M:%S'))
    log(f"GPU {props.name} ({props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB), "
        f"torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}")
    bw = copy_bandwidth()
    results['copy_bw_GBps'] = bw / 1e9
    log(f'device-to-device copy bandwidth (read+write): {bw / 1e9:.0f} GB/s')

    def save():
        write_results(args.out, results)

    if 'cuda' in args.impls and not cs.is_available():
        log(f'CUDA kernels unavailable: {cs.unavailable_reason()}')
        args.impls = [i for i in args.impls if i != 'cuda']
    if not args.skip_grid:
        for impl in [i for i in (args.grid_impls or args.impls) if i in args.impls]:
            guarded(f'grid section ({impl})', lambda impl=impl: section_grid(results, impl), save)
    if not args.skip_timing:
        guarded('timing section', lambda: section_timing(results, bw, impls=args.impls), save)
    if args.cuda_variants and 'cuda' in args.impls:
        guarded('cuda variants', lambda: section_cuda_variants(results, args.cuda_variants), save)
    if args.cuda_variants_grad and 'cuda' in args.impls:
        guarded('cuda variants (grad)', lambda: section_cuda_variants(results, args.cuda_variants_grad, True), save)
    if args.cuda_sweep and 'cuda' in args.impls:
        guarded('cuda sweep', lambda: section_cuda_sweep(results, t_start + args.sweep_until), save)
    if args.segments:
        guarded('segment section', lambda: section_segments(results), save)
    if args.compare_lanes and not args.skip_timing:
        for impl in ('lanes', 'runs'):
            ts._IMPL = impl
            try:
                log(f'({impl} kernels on every shape)')
                section_timing(results, bw, key='timing_' + impl)
            except Exception as exc:
                log(f'{impl} timing failed: {exc!r}')
            finally:
                ts._IMPL = 'auto'
            save()

    def sweep():
        if not args.skip_sweep:
            dtypes = (torch.float32, torch.bfloat16) if args.sweep_bf16 else (torch.float32,)
            guarded('sweep section', lambda: section_sweep(results, t_start + args.sweep_until, dtypes), save)

    if not args.sweep_after_mamba:
        sweep()

    if build is not None:
        proc, logf = build
        try:
            proc.wait(timeout=max(10, args.deadline - (time.time() - t_start)))
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()
        results['mamba_build_done_at_s'] = time.time() - t_start
        tail = open(os.path.join(args.mamba_build_dir, 'build.log')).read()[-1500:]
        if proc.returncode == 0:
            def mamba_sections():
                mamba_fn = make_mamba_fn(load_mamba(args.mamba_src, args.mamba_build_dir))
                section_mamba_check(mamba_fn, results)
                section_timing(results, bw, mamba_fn, triton_impl=False, key='timing_mamba')
                section_ratios(results)
            guarded('mamba_ssm load/check/timing', mamba_sections)
        else:
            log(f'mamba_ssm build failed or timed out (rc={proc.returncode}); log tail:\n{tail}')
    if args.sweep_after_mamba:
        sweep()
    results['total_s'] = time.time() - t_start
    save()
    log(f'\ntotal {results["total_s"]:.0f} s; results in {args.out}')


if __name__ == '__main__':
    main()

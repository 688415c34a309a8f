#!/usr/bin/env python
"""Benchmark the chunked PyTorch selective scan against the sequential reference on CPU.

Every (backend, mode, length) case runs in its own child process so that its peak memory can be read from the
kernel: the child resets its resident-set high-water mark (``/proc/self/clear_refs``) after building the inputs,
runs the case, and reports ``VmHWM - VmRSS(before)``; where that is not possible it falls back to ``ru_maxrss``
deltas.  Times are the minimum over the repeats, after one warm-up call.

Example::

    python scripts/bench_scan.py                      # B=1, D=96, N=16, L in {1024, 4096, 16384}, float32
    python scripts/bench_scan.py --lengths 4096 --threads 1 --repeats 3
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak():
    """Reset VmHWM to the current RSS; returns False where the kernel does not allow it."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def run_child(args):
    """One case in this process; prints a JSON line {time_s, peak_mb, last_backend}."""
    import torch
    sys.path.insert(0, REPO)
    from mamba_sr_archs.ops import selective_scan, last_backend

    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    b, d, n, length = args.batch, args.dim, args.dstate, args.child_length
    grad = args.child_mode == 'fwdbwd'

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).requires_grad_(grad)

    # value ranges as in a Mamba layer: softplus(delta + bias) in roughly [0.01, 1], A = -exp(A_log)
    u, delta, z = rand(b, d, length), rand(b, d, length, scale=0.5), rand(b, d, length)
    A = (-torch.exp(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1))).requires_grad_(grad)
    B, C = rand(b, n, length), rand(b, n, length)
    D = torch.rand(d, generator=gen).requires_grad_(grad)
    delta_bias = (torch.rand(d, generator=gen) * 4 - 4.5).requires_grad_(grad)  # softplus(bias) ~ 0.01..0.4
    inputs = (u, delta, A, B, C, D, z, delta_bias)

    def call():
        if grad:
            out = selective_scan(*inputs, delta_softplus=True, backend=args.child_backend)
            out.sum().backward()
            for t in inputs:
                t.grad = None
        else:
            with torch.no_grad():
                selective_scan(*inputs, delta_softplus=True, backend=args.child_backend)

    exact = _reset_peak()
    rss0 = _status_kb('VmRSS') if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    call()  # warm-up; also the memory measurement
    peak = _status_kb('VmHWM') if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(args.child_repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    print(json.dumps({'time_s': min(times), 'peak_mb': (peak - rss0) / 1024, 'last_backend': last_backend(),
                      'exact_peak': exact}))


def run_case(args, backend, mode, length, repeats):
    cmd = [sys.executable, os.path.abspath(__file__), '--batch', str(args.batch), '--dim', str(args.dim),
           '--dstate', str(args.dstate), '--threads', str(args.threads), '--child-backend', backend,
           '--child-mode', mode, '--child-length', str(length), '--child-repeats', str(repeats)]
    env = dict(os.environ, MAMBA_SR_SCAN_BACKEND='auto')
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f'case {backend}/{mode}/L={length} failed:\n{res.stderr}')
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--lengths', type=int, nargs='+', default=[1024, 4096, 16384], help='sequence lengths L')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--dim', type=int, default=96, help='channels D')
    p.add_argument('--dstate', type=int, default=16, help='state size N')
    p.add_argument('--repeats', type=int, default=5, help='timed repeats of the chunked backend (min is reported)')
    p.add_argument('--ref-repeats', type=int, default=2, help='timed repeats of the sequential reference')
    p.add_argument('--ref-backward-max-len', type=int, default=16384,
                   help='run the reference forward+backward only up to this L (forward only above)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0 = torch default)')
    p.add_argument('--json', default=None, help='also write the results to this JSON file')
    for name in ('backend', 'mode', 'length', 'repeats'):  # internal: one case in a child process
        p.add_argument('--child-' + name, help=argparse.SUPPRESS,
                       type=int if name in ('length', 'repeats') else str)
    args = p.parse_args()
    if args.child_backend:
        run_child(args)
        return

    print(f'selective scan, CPU, float32: B={args.batch} D={args.dim} N={args.dstate}, '
          f'threads={args.threads or "default"}; time = min over repeats; peak = resident memory over the inputs')
    header = (f"{'L':>6} {'mode':>8} | {'chunked ms':>10} {'peak MB':>8} | {'ref ms':>9} {'peak MB':>8} | "
              f"{'speedup':>7} {'mem ratio':>9}")
    print(header)
    print('-' * len(header))
    rows = []
    for length in args.lengths:
        for mode in ('fwd', 'fwdbwd'):
            fast = run_case(args, 'torch', mode, length, args.repeats)
            ref = None
            if mode == 'fwd' or length <= args.ref_backward_max_len:
                ref = run_case(args, 'ref', mode, length, args.ref_repeats)
            row = {'L': length, 'mode': mode, 'chunked': fast, 'ref': ref}
            rows.append(row)
            label = 'fwd' if mode == 'fwd' else 'fwd+bwd'
            if ref is None:
                print(f"{length:>6} {label:>8} | {fast['time_s'] * 1e3:>10.1f} {fast['peak_mb']:>8.1f} | "
                      f"{'skipped':>9} {'':>8} | {'':>7} {'':>9}")
                continue
            row['speedup'] = ref['time_s'] / fast['time_s']
            row['mem_ratio'] = fast['peak_mb'] / max(ref['peak_mb'], 1e-9)
            print(f"{length:>6} {label:>8} | {fast['time_s'] * 1e3:>10.1f} {fast['peak_mb']:>8.1f} | "
                  f"{ref['time_s'] * 1e3:>9.1f} {ref['peak_mb']:>8.1f} | {row['speedup']:>6.1f}x "
                  f"{row['mem_ratio']:>9.2f}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()

"""CPU-side tests of the Triton selective scan (mamba_sr_archs/ops/triton_scan.py).

The GPU path itself is checked and timed by scripts/bench_gpu.py on a CUDA machine.  Here:
* the module imports without CUDA (and without Triton), and calling it on CPU tensors fails with a clear error;
* the launch-configuration helpers cover every channel, state and step exactly once, keep the chunk grid shared by
  the checkpointing forward and the backward, and fill the GPU;
* where Triton is installed, the kernels themselves run in Triton's CPU interpreter (TRITON_INTERPRET=1, in a
  subprocess, tiny shapes) and must match the repository's sequential reference, gradients included.
"""
import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mamba_sr_archs.ops import triton_scan as ts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _has_triton():
    return importlib.util.find_spec('triton') is not None


def test_module_imports_and_exports():
    assert callable(ts.selective_scan_triton)
    assert isinstance(ts.is_available(), bool)
    if not torch.cuda.is_available() and os.environ.get('TRITON_INTERPRET') != '1':
        assert ts.is_available() is False


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the error raised without CUDA')
def test_cpu_tensors_raise_clear_error(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    u = torch.randn(1, 2, 5)
    with pytest.raises(RuntimeError, match='CUDA|Triton'):
        ts.selective_scan_triton(u, u.clone(), -torch.rand(2, 3), torch.randn(1, 3, 5), torch.randn(1, 3, 5))


def test_import_without_triton():
    """The module must import (and fail only when called) where Triton is missing."""
    code = textwrap.dedent(f"""
        import sys, builtins
        real_import = builtins.__import__
        def fake_import(name, *a, **k):
            if name == 'triton' or name.startswith('triton.'):
                raise ImportError('no triton here')
            return real_import(name, *a, **k)
        builtins.__import__ = fake_import
        sys.path.insert(0, {ROOT!r})
        import torch
        from mamba_sr_archs.ops import triton_scan as ts
        assert ts.triton is None and ts.is_available() is False
        u = torch.randn(1, 2, 4)
        try:
            ts.selective_scan_triton(u, u, -torch.rand(2, 3), torch.randn(1, 3, 4), torch.randn(1, 3, 4))
        except RuntimeError as e:
            assert 'Triton' in str(e), e
            print('OK')
    """)
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith('OK')


@pytest.mark.parametrize('batch,dim,groups,dstate,seqlen', [
    (1, 16, 1, 1, 1), (16, 96, 1, 8, 4096), (16, 384, 1, 16, 4096), (16, 240, 1, 32, 4096),
    (1, 40, 1, 64, 2049), (2, 12, 3, 16, 2047), (4, 10, 2, 5, 16384), (1, 8, 1, 256, 100)])
@pytest.mark.parametrize('kind', ['fwd', 'bwd'])
def test_launch_config_covers_everything(batch, dim, groups, dstate, seqlen, kind):
    cfg = ts.launch_config(batch, dim, groups, dstate, seqlen, kind, sm_count=132)
    bd, bn, bl = cfg['BLOCK_D'], cfg['BLOCK_N'], cfg['BLOCK_L']
    for v in (bd, bn, bl):
        assert v >= 1 and v & (v - 1) == 0, cfg          # tl.arange needs powers of two
    assert dstate <= bn < 2 * dstate or bn == 1
    assert 4 <= bl <= 512
    assert cfg['impl'] in ('runs', 'lanes')
    if cfg['impl'] == 'runs':   # K consecutive positions per thread, R runs per chunk
        assert cfg['K'] * cfg['R'] == bl and cfg['K'] >= 2
        assert isinstance(cfg['PREFETCH'], bool)
    dpg = dim // groups
    # every channel of a group is covered, and no program is entirely padding
    assert cfg['n_dblk'] * bd >= dpg and (cfg['n_dblk'] - 1) * bd < dpg
    assert cfg['grid'] == (groups * cfg['n_dblk'], batch)
    # the sequence is cut into chunks with at most one partial chunk: no padding of L beyond one chunk
    n = ts.num_chunks(seqlen, dstate, batch, dim)
    assert n * bl >= seqlen and (n - 1) * bl < seqlen
    assert cfg['num_warps'] in (4, 8)
    # forward and backward share the kernels and the chunk grid (the checkpoints are stored per chunk)
    other = ts.launch_config(batch, dim, groups, dstate, seqlen, 'bwd' if kind == 'fwd' else 'fwd', sm_count=132)
    assert other['BLOCK_L'] == bl and other['BLOCK_N'] == bn and other['impl'] == cfg['impl']
    assert (other['K'], other['R']) == (cfg['K'], cfg['R'])


def test_launch_config_fills_the_gpu_and_respects_tile_budget():
    # Each thread holds at most 64 elements of the chunk tile; the grid fills the GPU.
    for shape in ((16, 384, 1, 16, 4096), (16, 96, 1, 8, 4096), (1, 384, 1, 16, 65536), (16, 240, 1, 32, 4096)):
        for kind in ('fwd', 'bwd'):
            big = ts.launch_config(*shape, kind, sm_count=132)
            per_thread = big['BLOCK_D'] * big['BLOCK_N'] * big['BLOCK_L'] / (32 * big['num_warps'])
            assert 1 <= per_thread <= 64, big
            assert big['grid'][0] * big['grid'][1] >= 2 * 132
    # The measured-faster kernels per network shape (docs/benchmarks.md).
    assert ts.launch_config(16, 96, 1, 8, 4096)['impl'] == 'runs'
    assert ts.launch_config(1, 384, 1, 16, 65536)['impl'] == 'runs'
    assert ts.launch_config(16, 384, 1, 16, 4096)['impl'] == 'lanes'
    # Small batch: BLOCK_D shrinks to raise the number of programs.
    small = ts.launch_config(1, 64, 1, 16, 4096, 'fwd', sm_count=132)
    assert small['BLOCK_D'] == 1 and small['grid'] == (64, 1)


def test_launch_config_rejects_bad_groups():
    with pytest.raises(ValueError):
        ts.launch_config(1, 10, 3, 4, 16)
    with pytest.raises(ValueError):
        ts.launch_config(1, 12, 3, 4, 16, kind='sideways')


def test_config_override_is_used(monkeypatch):
    monkeypatch.setattr(ts, '_IMPL', 'runs')
    monkeypatch.setitem(ts._CONFIG_OVERRIDE, 'fwd', {'K': 4, 'R': 8, 'BLOCK_D': 2, 'num_warps': 8,
                                                     'PREFETCH': False})
    cfg = ts.launch_config(2, 16, 1, 8, 1000, 'fwd')
    assert (cfg['BLOCK_L'], cfg['BLOCK_D'], cfg['num_warps'], cfg['n_dblk']) == (32, 2, 8, 8)
    assert cfg['PREFETCH'] is False
    assert ts.num_chunks(1000, 8) == 32
    assert ts.launch_config(2, 16, 1, 8, 1000, 'bwd')['BLOCK_L'] == 32


def test_lanes_kernels_config():
    # The first ('lanes') kernels stay selectable for comparisons.
    old = ts._IMPL
    try:
        ts._IMPL = 'lanes'
        cfg = ts.launch_config(16, 384, 1, 16, 4096, 'bwd', sm_count=132)
        assert cfg['BLOCK_L'] == 32 and cfg['K'] is None
    finally:
        ts._IMPL = old


_INTERP_SCRIPT = r"""
import sys, torch
sys.path.insert(0, ROOT)
from mamba_sr_archs.ops import triton_scan as ts
from mamba_sr_archs.ops import selective_scan_ref
ts._POISON_OUTPUTS = True
torch.manual_seed(0)
cases = [  # b, d, L, N, G (0: B/C (b,N,L)), softplus, z, D, bias, override, impl
    (2, 4, 37, 4, 2, True, True, True, True, None, 'runs'),
    (1, 6, 20, 3, 0, False, False, False, False, None, 'runs'),
    (2, 8, 150, 4, 1, True, True, True, True,
     {'fwd': {'K': 4, 'R': 4, 'BLOCK_D': 4}, 'bwd': {'BLOCK_D': 2}}, 'runs'),
    (1, 4, 70, 4, 0, True, True, True, True, {'bwd': {'PREFETCH': False},
                                              'fwd': {'K': 2, 'R': 8, 'PREFETCH': False}}, 'runs'),
    (2, 4, 45, 3, 0, True, True, True, True, None, 'auto'),
    (1, 4, 1, 2, 0, True, True, True, False, None, 'runs'),
    (2, 8, 50, 4, 1, True, True, True, True, {'fwd': {'BLOCK_L': 16, 'BLOCK_D': 4}, 'bwd': {'BLOCK_D': 2}}, 'lanes'),
]
worst = 0.0
for b, d, L, N, G, sp, hz, hD, hb, over, impl in cases:
    ts._IMPL = impl
    ts._CONFIG_OVERRIDE.clear(); ts._CONFIG_OVERRIDE.update(over or {})
    u = torch.randn(b, d, L)
    delta = torch.randn(b, d, L) * 0.5 - 1 if sp else torch.rand(b, d, L) * 0.3
    A = -torch.rand(d, N) * 4 - 0.1
    shp = (b, G, N, L) if G else (b, N, L)
    ins = [u, delta, A, torch.randn(*shp), torch.randn(*shp), torch.randn(d) if hD else None,
           torch.randn(b, d, L) if hz else None, torch.randn(d) * 0.5 if hb else None]
    r = [t.double().requires_grad_() if t is not None else None for t in ins]
    t = [x.clone().requires_grad_() if x is not None else None for x in ins]
    yr, sr = selective_scan_ref(*r, delta_softplus=sp, return_last_state=True)
    y, s = ts.selective_scan_triton(*t, delta_softplus=sp, return_last_state=True)
    assert y.dtype == torch.float32 and s.dtype == torch.float32 and s.shape == (b, d, N)
    w = torch.randn(b, d, L)
    (yr * w.double()).sum().backward()
    (y * w).sum().backward()
    pairs = [(y, yr), (s, sr)] + [(a.grad, c.grad) for a, c in zip(t, r) if a is not None]
    for a, c in pairs:
        assert torch.isfinite(a).all()
        err = ((a.double() - c).norm() / c.norm().clamp_min(1e-30)).item() if c.norm() > 0 else a.norm().item()
        worst = max(worst, err)
print('WORST', worst)
"""


@pytest.mark.skipif(not _has_triton(), reason='Triton is not installed')
def test_kernels_match_reference_in_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1', CUDA_VISIBLE_DEVICES='')
    code = f'ROOT = {ROOT!r}\n' + _INTERP_SCRIPT
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    worst = float(res.stdout.strip().split('WORST')[-1])
    assert worst < 1e-5, worst


_SEGMENT_SCRIPT = r"""
import sys, torch
sys.path.insert(0, ROOT)
from mamba_sr_archs.ops import triton_scan as ts
from mamba_sr_archs.ops import selective_scan_ref
ts._POISON_OUTPUTS = True
ts._IMPL = 'runs'
torch.manual_seed(0)
worst = 0.0
# b, d, L, N, G, z, forced segments, K, R: uneven last segment, grouped B/C, one-chunk segments, no split
for b, d, L, N, G, hz, seg, k, r in [(1, 4, 203, 4, 0, True, 5, 2, 4), (2, 6, 96, 3, 2, False, 3, 2, 4),
                                      (1, 2, 64, 2, 1, True, 8, 2, 4), (1, 2, 40, 2, 0, True, 1, 2, 4)]:
    ts._CONFIG_OVERRIDE.clear()
    ts._CONFIG_OVERRIDE['fwd'] = {'K': k, 'R': r, 'BLOCK_D': 2, 'SEGMENTS': seg}
    n_chunks = -(-L // (k * r))
    assert ts.num_segments(b, d, max(G, 1), N, L, False) == min(seg, n_chunks)
    assert ts.num_segments(b, d, max(G, 1), N, L, True) == 1        # autograd: never split
    shp = (b, G, N, L) if G else (b, N, L)
    ins = [torch.randn(b, d, L), torch.randn(b, d, L) * 0.5 - 1, -torch.rand(d, N) * 2 - 0.05, torch.randn(*shp),
           torch.randn(*shp), torch.randn(d), torch.randn(b, d, L) if hz else None, torch.randn(d) * 0.5]
    yr, sr = selective_scan_ref(*[t.double() if t is not None else None for t in ins], delta_softplus=True,
                                return_last_state=True)
    with torch.no_grad():
        y, st = ts.selective_scan_triton(*ins, delta_softplus=True, return_last_state=True)
    for a, c in ((y, yr), (st, sr)):
        assert torch.isfinite(a).all()
        worst = max(worst, ((a.double() - c).norm() / c.norm()).item())
print('WORST', worst)
"""


@pytest.mark.skipif(not _has_triton(), reason='Triton is not installed')
def test_segmented_forward_matches_reference_in_triton_interpreter():
    """Without autograd a long sequence is split into segments scanned in parallel (two passes + start states)."""
    env = dict(os.environ, TRITON_INTERPRET='1', CUDA_VISIBLE_DEVICES='')
    res = subprocess.run([sys.executable, '-c', f'ROOT = {ROOT!r}\n' + _SEGMENT_SCRIPT], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert float(res.stdout.strip().split('WORST')[-1]) < 1e-5


def test_segment_count_fills_the_gpu_only_for_few_long_sequences():
    # one 256x256 image (L = 65536) on 132 SMs: split only with fewer programs than SMs (measured, see docstring)
    assert ts.num_segments(1, 384, 1, 16, 65536, False, 132) == 1    # MMA-B width: 384 programs
    assert ts.num_segments(1, 96, 1, 8, 65536, False, 132) == 8      # MambaIRv2-light width: 96 programs
    assert ts.num_segments(1, 120, 1, 16, 65536, False, 132) == 8    # MPSI width: 120 programs
    assert ts.num_segments(1, 96, 1, 8, 65536, True, 132) == 1       # with autograd: never
    assert ts.num_segments(16, 384, 1, 16, 4096, False, 132) == 1    # training batch: enough programs already
    assert ts.num_segments(1, 96, 1, 8, 100, False, 132) == 1        # short: fewer than 8 chunks per segment


_CUSTOM_OP_SCRIPT = r"""
import sys, torch
sys.path.insert(0, ROOT)
from mamba_sr_archs.ops import triton_scan as ts
torch.manual_seed(0)
b, d, L, N = 2, 4, 37, 3
def inputs(grouped):
    shp = (b, 2, N, L) if grouped else (b, N, L)
    return [torch.randn(b, d, L), torch.randn(b, d, L) * 0.5 - 1, -torch.rand(d, N) - 0.1, torch.randn(*shp),
            torch.randn(*shp), torch.randn(d), torch.randn(b, d, L), torch.randn(d) * 0.5]
for grouped in (False, True):
    ins = inputs(grouped)
    w = torch.randn(b, d, L)
    res = []
    for force in (False, True):           # autograd.Function path, then the custom-op path, eagerly
        ts._SCAN.force_custom_op = force
        t = [x.clone().requires_grad_() for x in ins]
        y, last = ts.selective_scan_triton(*t, delta_softplus=True, return_last_state=True)
        (y * w).sum().backward()
        res.append([y, last] + [x.grad for x in t])
    ts._SCAN.force_custom_op = False
    for a, c in zip(*res):
        assert a.shape == c.shape and torch.allclose(a, c, rtol=1e-5, atol=1e-6), (a - c).abs().max()
# the registered op passes PyTorch's own checks (schema, fake tensors, autograd registration)
ins = inputs(False)
u, delta, A, B, C, D, z, bias = ins
B4, C4 = B.unsqueeze(1), C.unsqueeze(1)
torch.library.opcheck(torch.ops.mamba_sr_archs.selective_scan_fwd.default,
                      (u, delta, A, B4, C4, D, z, bias, True, False),
                      test_utils=('test_schema', 'test_faketensor'))
# torch.compile keeps the scan inside one graph (fullgraph=True raises on a graph break), same numbers
def f(u, delta, A, B, C, D, z, bias):
    return torch.tanh(ts.selective_scan_triton(u * 2, delta, A, B, C, D, z, bias, delta_softplus=True)).sum()
t = [x.clone().requires_grad_() for x in ins]
eager = f(*t)
eager.backward()
g_eager = [x.grad.clone() for x in t]
t2 = [x.clone().requires_grad_() for x in ins]
compiled = torch.compile(f, backend='aot_eager', fullgraph=True)(*t2)
compiled.backward()
assert torch.allclose(eager, compiled, rtol=1e-5), (eager, compiled)
for a, c in zip(g_eager, [x.grad for x in t2]):
    assert torch.allclose(a, c, rtol=1e-4, atol=1e-6), (a - c).abs().max()
seen = []
def record(gm, example_inputs):
    seen.extend(str(n.target) for n in gm.graph.nodes)
    return gm.forward
torch._dynamo.reset()
torch.compile(f, backend=record, fullgraph=True)(*ins)
assert any('selective_scan_fwd' in name for name in seen), seen   # the op itself is in the captured graph
print('OK')
"""


@pytest.mark.skipif(not _has_triton(), reason='Triton is not installed')
def test_custom_op_path_and_torch_compile_in_triton_interpreter():
    """Under torch.compile the scan is one registered custom op (fake shapes + autograd), no graph break."""
    env = dict(os.environ, TRITON_INTERPRET='1', CUDA_VISIBLE_DEVICES='')
    res = subprocess.run([sys.executable, '-c', f'ROOT = {ROOT!r}\n' + _CUSTOM_OP_SCRIPT], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0 and res.stdout.strip().endswith('OK'), res.stdout[-2000:] + res.stderr[-4000:]

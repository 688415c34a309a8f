"""The memory-lean Mamba inner path (ops/mamba_inner.py, ``train: {lean_memory: true}``).

It needs a kernel scan backend (cuda or triton); on this CPU machine the Triton kernels run in Triton's interpreter
(TRITON_INTERPRET=1, in a subprocess), with the backend choice pinned to them.  Checked: outputs and every
parameter/input gradient equal the plain layer's (both directions of Vim's bidirectional layer), and the tensors
autograd keeps for the backward are much smaller.  On CPU tensors in normal use the lean path steps aside (the
plain layer runs).
"""
import importlib
import os
import subprocess
import sys

import pytest
import torch

from mamba_sr_archs.archs.mamba_layer import Mamba
from mamba_sr_archs.ops.mamba_inner import kernel_backend_for, mamba_inner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = r'''
import sys
sys.path.insert(0, ROOT)
import importlib
import torch
from mamba_sr_archs.archs.mamba_layer import Mamba
ss = importlib.import_module('mamba_sr_archs.ops.selective_scan')
ss._pick_backend = lambda *a, **k: 'triton'          # the Triton kernels, run by the interpreter

def saved_bytes(fn):
    seen = {}
    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.device)] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())

mi = importlib.import_module('mamba_sr_archs.ops.mamba_inner')
calls = {'fwd': 0}
_forward = mi._forward
def counting_forward(*args):
    calls['fwd'] += 1
    return _forward(*args)
mi._forward = counting_forward
torch.manual_seed(0)
for bimamba in ('v2', 'none'):
    layer = Mamba(8, d_state=4, bimamba_type=bimamba)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.randn(2, 24, 8)
    w = torch.randn(2, 24, 8)
    results = {}
    # plain layer; lean as autograd.Function; lean as custom ops (eagerly); lean under torch.compile (aot_eager,
    # fullgraph: the custom ops must trace without a graph break)
    for path in ('plain', 'lean', 'lean-ckpt', 'lean-op', 'lean-compile'):
        # lean-ckpt: level 1 (scan checkpoints kept); the other lean paths level 2 (True)
        layer.lean_memory = False if path == 'plain' else 1 if path == 'lean-ckpt' else True
        mi._FORCE_CUSTOM_OP[0] = path == 'lean-op'
        before = calls['fwd']
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        fn = torch.compile(layer, backend='aot_eager', fullgraph=True) if path == 'lean-compile' else layer
        out, nbytes = saved_bytes(lambda: fn(xi))
        (out * w).sum().backward()
        assert calls['fwd'] - before == (0 if path == 'plain' else 2 if bimamba == 'v2' else 1), (path, calls)
        results[path] = (out.detach(), xi.grad, {n: p.grad.clone() for n, p in layer.named_parameters()
                                                 if p.grad is not None}, nbytes)
    mi._FORCE_CUSTOM_OP[0] = False
    o0, g0, p0, b0 = results['plain']
    for path in ('lean', 'lean-ckpt', 'lean-op', 'lean-compile'):
        o1, g1, p1, b1 = results[path]
        torch.testing.assert_close(o1, o0, rtol=1e-5, atol=1e-6, msg=path)
        torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-6, msg=path)
        assert p0.keys() == p1.keys(), (path, p0.keys() ^ p1.keys())
        for n in p0:
            torch.testing.assert_close(p1[n], p0[n], rtol=1e-4, atol=1e-5, msg=f'{path} {n}')
        print(bimamba, path, 'saved bytes plain', b0, 'lean', b1)
        if path != 'lean-compile':      # compiled graphs save through their own mechanism (not the hooks)
            assert b1 < 0.6 * b0, (path, b0, b1)
            if path != 'lean-ckpt':     # level 2 keeps less than level 1 (no scan checkpoints)
                assert b1 < results['lean-ckpt'][3], (path, b1, results['lean-ckpt'][3])
print('OK')
'''


def test_lean_path_steps_aside_on_cpu():
    layer = Mamba(8, d_state=4, bimamba_type='v2')
    layer.lean_memory = True
    x = torch.randn(1, 6, 8, requires_grad=True)
    assert kernel_backend_for(x.transpose(1, 2), 4) is None
    assert mamba_inner(x.transpose(1, 2), None, layer.conv1d.weight.squeeze(1), None, layer.x_proj.weight,
                       layer.dt_proj.weight, layer.dt_proj.bias, layer.A_log, layer.D, layer.dt_rank, 4) is None
    layer.lean_memory = False
    ref = layer(x)
    layer.lean_memory = True
    torch.testing.assert_close(layer(x), ref)


@pytest.mark.skipif(importlib.util.find_spec('triton') is None, reason='needs triton (interpreter)')
def test_lean_path_matches_plain_layer_and_saves_less_in_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1', CUDA_VISIBLE_DEVICES='')
    env.pop(__import__('mamba_sr_archs.ops.selective_scan', fromlist=['ENV_VAR']).ENV_VAR, None)
    res = subprocess.run([sys.executable, '-c', f'ROOT = {ROOT!r}\n' + _SCRIPT], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0 and 'OK' in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]


def test_level1_checkpoint_interval():
    """Level 1 on the CUDA kernels keeps checkpoints every max(8, N/2) steps (2 floats per channel and step);
    level 2 and the other backends use the kernels' own interval."""
    import mamba_sr_archs.ops.mamba_inner as mi
    from mamba_sr_archs.ops import cuda_scan
    assert [mi._kept_chunk('cuda', n, True) for n in (4, 8, 16, 24, 32, 64)] == [8, 8, 8, 16, 16, 32]
    assert mi._kept_chunk('cuda', 32, False) is None and mi._kept_chunk('triton', 32, True) is None
    assert cuda_scan.ckpt_shape(2, 120, 1, 32, 4096) == (2, 120, 256, 32)      # the kernels' own 16 at N = 32
    assert cuda_scan.ckpt_shape(2, 120, 1, 16, 4096) == (2, 120, 512, 16)
    assert cuda_scan.ckpt_shape(2, 120, 1, 64, 4096, chunk=32) == (2, 120, 128, 64)
    assert cuda_scan.ckpt_shape(2, 120, 1, 32, 4097, chunk=16) == (2, 120, 257, 32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('bimamba,autocast,d_model,d_state', [('v2', False, 192, 16), ('none', False, 192, 16),
                                                              ('v2', True, 192, 16), ('v2', False, 60, 32)])
def test_lean_path_matches_plain_layer_on_gpu(bimamba, autocast, d_model, d_state):
    """MMA's layer size (d_model 192, N 16) and MPSI's (60, N 32: level 1 keeps checkpoints every 16 steps) with
    the CUDA scan: the lean path (as an autograd.Function and as the custom ops) gives the plain layer's output and
    gradients, in fp32 and under bf16 autocast."""
    import mamba_sr_archs.ops.mamba_inner as mi
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    layer = Mamba(d_model, d_state=d_state, bimamba_type=bimamba).cuda()
    x = torch.randn(2, 1024, d_model, device='cuda')
    w = torch.randn(2, 1024, d_model, device='cuda')
    results = {}
    for path in ('plain', 'lean', 'lean-ckpt', 'lean-op'):
        layer.lean_memory = False if path == 'plain' else 1 if path == 'lean-ckpt' else True
        mi._FORCE_CUSTOM_OP[0] = path == 'lean-op'
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        try:
            with torch.autocast('cuda', dtype=torch.bfloat16, enabled=autocast):
                out = layer(xi)
            (out.float() * w).sum().backward()
        finally:
            mi._FORCE_CUSTOM_OP[0] = False
        results[path] = [out.detach().float(), xi.grad] + [p.grad for p in layer.parameters() if p.grad is not None]
    tol = 2e-2 if autocast else 1e-4

    def rel(a, b):
        return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()
    for path in ('lean', 'lean-ckpt', 'lean-op'):
        assert len(results[path]) == len(results['plain'])
        for i, (a, b) in enumerate(zip(results[path], results['plain'])):
            assert rel(a, b) < tol, (path, i, rel(a, b))

"""Tests of mamba_sr_archs.ops: selective scan (all CPU backends) and causal depthwise conv1d.

References: the golden outputs/states/gradients of mamba_ssm's official ``selective_scan_ref``
(``selective_scan_golden.pt``), our own sequential reference, and direct formulas.
"""
import pytest
import torch

from conftest import load_golden
from mamba_sr_archs.ops import available_backends, causal_conv1d, last_backend, selective_scan, selective_scan_ref
from mamba_sr_archs.ops.causal_conv1d import causal_conv1d_shifted, causal_conv1d_torch
from mamba_sr_archs.ops.selective_scan import ENV_VAR, selective_scan_torch

GOLDEN = load_golden('selective_scan_golden.pt')
CASES = {c['name']: c for c in GOLDEN['cases']}
ARG_ORDER = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')


@pytest.fixture(autouse=True)
def _no_env_backend(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def _run(case, backend, dtype):
    """Run one golden case; returns out, last_state and the gradients of sum(out * w)."""
    inputs = {k: v.detach().to(dtype).clone().requires_grad_() for k, v in case['inputs'].items()}
    out, last = selective_scan(**inputs, delta_softplus=case['delta_softplus'], return_last_state=True,
                               backend=backend)
    assert last_backend() == backend
    (out * case['w'].to(dtype)).sum().backward()
    return out, last, {k: v.grad for k, v in inputs.items()}


def _assert_grads(grads, ref_grads, rel):
    assert set(grads) == set(ref_grads)
    for k, g in ref_grads.items():
        assert grads[k] is not None and grads[k].shape == g.shape, k
        scale = g.abs().max().item()
        err = (grads[k].double() - g).abs().max().item()
        assert err <= rel * max(scale, 1.0), f'grad {k}: max abs err {err:.3e} (scale {scale:.3e})'


# ---------------------------------------------------------------------------------------------------------------
# Golden parity (official selective_scan_ref)
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('backend', ['torch', 'ref'])
@pytest.mark.parametrize('name', list(CASES))
def test_golden_float32(name, backend):
    case = CASES[name]
    out, last, grads = _run(case, backend, torch.float32)
    assert out.dtype == torch.float32 and last.dtype == torch.float32
    assert last.shape == case['last_state_f32'].shape
    # float32 rounding of the official code itself is ~1e-6 here (max_abs_diff_out_f32_vs_f64)
    torch.testing.assert_close(out, case['out_f32'], atol=2e-5, rtol=0)
    torch.testing.assert_close(out.double(), case['out_f64'], atol=2e-5, rtol=0)
    torch.testing.assert_close(last, case['last_state_f32'], atol=1e-5, rtol=0)
    _assert_grads(grads, case['grads_f64'], rel=2e-5)


@pytest.mark.parametrize('backend', ['torch', 'ref'])
@pytest.mark.parametrize('name', list(CASES))
def test_golden_float64(name, backend):
    case = CASES[name]
    out, last, grads = _run(case, backend, torch.float64)
    assert out.dtype == torch.float64 and last.dtype == torch.float64
    torch.testing.assert_close(out, case['out_f64'], atol=1e-10, rtol=0)
    torch.testing.assert_close(last, case['last_state_f64'], atol=1e-10, rtol=0)
    _assert_grads(grads, case['grads_f64'], rel=1e-10)


def test_golden_covers_layouts_and_options():
    """The golden cases exercise both B/C layouts and every optional input, with and without softplus."""
    layouts = {c['inputs']['B'].dim() for c in CASES.values()}
    assert layouts == {3, 4}
    assert {c['delta_softplus'] for c in CASES.values()} == {True, False}
    assert any('z' not in c['inputs'] for c in CASES.values()) and any('z' in c['inputs'] for c in CASES.values())
    assert any('D' not in c['inputs'] for c in CASES.values())


# ---------------------------------------------------------------------------------------------------------------
# Chunked backend against the sequential reference
# ---------------------------------------------------------------------------------------------------------------

def _random_inputs(batch, dim, dstate, length, groups=None, dtype=torch.float64, seed=0, full=True,
                   delta_scale=1.0, a_range=(-4.0, -0.1)):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    lo, hi = a_range
    A = lo + (hi - lo) * torch.rand(dim, dstate, generator=g, dtype=dtype)
    bc_shape = (batch, dstate, length) if groups is None else (batch, groups, dstate, length)
    if groups == 'time_invariant':
        bc_shape = (dim, dstate)
    args = dict(u=r(batch, dim, length), delta=torch.rand(batch, dim, length, generator=g, dtype=dtype) * delta_scale,
                A=A, B=r(*bc_shape), C=r(*bc_shape))
    if full:
        args.update(D=r(dim), z=r(batch, dim, length), delta_bias=0.1 * r(dim))
    return args


def _scan_with_grads(fn, args, w, wl, **kw):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in args.items()}
    out, last = fn(**leaves, return_last_state=True, **kw)
    ((out * w).sum() + (last * wl).sum()).backward()  # the last state is part of the loss too
    return out, last, {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize('length,chunk', [(1, None), (1, 4), (7, 3), (29, 8), (64, 16), (67, None), (50, 1)])
@pytest.mark.parametrize('groups', [None, 2, 'time_invariant'])
def test_chunked_matches_reference(length, chunk, groups):
    args = _random_inputs(2, 4, 3, length, groups=groups, seed=length)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2, 4, length, generator=g, dtype=torch.float64)
    wl = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    ref = _scan_with_grads(selective_scan_ref, args, w, wl, delta_softplus=True)
    got = _scan_with_grads(selective_scan_torch, args, w, wl, delta_softplus=True, chunk_size=chunk)
    torch.testing.assert_close(got[0], ref[0], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(got[1], ref[1], atol=1e-12, rtol=1e-12)
    for k in args:
        torch.testing.assert_close(got[2][k], ref[2][k], atol=1e-11, rtol=1e-11, msg=k)


def test_chunked_gradcheck():
    """Finite differences through the hand-written backward (every input, both outputs)."""
    args = _random_inputs(1, 4, 2, 7, groups=2, seed=3)
    leaves = tuple(args[k].clone().requires_grad_() for k in ARG_ORDER)

    def fn(*xs):
        return selective_scan_torch(*xs, delta_softplus=True, return_last_state=True, chunk_size=3)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_only_some_inputs_need_grad():
    args = _random_inputs(1, 4, 3, 20, seed=4)
    u = args['u'].clone().requires_grad_()
    out = selective_scan_torch(u, *(args[k] for k in ARG_ORDER[1:]), delta_softplus=True)
    out.sum().backward()
    ref_u = args['u'].clone().requires_grad_()
    selective_scan_ref(ref_u, *(args[k] for k in ARG_ORDER[1:]), delta_softplus=True).sum().backward()
    torch.testing.assert_close(u.grad, ref_u.grad, atol=1e-12, rtol=1e-12)


def test_extreme_values_stay_finite_and_correct():
    """delta up to 10 and A in [-64, -1e-3]: decays from exp(-640) to ~1, no overflow or NaN anywhere."""
    length = 300
    args = _random_inputs(1, 8, 16, length, dtype=torch.float32, seed=5, delta_scale=10.0, a_range=(-64.0, -1e-3))
    args['delta'][..., ::7] = 10.0  # the largest steps
    args['delta'][..., 3::11] = 0.0  # and no decay at all
    w = torch.randn(1, 8, length)
    wl = torch.randn(1, 8, 16)
    out, last, grads = _scan_with_grads(selective_scan_torch, args, w, wl)
    assert torch.isfinite(out).all() and torch.isfinite(last).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    args64 = {k: v.double() for k, v in args.items()}
    out64, last64, grads64 = _scan_with_grads(selective_scan_ref, args64, w.double(), wl.double())
    torch.testing.assert_close(out.double(), out64, atol=1e-4 * out64.abs().max().item(), rtol=0)
    torch.testing.assert_close(last.double(), last64, atol=1e-4 * last64.abs().max().item(), rtol=0)
    for k, g in grads64.items():
        torch.testing.assert_close(grads[k].double(), g, atol=1e-4 * g.abs().max().item(), rtol=0, msg=k)


def test_huge_delta_bias_with_softplus_is_finite():
    args = _random_inputs(1, 4, 4, 40, dtype=torch.float32, seed=6)
    args['delta_bias'] = torch.full((4,), 50.0)  # softplus(50 + delta) = 50 + delta: total decay exp(-200 * ...)
    out, last = selective_scan(**args, delta_softplus=True, return_last_state=True)
    ref, ref_last = selective_scan_ref(**{k: v.double() for k, v in args.items()}, delta_softplus=True,
                                       return_last_state=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, atol=1e-4 * ref.abs().max().item(), rtol=0)
    torch.testing.assert_close(last.double(), ref_last, atol=1e-4 * ref_last.abs().max().item(), rtol=0)


def test_output_dtypes_follow_mamba_ssm():
    args = _random_inputs(1, 4, 3, 10, dtype=torch.float32, seed=7)
    args['u'] = args['u'].to(torch.bfloat16)
    out, last = selective_scan(**args, delta_softplus=True, return_last_state=True)
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32 and last.shape == (1, 4, 3)
    ref = selective_scan_ref(**args, delta_softplus=True)
    torch.testing.assert_close(out.float(), ref.float(), atol=1e-2, rtol=1e-2)


def test_no_grad_inference_path():
    args = _random_inputs(2, 6, 4, 33, groups=3, dtype=torch.float32, seed=8)
    with torch.no_grad():
        out = selective_scan(**args, delta_softplus=True)
    torch.testing.assert_close(out, selective_scan_ref(**args, delta_softplus=True), atol=1e-5, rtol=1e-5)


def test_shape_errors():
    args = _random_inputs(1, 4, 3, 10, seed=9)
    with pytest.raises(ValueError, match='A must be'):
        selective_scan(**{**args, 'A': args['A'][:2]})
    with pytest.raises(ValueError, match='groups'):
        selective_scan(**{**args, 'B': args['B'].unsqueeze(1).expand(1, 3, 3, 10)})  # 3 groups for 4 channels


# ---------------------------------------------------------------------------------------------------------------
# Backend selection
# ---------------------------------------------------------------------------------------------------------------

def _small_args():
    return _random_inputs(1, 4, 3, 9, dtype=torch.float32, seed=10)


def test_cpu_default_backend_is_torch():
    assert available_backends('cpu') == ['torch', 'ref']
    selective_scan(**_small_args())
    assert last_backend() == 'torch'


def test_env_var_forces_backend(monkeypatch):
    args = _small_args()
    monkeypatch.setenv(ENV_VAR, 'ref')
    ref = selective_scan(**args)
    assert last_backend() == 'ref'
    monkeypatch.setenv(ENV_VAR, ' Torch ')
    out = selective_scan(**args)
    assert last_backend() == 'torch'
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    monkeypatch.setenv(ENV_VAR, 'auto')
    selective_scan(**args)
    assert last_backend() == 'torch'


def test_argument_wins_over_env_var(monkeypatch):
    monkeypatch.setenv(ENV_VAR, 'ref')
    selective_scan(**_small_args(), backend='torch')
    assert last_backend() == 'torch'
    monkeypatch.setenv(ENV_VAR, 'no_such_backend')  # ignored when the argument is given
    selective_scan(**_small_args(), backend='ref')
    assert last_backend() == 'ref'


def test_unknown_backend_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown selective-scan backend 'cuda_magic'.*auto, cuda, mamba_ssm, triton"):
        selective_scan(**_small_args(), backend='cuda_magic')
    monkeypatch.setenv(ENV_VAR, 'fast')
    with pytest.raises(ValueError, match=f'unknown selective-scan backend .*{ENV_VAR}'):
        selective_scan(**_small_args())


@pytest.mark.parametrize('name', ['cuda', 'mamba_ssm', 'triton'])
def test_cuda_backend_on_cpu_tensors_errors(name, monkeypatch):
    with pytest.raises(RuntimeError, match=f"'{name}' was requested but is unavailable: it needs CUDA tensors"):
        selective_scan(**_small_args(), backend=name)
    monkeypatch.setenv(ENV_VAR, name)
    with pytest.raises(RuntimeError, match='needs CUDA tensors'):
        selective_scan(**_small_args())


# ---------------------------------------------------------------------------------------------------------------
# Causal depthwise conv1d
# ---------------------------------------------------------------------------------------------------------------

def _conv_formula(x, weight, bias):
    """out[b, d, t] = bias[d] + sum_k weight[d, k] * x[b, d, t - (K-1) + k], zero outside the sequence."""
    k = weight.shape[1]
    out = torch.zeros_like(x) if bias is None else bias[None, :, None].expand_as(x).clone()
    for j in range(k):
        shift = k - 1 - j
        out[..., shift:] += weight[None, :, j, None] * x[..., :x.shape[-1] - shift]
    return out


@pytest.mark.parametrize('activation', [None, 'silu', 'swish'])
@pytest.mark.parametrize('with_bias', [True, False])
@pytest.mark.parametrize('length', [1, 3, 17])
def test_causal_conv1d(activation, with_bias, length):
    g = torch.Generator().manual_seed(length)
    x = torch.randn(2, 5, length, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 4, generator=g, dtype=torch.float64)
    bias = torch.randn(5, generator=g, dtype=torch.float64) if with_bias else None
    expect = _conv_formula(x, weight, bias)
    if activation:
        expect = expect * torch.sigmoid(expect)
    torch.testing.assert_close(causal_conv1d(x, weight, bias, activation=activation), expect, atol=1e-12, rtol=0)
    # the form torch.compile gets (a sum of shifted products)
    torch.testing.assert_close(causal_conv1d_shifted(x, weight, bias, activation=activation), expect, atol=1e-12,
                               rtol=0)


def test_causal_conv1d_under_compile_is_the_shifted_sum():
    """Under torch.compile causal_conv1d traces as shifted products (fused by Inductor); same values, gradients."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 33, generator=g, requires_grad=True)
    weight = torch.randn(6, 4, generator=g, requires_grad=True)
    bias = torch.randn(6, generator=g, requires_grad=True)
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == 'call_function')
        return gm
    fn = torch.compile(lambda *a: causal_conv1d(*a, activation='silu'), backend=backend, fullgraph=True)
    out = fn(x, weight, bias)
    assert not any('conv' in t for t in seen), seen
    expect = causal_conv1d_torch(x, weight, bias, activation='silu')
    torch.testing.assert_close(out, expect, atol=1e-6, rtol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), (x, weight, bias))
    grads_ref = torch.autograd.grad(expect.square().sum(), (x, weight, bias))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_causal_conv1d_is_causal_and_errors():
    x = torch.randn(1, 3, 10)
    weight = torch.randn(3, 4)
    y = causal_conv1d(x, weight)
    x2 = x.clone()
    x2[..., 6:] += 1.0  # changing the future must not change the past
    torch.testing.assert_close(causal_conv1d(x2, weight)[..., :6], y[..., :6])
    with pytest.raises(ValueError, match='activation'):
        causal_conv1d(x, weight, activation='relu')
    with pytest.raises(ValueError, match='weight'):
        causal_conv1d(x, torch.randn(4, 4))


def test_backward_twice_with_retained_graph():
    args = _random_inputs(1, 4, 3, 21, seed=11)
    leaves = {k: v.clone().requires_grad_() for k, v in args.items()}
    out = selective_scan_torch(**leaves, delta_softplus=True, chunk_size=4)
    out.sum().backward(retain_graph=True)
    first = {k: v.grad.clone() for k, v in leaves.items()}
    out.sum().backward()
    for k, v in leaves.items():
        torch.testing.assert_close(v.grad, 2 * first[k], atol=1e-12, rtol=1e-12, msg=k)


def test_automatic_choice_respects_each_kernels_state_limit(monkeypatch):
    """On CUDA (a stand-in: only the device type is read), with mamba_ssm absent: our CUDA kernels up to N=64,
    Triton up to 256, torch beyond and for time-invariant (dim, N) B/C."""
    from types import SimpleNamespace

    import importlib
    ss = importlib.import_module('mamba_sr_archs.ops.selective_scan')
    monkeypatch.setattr(ss, '_unavailable_reason', lambda name, dev: 'absent' if name == 'mamba_ssm' else None)
    monkeypatch.delenv(ENV_VAR, raising=False)
    u = SimpleNamespace(device=torch.device('cuda'))
    assert ss._pick_backend(None, u, torch.float32, False, 16) == 'cuda'
    assert ss._pick_backend(None, u, torch.float32, False, 8) == 'cuda'
    assert ss._pick_backend(None, u, torch.float32, False, 100) == 'triton'
    assert ss._pick_backend(None, u, torch.float32, False, 300) == 'torch'
    assert ss._pick_backend(None, u, torch.float32, True, 16) == 'torch'
    assert ss._pick_backend(None, u, torch.float64, False, 16) == 'torch'


def test_automatic_choice_with_mamba_ssm_installed(monkeypatch):
    """With mamba_ssm installed too: our CUDA kernels first at every N they take (N <= 8 included: forward and
    forward+backward are faster on the GPU, cuda_scan_run48), mamba_ssm beyond our N = 64 and for time-invariant
    (dim, N) B/C."""
    from types import SimpleNamespace

    import importlib
    ss = importlib.import_module('mamba_sr_archs.ops.selective_scan')
    monkeypatch.setattr(ss, '_unavailable_reason', lambda name, dev: None)
    monkeypatch.delenv(ENV_VAR, raising=False)
    u = SimpleNamespace(device=torch.device('cuda'))
    assert ss._pick_backend(None, u, torch.float32, False, 8) == 'cuda'
    assert ss._pick_backend(None, u, torch.float32, False, 16) == 'cuda'
    assert ss._pick_backend(None, u, torch.float32, False, 100) == 'mamba_ssm'
    assert ss._pick_backend(None, u, torch.float32, True, 16) == 'mamba_ssm'     # (dim, N) B/C: ours take none

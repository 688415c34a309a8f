"""The NVRTC CUDA scan backend on a machine without a GPU: its kernels compile for Hopper and Ampere with NVRTC at
every configuration the launcher can pick, and the launch configurations keep the kernels' invariants.

The kernels' numbers are checked on a GPU by ``scripts/bench_gpu.py`` (float64 reference, every gradient); see
docs/benchmarks.md.
"""
import ctypes
import threading

import pytest
import torch

from mamba_sr_archs.ops import cuda_scan as cs
from mamba_sr_archs.ops import available_backends


def _nvrtc_or_skip():
    try:
        return cs._find_nvrtc()
    except OSError as exc:
        pytest.skip(f'NVRTC library not present: {exc}')


def _compile_ptx(defines, arch='compute_90'):
    """NVRTC-compile the kernels' source to PTX (no GPU needed); returns (ok, log)."""
    nvrtc = _nvrtc_or_skip()
    with open(cs._SRC) as f:
        source = f.read().encode()
    options = [f'--gpu-architecture={arch}', '--use_fast_math', '-std=c++17']
    options += [f'-DSS_{k}={int(v)}' for k, v in sorted(defines.items())]
    prog = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source, b'selective_scan.cu', 0, None, None) == 0
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        res = nvrtc.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(prog, log)
        ptx = b''
        if res == 0:
            nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            nvrtc.nvrtcGetPTX(prog, buf)
            ptx = buf.value
        return res == 0, log.value.decode(), ptx.decode()
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))


SHAPES = [  # batch, dim, groups, dstate, seqlen: the networks' training and inference shapes and edge cases
    (16, 96, 1, 8, 4096), (16, 384, 1, 16, 4096), (16, 240, 1, 32, 4096), (1, 384, 1, 16, 65536),
    (2, 16, 1, 64, 2049), (16, 16, 1, 1, 2049), (1, 8, 1, 2, 5), (16, 12, 3, 8, 16384), (1, 40, 1, 64, 4096),
    (4, 7, 1, 5, 33),
]


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('grad,in_bytes', [(True, 4), (False, 4), (False, 2)])
def test_launch_config_keeps_kernel_invariants(shape, grad, in_bytes):
    batch, dim, groups, dstate, seqlen = shape
    c = cs.launch_config(batch, dim, groups, dstate, seqlen, grad=grad, in_bytes=in_bytes)
    npad = cs._next_pow2(dstate)
    nthreads = c['DB'] * c['TPC']
    assert c['NS'] * c['TPC'] == npad and 32 % c['TPC'] == 0          # a channel's lanes inside one warp
    assert nthreads % 32 == 0 and nthreads % c['T'] == 0               # whole warps; whole rows per staging pass
    assert c['T'] % c['TPC'] == 0 and c['T'] % c['RG'] == 0 and (2 * c['RG']) % c['TPC'] == 0
    # the forward's chunk: whole checkpoint intervals, at least 16 steps; its pipelined groups divide the interval
    assert c['TF'] % c['T'] == 0 and c['TF'] >= 16 and c['T'] % c['PG'] == 0 and nthreads % c['TF'] == 0
    assert c['RG'] * c['NS'] * 2 >= 32 // c['TPC']                    # dB/dC reduce-scatter over the warp's channels
    nw = nthreads // 32
    # static shared memory of the backward: 8 channel rows, the (B, C) pair rows, per-warp dB / dC
    assert ((8 * c['DB'] + 2 * nw * npad) * (c['T'] + 1) + c['T'] * (2 * npad + 4)) * 4 <= 48 * 1024
    assert c['n_dblk'] * c['DB'] - dim // groups < c['DB']            # no empty block
    assert c['grid'] == (groups * c['n_dblk'], batch, 1) and c['n_dblk'] * c['DB'] >= dim // groups
    # the checkpoint grid of the autograd forward is the backward's
    assert cs.ckpt_shape(batch, dim, groups, dstate, seqlen)[2] == -(-seqlen // cs.launch_config(
        batch, dim, groups, dstate, seqlen, grad=True)['T'])


def _assert_hopper_cubin(name, defines):
    """Kernel ``name`` builds to a Hopper cubin with these defines (ptxas checks registers and shared memory)."""
    with open(cs._SRC) as f:
        source = f.read()
    cubin = cs._nvrtc_cubin(source, cs.compile_options(name, defines, 'sm_90'))
    assert cubin[:4] == b'\x7fELF' and name.encode() in cubin


@pytest.mark.parametrize('shape,z,kind,softplus', [
    ((16, 384, 1, 16, 4096), True, 0, True), ((16, 384, 1, 16, 4096), True, 1, True),
    ((16, 96, 1, 8, 4096), False, 0, True), ((16, 240, 1, 32, 4096), True, 2, True),
    ((2, 16, 1, 64, 2049), True, 0, False), ((16, 16, 1, 1, 2049), False, 1, True),
    ((1, 8, 1, 2, 5), True, 0, True),
])
def test_kernels_compile_with_nvrtc(shape, z, kind, softplus):
    """Every kernel the launcher builds for these calls compiles to a Hopper cubin (ptxas checks registers and
    shared memory too), with the defines the launcher passes."""
    _nvrtc_or_skip()
    batch, dim, groups, dstate, seqlen = shape
    dtype = {0: torch.float32, 1: torch.bfloat16, 2: torch.float16}[kind]
    meta = dict(device='meta', dtype=dtype)
    u, B4 = torch.empty(batch, dim, seqlen, **meta), torch.empty(batch, groups, dstate, seqlen, **meta)
    D, bias = torch.empty(dim, device='meta'), torch.empty(dim, device='meta')
    zz = u if z else None
    for grad in (True, False):
        c = cs.launch_config(batch, dim, groups, dstate, seqlen, grad=grad, in_bytes=u.element_size())
        fc = cs.forward_config(c)
        builds = [('ssm_fwd', cs._defines(fc, u, B4, D, zz, bias, softplus, STORE_CKPT=grad)),      # outputs
                  ('ssm_fwd', cs._defines(fc, u, B4, D, zz, bias, softplus, STORE_CKPT=0, STORE_OUT=0)),  # summary
                  ('ssm_fwd', cs._defines(fc, u, B4, D, zz, bias, softplus, True, STORE_CKPT=grad))]   # reversed
        builds += [(name, dict(defines, ASYNC=1)) for name, defines in builds[:2]]     # cp.async chunk copies
        builds += [(name, dict(defines, ASYNC=1, BCD=1)) for name, defines in builds[:3]]    # B/C read as copied
        builds += [('ssm_fwd', dict(builds[0][1], DEFER=1)), ('ssm_fwd', dict(builds[0][1], ASYNC=1, DEFER=1))]
        if grad:
            builds += [('ssm_fwd', cs._defines(fc, u, B4, D, zz, bias, softplus, STORE_CKPT=1, STORE_OUT=0)),
                       ('ssm_bwd', cs._defines(c, u, B4, D, zz, bias, softplus, STORE_CKPT=0)),
                       ('ssm_bwd', cs._defines(c, u, B4, D, zz, bias, softplus, True, STORE_CKPT=0)),
                       ('ssm_bwd', cs._defines(c, u, B4, D, zz, bias, softplus, STORE_CKPT=0, SUMMARY=1))]
        cs._CONFIG_OVERRIDE['TP'] = 1          # the time-parallel forward, wherever N allows it
        try:
            tp = cs.tp_config(c, batch, dim, dstate, 132, u.element_size())
        finally:
            cs._CONFIG_OVERRIDE.clear()
        if tp is not None:
            builds += [('ssm_fwd_tp', cs._defines(tp, u, B4, D, zz, bias, softplus, rev, STORE_CKPT=grad))
                       for rev in (False, True)]
            builds.append(('ssm_fwd_tp', dict(builds[-2][1], TP_BCA=1)))     # B/C copied by cp.async
            if grad:
                builds.append(('ssm_fwd_tp', cs._defines(tp, u, B4, D, zz, bias, softplus, STORE_CKPT=1,
                                                         STORE_OUT=0)))
                builds += [('ssm_bwd_tp', cs._defines(tp, u, B4, D, zz, bias, softplus, rev, STORE_CKPT=0))
                           for rev in (False, True)]
        for name, defines in builds:
            _assert_hopper_cubin(name, defines)


@pytest.mark.parametrize('name,over,kind', [('ssm_fwd_tp', {'TP_PF': 1}, 0), ('ssm_fwd_tp', {'TP_PF': 2}, 1),
                                              ('ssm_fwd_tp', {'TP_GPF': 2}, 1), ('ssm_fwd_tp', {'TP_ABSORB': 1}, 0),
                                              ('ssm_fwd_tp', {'TP_FASTMASK': 1}, 0),
                                              ('ssm_fwd_tp', {'TP_FASTMASK': 0}, 1),
                                              ('ssm_bwd_tp', {'TP_ABSORB': 0}, 1),
                                              ('ssm_bwd_tp', {'TP_BU': 1}, 0), ('ssm_bwd_tp', {'TP_BU': 8}, 1)])
def test_time_parallel_variants_compile(name, over, kind):
    """The time-parallel kernels' non-default variants (prefetching one input kind; other unrollings of the
    backward's state loop, with z and a bias) still build for Hopper."""
    _nvrtc_or_skip()
    dtype = {0: torch.float32, 1: torch.bfloat16}[kind]
    meta = dict(device='meta', dtype=dtype)
    u, B4 = torch.empty(16, 96, 4096, **meta), torch.empty(16, 1, 8, 4096, **meta)
    D = torch.empty(96, device='meta')
    c = cs.launch_config(16, 96, 1, 8, 4096, grad=True)
    cs._CONFIG_OVERRIDE.update(over)
    try:
        tp = cs.tp_config(c, 16, 96, 8, 132, u.element_size())
    finally:
        cs._CONFIG_OVERRIDE.clear()
    assert all(tp[k] == v for k, v in over.items())
    _assert_hopper_cubin(name, cs._defines(tp, u, B4, D, u, D, True, STORE_CKPT=int(name == 'ssm_fwd_tp')))


@pytest.mark.parametrize('over,kind', [({'DTU2': 0}, 1), ({'SP1': 0}, 1), ({'SP1': 1}, 0)])
def test_lane_variants_compile(over, kind):
    """The lane forward's and backward's non-default variants (one (delta, delta u) read per step; the other
    softplus) still build for Hopper, in the split-sequence inference configuration (N = 16, cp.async copies, B/C
    read as copied, deferred reductions)."""
    _nvrtc_or_skip()
    dtype = {0: torch.float32, 1: torch.bfloat16}[kind]
    meta = dict(device='meta', dtype=dtype)
    u, B4 = torch.empty(1, 384, 65536, **meta), torch.empty(1, 1, 16, 65536, **meta)
    D = torch.empty(384, device='meta')
    cs._CONFIG_OVERRIDE.update(over)
    try:
        fc = cs.forward_config(cs.launch_config(1, 384, 1, 16, 65536, grad=False, in_bytes=u.element_size()))
        defines = cs._defines(fc, u, B4, D, u, D, True, STORE_CKPT=0, ASYNC=1, BCD=1, DEFER=1)
        bwd = cs._defines(cs.launch_config(1, 384, 1, 16, 65536), u, B4, D, u, D, True, STORE_CKPT=0)
    finally:
        cs._CONFIG_OVERRIDE.clear()
    assert all(defines[k] == v for k, v in over.items())
    _assert_hopper_cubin('ssm_fwd', defines)
    if 'SP1' in over:
        _assert_hopper_cubin('ssm_bwd', bwd)


def test_lane_defaults_for_paired_reads_and_softplus():
    """Two steps' (delta, delta u) per shared-memory read where a lane has at most 2 states, without checkpoints
    (DTU2); the softplus with one special-function instruction (SP1) for 2-byte inputs, in every kernel of the
    call; an override wins."""
    meta32, meta16 = dict(device='meta', dtype=torch.float32), dict(device='meta', dtype=torch.bfloat16)
    B4 = torch.empty(1, 1, 16, 8, device='meta')
    for n in (16, 32):
        for meta, sp1 in ((meta32, 0), (meta16, 1)):
            u = torch.empty(16, 240, 4096, **meta)
            for grad in (True, False):
                c = cs.launch_config(16, 240, 1, n, 4096, grad=grad, in_bytes=u.element_size())
                d = cs._defines(cs.forward_config(c), u, B4, None, None, None, True, STORE_CKPT=int(grad))
                assert (d['DTU2'], d['SP1']) == (int(c['NS'] <= 2 and not grad), sp1)
    c = cs.launch_config(16, 240, 1, 32, 4096, grad=False, in_bytes=2)
    assert c['NS'] == 4 and cs._defines(c, torch.empty(1, 240, 8, **meta16), B4, None, None, None, True)['DTU2'] == 0
    cs._CONFIG_OVERRIDE.update(DTU2=1, SP1=0)
    try:
        d = cs._defines(c, torch.empty(1, 240, 8, **meta16), B4, None, None, None, True)
    finally:
        cs._CONFIG_OVERRIDE.clear()
    assert (d['DTU2'], d['SP1']) == (1, 0)


def test_softplus_polynomial_is_accurate_in_float():
    """The SP1 softplus's log1p(e) = e q(e) for e = exp(-|x|) in (0, 1]: the coefficients in the kernel source,
    evaluated as the kernel does (float32 Horner with fused multiply-adds), stay within 2.5e-7 of log1p relative
    over the whole range, and softplus(x) = max(x, 0) + e q(e) within 3e-7 of float64 for x in [-30, 30]."""
    import re
    import numpy as np
    src = open(cs._SRC).read()
    block = src[src.index('#if SS_SP1\n    // q:'):src.index('#else', src.index('#if SS_SP1\n    // q:'))]
    coef = [np.float32(re.findall(r'(-?\d+\.\d*(?:e-?\d+)?)f\b', line)[-1])
            for line in block.splitlines() if re.match(r'\s*(float )?q = ', line)]
    assert len(coef) == 9 and coef[-1] == 1.0            # highest degree first, ending in the constant 1

    def e_q(e):      # e q(e) in float32, q by Horner's rule with fused multiply-adds (one rounding each)
        q = np.full_like(e, coef[0])
        for c in coef[1:]:
            q = (q.astype(np.float64) * e.astype(np.float64) + np.float64(c)).astype(np.float32)
        return e * q

    e = np.concatenate([np.linspace(0, 1, 100001), np.geomspace(1e-30, 1, 20001)]).astype(np.float32)
    got = e_q(e).astype(np.float64)
    ref = np.log1p(e.astype(np.float64))
    ok = ref > 0
    assert np.max(np.abs(got[ok] - ref[ok]) / ref[ok]) < 2.5e-7
    x = np.linspace(-30, 30, 60001)
    sp = (np.maximum(x, 0).astype(np.float32) + e_q(np.exp(-np.abs(x)).astype(np.float32))).astype(np.float64)
    ref = np.logaddexp(0, x)
    assert np.max(np.abs(sp - ref) / ref) < 3e-7


def test_time_parallel_configuration():
    """Time-parallel kernels for N <= 8 with at least 4 warps per SM; the forward loads the next window into
    registers for 2-byte inputs (TP_PF bits: 1 B/C, 2 delta/u) and prefetches it into L2 for fp32 (TP_GPF); the
    scan over the lanes runs without predication and the end test takes one compare per step for 2-byte inputs
    (TP_ABSORB, TP_FASTMASK); an override wins."""
    c = cs.launch_config(16, 96, 1, 8, 4096, grad=True)
    for in_bytes, pf, gpf, absorb in ((2, 3, 0, 1), (4, 0, 1, 0)):
        tp = cs.tp_config(c, 16, 96, 8, 132, in_bytes)
        assert (tp['TP_PF'], tp['TP_GPF'], tp['TP_ABSORB'], tp['TP_FASTMASK']) == (pf, gpf, absorb, absorb)
        assert cs._defines(tp, torch.empty(1, 96, 8, device='meta', dtype={2: torch.bfloat16, 4: torch.float32}[
            in_bytes]), torch.empty(1, 1, 8, 8, device='meta'), None, None, None, True)['TP_ABSORB'] == absorb
    assert cs.tp_config(c, 1, 96, 8, 132, 2) is None                      # 96 warps: the lane kernels
    assert cs.tp_config(cs.launch_config(16, 96, 1, 16, 4096), 16, 96, 16, 132, 2) is None     # N = 16
    cs._CONFIG_OVERRIDE['TP_PF'] = 2
    try:
        assert cs.tp_config(c, 16, 96, 8, 132, 2)['TP_PF'] == 2
    finally:
        cs._CONFIG_OVERRIDE.clear()


def test_chunk_length_with_autograd_by_state_count():
    """With autograd the lane kernels take 8-step chunks, 16 at N = 32 (faster there, half the checkpoints); 16
    without autograd."""
    t = {n: cs.launch_config(16, 240, 1, n, 4096, grad=True)['T'] for n in (16, 24, 32, 64)}
    assert t == {16: 8, 24: 16, 32: 16, 64: 8}
    assert cs.launch_config(16, 240, 1, 32, 4096, grad=False)['T'] == 16
    assert cs.ckpt_shape(16, 240, 1, 32, 4096) == (16, 240, 256, 32)


def test_kernels_compile_for_ampere_too():
    c = cs.launch_config(16, 384, 1, 16, 4096)
    defines = dict(NS=c['NS'], TPC=c['TPC'], DB=c['DB'], T=c['T'], RG=c['RG'], BWD_MINB=1, HAS_D=1, HAS_Z=1,
                   HAS_BIAS=1, SOFTPLUS=1, IN_KIND=1, BC_KIND=1, STORE_CKPT=1, REVERSE=0, STORE_OUT=1)
    ok, log, _ = _compile_ptx(defines, arch='compute_80')
    assert ok, log


def test_a_broken_configuration_fails_with_the_compiler_log():
    # TPC must divide 32: the source's static_assert has to fire, and the launcher would report NVRTC's log
    ok, log, _ = _compile_ptx(dict(NS=1, TPC=3, DB=32, T=16, RG=2, BWD_MINB=1, HAS_D=0, HAS_Z=0, HAS_BIAS=0,
                                   SOFTPLUS=0, IN_KIND=0, BC_KIND=0, STORE_CKPT=0, REVERSE=0, STORE_OUT=1))
    assert not ok and 'TPC must divide 32' in log


def test_channel_blocks_pad_the_group_least():
    c = cs.launch_config(16, 96, 1, 8, 4096)            # MambaIRv2-light: 3 blocks of 32, not a half-empty 2nd of 64
    assert (c['DB'], c['n_dblk']) == (32, 3)
    c = cs.launch_config(16, 384, 1, 16, 4096)          # a power of two: the largest block (16 channels x 8 lanes)
    assert (c['DB'], c['n_dblk']) == (16, 24)


def test_segments_only_for_small_grids():
    c = cs.launch_config(16, 384, 1, 16, 4096)
    assert cs._segments(c, 16, 1, 4096, 132, grad=True) == 1            # MMA-B training batch: enough warps
    # MPSI's training batch (7.3 warps per multiprocessor): splitting it doubled the work for no gain
    c = cs.launch_config(16, 240, 1, 32, 4096, grad=False)
    assert cs._segments(c, 16, 1, 4096, 132, grad=False) == 1
    c = cs.launch_config(16, 96, 1, 8, 4096, grad=False)                # MambaIRv2-light: 96 warps, split
    assert cs._segments(c, 16, 1, 4096, 132, grad=False) == 44
    c = cs.launch_config(1, 384, 1, 16, 65536, grad=False)
    s = cs._segments(c, 1, 1, 65536, 132, grad=False)                   # one 256x256 image: split
    assert 2 <= s <= 128
    # MPSI's inference width (120 channels, N 32): without autograd 16 lanes per channel, 60 warps, split to aim
    # at 32 warps per SM (71 segments); with autograd 8 lanes, 30 warps, up to 64 segments
    c = cs.launch_config(1, 120, 1, 32, 65536, grad=False)
    assert cs._segments(c, 1, 1, 65536, 132, grad=False) == 71
    c = cs.launch_config(1, 120, 1, 32, 65536, grad=True)
    assert cs._segments(c, 1, 1, 65536, 132, grad=True) == 64
    cs._CONFIG_OVERRIDE['SEGMENTS'] = 3
    try:
        assert cs._segments(c, 1, 1, 65536, 132, grad=False) == 3
    finally:
        cs._CONFIG_OVERRIDE.clear()


def test_cpu_tensors_get_a_clear_error():
    u = torch.randn(1, 4, 8)
    A = -torch.rand(4, 2)
    B = torch.randn(1, 2, 8)
    with pytest.raises(RuntimeError, match='CUDA tensors only'):
        cs.selective_scan_cuda(u, u, A, B, B)
    assert "cuda" not in available_backends("cpu")


def _kernel_params(name):
    """(kind per parameter) of an extern "C" kernel in the source: 'ptr', 'int' or 'll'."""
    import re
    with open(cs._SRC) as f:
        src = f.read()
    sig = src[src.index(f'\n{name}(') + len(name) + 2:]
    sig = sig[:sig.index(') {')]
    kinds = []
    for param in sig.split(','):
        param = param.strip()
        assert re.match(r'^(const )?\w+ \*__restrict__ \w+$|^int \w+$|^long long \w+$', param), param
        kinds.append('ptr' if '*' in param else 'll' if param.startswith('long long') else 'int')
    return kinds


class _FakeKernel:
    def __init__(self, name, defines=None):
        self.name, self.defines, self.func, self.nthreads = name, defines or {}, None, 0


def _ctype_kind(a):
    return {ctypes.c_void_p: 'ptr', ctypes.c_int: 'int', ctypes.c_longlong: 'll'}[type(a)]


@pytest.mark.parametrize('batch,seqlen,segments,N,tp', [(16, 4096, 1, 16, 0), (1, 65536, 4, 16, 0),
                                                         (16, 4096, 1, 8, 1), (2, 4099, 1, 5, 1)])
def test_launchers_pass_the_kernels_parameters(monkeypatch, batch, seqlen, segments, N, tp):
    """The ctypes argument lists match the kernels' signatures (count and kind, in order), with and without the
    two-pass split of long sequences and with the time-parallel forward; checked on the CPU by recording the
    launches instead of running them."""
    calls = []

    def fake_run(plan, tensors, device):
        assert set(plan.slots) <= set(tensors) | {'seg_a', 'seg_b'}     # every pointer argument is given a tensor
        calls.extend((launch.kernel.name, launch.grid, launch.args, launch.kernel.defines)
                     for launch in plan.launches)

    monkeypatch.setattr(cs, '_kernel', lambda name, defines, device: _FakeKernel(name, defines))
    monkeypatch.setattr(cs._Plan, 'run', fake_run)
    monkeypatch.setattr(cs, '_PLANS', threading.local())        # no plans with fake kernels left for later tests
    monkeypatch.setitem(cs._CONFIG_OVERRIDE, 'SEGMENTS', segments)
    monkeypatch.setitem(cs._CONFIG_OVERRIDE, 'TP', tp)
    d = 8
    u, delta, z = (torch.randn(batch, d, seqlen) for _ in range(3))
    A, D, bias = -torch.rand(d, N), torch.randn(d), torch.randn(d)
    B4, C4 = torch.randn(batch, 1, N, seqlen), torch.randn(batch, 1, N, seqlen)
    out, last, ckpt = cs._fwd(u, delta, A, B4, C4, D, z, bias, True, True)
    assert out.shape == u.shape and last.shape == (batch, d, N)
    assert ckpt.shape == cs.ckpt_shape(batch, d, 1, N, seqlen)
    grads = cs._bwd(torch.randn_like(u), u, delta, A, B4, C4, D, z, bias, True, ckpt)
    assert [tuple(g.shape) for g in grads] == [u.shape, u.shape, A.shape, B4.shape, B4.shape, D.shape, z.shape,
                                               bias.shape]
    n_launches = {}
    for name, grid, args, _ in calls:
        assert [_ctype_kind(a) for a in args] == _kernel_params(name)
        assert grid[2] == segments
        n_launches[name] = n_launches.get(name, 0) + 1
    fwd, bwd = ('ssm_fwd_tp', 'ssm_bwd_tp') if tp else ('ssm_fwd', 'ssm_bwd')
    assert n_launches == ({fwd: 1, bwd: 1} if segments == 1 else {fwd: 2, bwd: 2})
    if segments > 1:
        # Pass 1 of each split runs a build of its own (summaries only), passed mode 1; pass 2 the full one, mode 2.
        (_, _, fa1, fd1), (_, _, fa2, fd2), (_, _, ba1, bd1), (_, _, ba2, bd2) = calls
        assert (fd1['STORE_OUT'], fd2['STORE_OUT'], fa1[-1].value, fa2[-1].value) == (0, 1, 1, 2)
        assert (bd1.get('SUMMARY'), bd2.get('SUMMARY', 0), ba1[-1].value, ba2[-1].value) == (1, 0, 1, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('batch,dim,seqlen,dstate,grouped,segments', [
    (2, 24, 333, 16, False, None), (3, 16, 1000, 8, True, None), (1, 8, 4099, 32, False, 4)])
def test_cuda_scan_matches_the_float64_reference_on_gpu(batch, dim, seqlen, dstate, grouped, segments):
    """Outputs, last state and every gradient against the sequential reference in float64 (GPU machines only)."""
    from mamba_sr_archs.ops import selective_scan_ref
    g = torch.Generator(device='cuda').manual_seed(0)
    kw = dict(device='cuda', generator=g)
    bc = (batch, 1, dstate, seqlen) if grouped else (batch, dstate, seqlen)
    ins = [torch.randn(batch, dim, seqlen, **kw), torch.randn(batch, dim, seqlen, **kw) * 0.5 - 1,
           -torch.rand(dim, dstate, **kw) * 4 - 0.1, torch.randn(*bc, **kw), torch.randn(*bc, **kw),
           torch.randn(dim, **kw), torch.randn(batch, dim, seqlen, **kw), torch.randn(dim, **kw) * 0.5]
    ours = [t.clone().requires_grad_() for t in ins]
    ref = [t.double().requires_grad_() for t in ins]
    if segments:
        cs._CONFIG_OVERRIDE['SEGMENTS'] = segments
    try:
        y, last = cs.selective_scan_cuda(*ours, delta_softplus=True, return_last_state=True)
    finally:
        cs._CONFIG_OVERRIDE.clear()
    y64, last64 = selective_scan_ref(*ref, delta_softplus=True, return_last_state=True)
    w = torch.randn(y.shape, device='cuda', generator=g)
    (y * w).sum().backward()
    (y64 * w.double()).sum().backward()

    def rel(a, b):
        return ((a.double() - b).norm() / b.norm()).item()
    assert rel(y, y64) < 1e-4 and rel(last, last64) < 1e-4
    for name, a, b in zip(['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias'], ours, ref):
        assert rel(a.grad, b.grad) < 1e-4, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('seqlen,segments', [(1000, None), (4099, 4)])
def test_reverse_scan_equals_the_flipped_scan_on_gpu(seqlen, segments):
    """``reverse=True`` gives what flipping every input along L, scanning and flipping back gives (outputs, last
    state, every gradient), and a checkpoints-only forward stores the same checkpoints as the full one."""
    g = torch.Generator(device='cuda').manual_seed(1)
    kw = dict(device='cuda', generator=g)
    b, d, n = 2, 32, 16
    u, delta, z = (torch.randn(b, d, seqlen, **kw) for _ in range(3))
    A = -torch.rand(d, n, **kw) * 4 - 0.1
    B4, C4 = (torch.randn(b, 1, n, seqlen, **kw) for _ in range(2))
    D, bias = torch.randn(d, **kw), torch.randn(d, **kw) * 0.5
    dout = torch.randn(b, d, seqlen, **kw)
    if segments:
        cs._CONFIG_OVERRIDE['SEGMENTS'] = segments
    try:
        out_r, last_r, ckpt_r = cs._fwd(u, delta, A, B4, C4, D, z, bias, True, True, reverse=True)
        none, _, ckpt_only = cs._fwd(u, delta, A, B4, C4, D, z, bias, True, True, reverse=True, store_out=False)
        grads_r = cs._bwd(dout, u, delta, A, B4, C4, D, z, bias, True, ckpt_r, reverse=True)
        f = [t.flip(-1).contiguous() for t in (u, delta, B4, C4, z, dout)]
        out_f, last_f, ckpt_f = cs._fwd(f[0], f[1], A, f[2], f[3], D, f[4], bias, True, True)
        grads_f = cs._bwd(f[5], f[0], f[1], A, f[2], f[3], D, f[4], bias, True, ckpt_f)
    finally:
        cs._CONFIG_OVERRIDE.clear()
    assert none is None and torch.equal(ckpt_only, ckpt_r)
    torch.testing.assert_close(out_r, out_f.flip(-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last_r, last_f, rtol=1e-5, atol=1e-5)
    for name, gr, gf in zip(['du', 'ddelta', 'dA', 'dB', 'dC', 'dD', 'dz', 'dbias'], grads_r, grads_f):
        along_l = gr.dim() >= 3
        torch.testing.assert_close(gr, gf.flip(-1) if along_l else gf, rtol=1e-4, atol=1e-4, msg=name)


def test_the_lane_forward_copies_chunks_asynchronously_only_where_rows_allow(monkeypatch):
    """cp.async copies (ASYNC) where every row is contiguous and 16-byte aligned and L whole vectors; element-wise
    loads for a view one element into a row or an L that is not; the reduction deferred (DEFER) where the forward
    stores outputs; B/C read straight from the copied rows (BCD) wherever the copies are made.  Blocks of 256
    threads without autograd at N = 32, 64 threads of 32-step chunks without autograd at N = 16, else 128."""
    built = []
    monkeypatch.setattr(cs, '_kernel', lambda name, defines, device: built.append((name, defines)) or
                        _FakeKernel(name))
    monkeypatch.setattr(cs._Plan, 'run', lambda plan, tensors, device: plan.fill(tensors))
    monkeypatch.setattr(cs, '_PLANS', threading.local())
    monkeypatch.setattr(cs, '_sm_count', lambda device: 132)

    def flags(seqlen=64, offset=0, dtype=torch.bfloat16, store_out=True):
        built.clear()
        # offset: a view one element into rows of seqlen + 8 (row strides stay whole vectors; the address is not)
        u, delta = (torch.randn(2, 32, seqlen + 8).to(dtype)[..., offset:offset + seqlen] for _ in range(2))
        B4, C4 = (torch.randn(2, 1, 16, seqlen).to(dtype) for _ in range(2))
        cs._fwd(u, delta, -torch.rand(32, 16), B4, C4, None, None, None, True, False, store_out=store_out)
        (name, defines), = built
        return name, defines['ASYNC'], defines['DEFER'], defines['BCD']

    assert flags() == ('ssm_fwd', 1, 1, 1)
    assert flags(dtype=torch.float32) == ('ssm_fwd', 1, 1, 1)
    assert flags(offset=1) == ('ssm_fwd', 0, 1, 0)         # rows start one element past a 16-byte boundary
    assert flags(seqlen=60) == ('ssm_fwd', 0, 1, 0)        # rows of 120 bytes: not whole vectors
    assert flags(store_out=False) == ('ssm_fwd', 1, 0, 1)  # checkpoints only: nothing to reduce
    monkeypatch.setitem(cs._CONFIG_OVERRIDE, 'BCD', 0)
    assert flags() == ('ssm_fwd', 1, 1, 0)
    monkeypatch.setitem(cs._CONFIG_OVERRIDE, 'ASYNC', 0)
    monkeypatch.delitem(cs._CONFIG_OVERRIDE, 'BCD')
    assert flags() == ('ssm_fwd', 0, 1, 0)
    monkeypatch.delitem(cs._CONFIG_OVERRIDE, 'ASYNC')
    monkeypatch.setitem(cs._CONFIG_OVERRIDE, 'PG', 4)      # bf16 B/C: 8 steps per 16-byte read
    assert flags() == ('ssm_fwd', 1, 1, 0)
    assert flags(dtype=torch.float32) == ('ssm_fwd', 1, 1, 1)
    for grad, n, threads, t in ((False, 32, 256, 16), (False, 16, 64, 32), (True, 32, 128, 16), (True, 16, 128, 8)):
        cfg = cs.launch_config(16, 240, 1, n, 4096, grad=grad)
        assert (cfg['DB'] * cfg['TPC'], cfg['T']) == (threads, t), (grad, n)
    # N = 32 without autograd: 16 lanes per channel in fp32, 8 with 2-byte inputs
    assert [cs.launch_config(16, 240, 1, 32, 4096, grad=False, in_bytes=e)['TPC'] for e in (4, 2)] == [16, 8]
    assert cs.launch_config(16, 240, 1, 32, 4096, grad=True, in_bytes=2)['TPC'] == 8
    assert cs.launch_config(16, 240, 1, 64, 4096, grad=False, in_bytes=2)['TPC'] == 16


def test_launch_plans_are_reused_per_call_signature(monkeypatch):
    """A second call with the same shapes reuses the plan (the same ctypes argument arrays, only the tensor
    addresses written again); another shape or configuration override gets its own; the cache is bounded."""
    built = []

    def fake_run(plan, tensors, device):      # the real run without the launches
        plan.fill(tensors)
        built.append((plan, tensors['u'].data_ptr(), plan.slots['u'].value))

    monkeypatch.setattr(cs, '_kernel', lambda name, defines, device: _FakeKernel(name))
    monkeypatch.setattr(cs._Plan, 'run', fake_run)
    monkeypatch.setattr(cs, '_PLANS', threading.local())
    monkeypatch.setattr(cs, '_sm_count', lambda device: 132)

    def call(batch=2, seqlen=64):
        u, delta = torch.randn(batch, 8, seqlen), torch.randn(batch, 8, seqlen)
        B4 = torch.randn(batch, 1, 4, seqlen)
        return cs._fwd(u, delta, -torch.rand(8, 4), B4, B4.clone(), None, None, None, True, False)

    call(), call()
    assert built[0][0] is built[1][0] and built[1][1] == built[1][2]
    call(seqlen=65)
    monkeypatch.setitem(cs._CONFIG_OVERRIDE, 'TP', 1)
    call()
    assert len({id(p) for p, _, _ in built}) == 3
    monkeypatch.setattr(cs, '_MAX_PLANS', 2)
    call(batch=3)
    assert len(cs._PLANS.cache) == 1


def _tp_inputs(batch, dim, seqlen, dstate, dtype, with_z, misaligned, seed):
    g = torch.Generator(device='cuda').manual_seed(seed)
    kw = dict(device='cuda', generator=g)

    def row(scale=1.0, shift=0.0):      # (b, d, L); misaligned: a view one element into a wider tensor
        x = torch.randn(batch, dim, seqlen + misaligned, **kw) * scale + shift
        return x[..., misaligned:].to(dtype)
    B4, C4 = (torch.randn(batch, 1, dstate, seqlen, **kw).to(dtype) for _ in range(2))
    return [row(), row(0.5, -1), -torch.rand(dim, dstate, **kw) * 4 - 0.1, B4, C4, torch.randn(dim, **kw),
            row() if with_z else None, torch.randn(dim, **kw) * 0.5]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('batch,dim,seqlen,dstate,dtype,with_z,misaligned', [
    (2, 12, 1, 8, torch.float32, True, 0), (3, 16, 1000, 8, torch.float32, False, 0),
    (2, 8, 4099, 5, torch.float32, True, 1), (2, 16, 2048, 8, torch.bfloat16, True, 0),
    (1, 4, 257, 1, torch.float32, False, 0), (2, 6, 777, 4, torch.bfloat16, False, 1)])
def test_time_parallel_kernels_match_the_reference_on_gpu(batch, dim, seqlen, dstate, dtype, with_z,
                                                            misaligned):
    """The time-parallel kernels (forced): outputs, last state and every gradient against the float64 reference;
    the checkpoints equal the lane kernel's; reversed equals flipped (forward and backward); the checkpoints-only
    build stores the same checkpoints.  Unaligned rows take the element-wise path."""
    from mamba_sr_archs.ops import selective_scan_ref
    ins = _tp_inputs(batch, dim, seqlen, dstate, dtype, with_z, misaligned, seed=2)
    ours = [t.detach().clone().requires_grad_() if t is not None else None for t in ins]
    ref = [t.detach().double().requires_grad_() if t is not None else None for t in ins]
    cs._CONFIG_OVERRIDE['TP'] = 1
    try:
        assert cs.tp_config(cs.launch_config(batch, dim, 1, dstate, seqlen), batch, dim, dstate, 132) is not None
        y, last = cs.selective_scan_cuda(*ours, delta_softplus=True, return_last_state=True)
        w = torch.randn(y.shape, device='cuda', generator=torch.Generator(device='cuda').manual_seed(3))
        (y.float() * w).sum().backward()
        args = [t.detach() if t is not None else None for t in ins]
        out_tp, last_tp, ckpt_tp = cs._fwd(*args, True, True)
        none, _, ckpt_only = cs._fwd(*args, True, True, store_out=False)
        out_r, last_r, ckpt_r = cs._fwd(*args, True, True, reverse=True)
        dout = torch.randn_like(out_r)
        grads_r = cs._bwd(dout, *args, True, ckpt_r, reverse=True)
        flip = [t.flip(-1) if t is not None and i in (0, 1, 3, 4, 6) else t for i, t in enumerate(args)]
        out_f, last_f, ckpt_f = cs._fwd(*flip, True, True)
        grads_f = cs._bwd(dout.flip(-1), *flip, True, ckpt_f)
        cs._CONFIG_OVERRIDE['TP'] = 0
        out_lane, _, ckpt_lane = cs._fwd(*args, True, True)
    finally:
        cs._CONFIG_OVERRIDE.clear()
    y64, last64 = selective_scan_ref(*ref, delta_softplus=True, return_last_state=True)
    (y64 * w.double()).sum().backward()

    def rel(a, b):      # norm-relative; absolute where the reference is zero (dA at L = 1: no earlier state)
        return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1.0 if b.norm() == 0 else 0)).item()
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    assert rel(y, y64) < tol and rel(last, last64) < 1e-4
    for name, a, b in zip(['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias'], ours, ref):
        if a is not None:
            assert rel(a.grad, b.grad) < tol, name
    assert none is None and torch.equal(ckpt_only, ckpt_tp)
    assert rel(ckpt_tp, ckpt_lane) < 1e-5 and rel(out_tp, out_lane) < (1e-5 if dtype == torch.float32 else 1e-2)
    assert rel(out_r, out_f.flip(-1)) < 1e-5 and rel(last_r, last_f) < 1e-5
    for name, gr, gf in zip(['du', 'ddelta', 'dA', 'dB', 'dC', 'dD', 'dz', 'dbias'], grads_r, grads_f):
        if gr is not None:
            assert rel(gr, gf.flip(-1) if gr.dim() >= 3 else gf) < 1e-5, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('dtype,dstate,reverse', [(torch.bfloat16, 8, False), (torch.bfloat16, 8, True),
                                                 (torch.bfloat16, 5, False), (torch.float32, 3, True),
                                                 (torch.float32, 8, False)])
def test_time_parallel_bc_copies_give_the_register_results_on_gpu(dtype, dstate, reverse):
    """The time-parallel forward with B/C copied by cp.async (TP_BCA: aligned rows, whole vectors; the default for
    2-byte B/C) gives bit for bit what its register loads give: outputs, last state, checkpoints; states past N
    read as zeros."""
    ins = _tp_inputs(2, 16, 4096, dstate, dtype, True, 0, seed=5)
    res = {}
    for bca in (0, 1):
        cs._CONFIG_OVERRIDE.update(TP=1, TP_BCA=bca)
        try:
            res[bca] = cs._fwd(*ins, True, True, reverse=reverse)
        finally:
            cs._CONFIG_OVERRIDE.clear()
    for a, b in zip(res[1], res[0]):
        assert torch.equal(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('dtype,seqlen,dstate,reverse,segments,with_z', [
    (torch.bfloat16, 1000, 12, False, None, True), (torch.bfloat16, 4104, 16, True, 3, True),
    (torch.float32, 1000, 32, True, None, False), (torch.float16, 4104, 16, False, 3, False)])
def test_async_chunk_copies_give_the_element_wise_results_on_gpu(dtype, seqlen, dstate, reverse, segments, with_z):
    """The lane forward with chunks copied by cp.async (aligned rows) gives bit for bit what the element-wise loads
    give, with and without the deferred reduction, with B/C read as copied or staged: outputs, last state,
    checkpoints; a partial last chunk, N below its power of two, channels past the last block (20 of them),
    reversed, split into segments.  Split, the copying builds sum each segment's delta in another order (per
    staging thread, then over the channel's threads): there they agree with one another bit for bit and with the
    element-wise loads to rounding."""
    args = [t.detach() if t is not None else None
            for t in _tp_inputs(2, 20, seqlen, dstate, dtype, with_z, 0, seed=4)]
    results = []
    for asy, defer, bcd in ((1, 1, 1), (0, 0, 1), (1, 0, 1), (1, 1, 0)):
        # (one segment unless the case asks for more: these short rows would be split by default)
        cs._CONFIG_OVERRIDE.update({'TP': 0, 'ASYNC': asy, 'DEFER': defer, 'BCD': bcd, 'SEGMENTS': segments or 1})
        try:
            results.append(cs._fwd(*args, True, True, reverse=reverse))
        finally:
            cs._CONFIG_OVERRIDE.clear()
    assert any(name == 'ssm_fwd' and dict(defs).get('ASYNC') == 1 for name, defs, _ in cs._KERNELS)
    for name, *r in zip(('out', 'last', 'ckpt'), *results):
        assert all(torch.equal(r[0], x) for x in (r[2], r[3])), name
        if segments:
            tol = 1e-5 if r[1].dtype == torch.float32 else 1e-2
            torch.testing.assert_close(r[1], r[0], rtol=tol, atol=tol, msg=name)
        else:
            assert torch.equal(r[0], r[1]), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('batch,dim,seqlen,dstate,dtype,reverse,segments,with_z', [
    (2, 20, 4096, 16, torch.bfloat16, False, None, True), (1, 24, 4104, 12, torch.bfloat16, True, 3, True),
    (2, 20, 1000, 16, torch.float32, False, None, False), (1, 16, 2080, 16, torch.float16, True, None, False),
    (2, 20, 1000, 32, torch.bfloat16, False, 2, True)])
def test_forward_without_autograd_matches_the_reference_on_gpu(batch, dim, seqlen, dstate, dtype, reverse, segments,
                                                                with_z):
    """The lane forward as inference runs it (no checkpoints; at N = 16 64-thread blocks of 32-step chunks, B and C
    read from the copied rows): outputs and last state against the float64 reference (flipped inputs for
    reverse); the same bits with the B/C rows staged as floats (BCD=0)."""
    from mamba_sr_archs.ops import selective_scan_ref
    args = [t.detach() if t is not None else None
            for t in _tp_inputs(batch, dim, seqlen, dstate, dtype, with_z, 0, seed=5)]
    results = []
    for bcd in (1, 0):
        cs._CONFIG_OVERRIDE.update({'TP': 0, 'BCD': bcd})
        if segments:
            cs._CONFIG_OVERRIDE['SEGMENTS'] = segments
        try:
            with torch.no_grad():
                results.append(cs._fwd(*args, True, False, reverse=reverse)[:2])
        finally:
            cs._CONFIG_OVERRIDE.clear()
    assert any(name == 'ssm_fwd' and dict(defs).get('BCD') == 1 for name, defs, _ in cs._KERNELS)
    (out, last), (out0, last0) = results
    assert torch.equal(out, out0) and torch.equal(last, last0)
    flip = (lambda t: t.flip(-1)) if reverse else (lambda t: t)
    ref = [flip(t).double() if t is not None and t.dim() >= 3 else (t.double() if t is not None else None)
           for t in args]
    y64, last64 = selective_scan_ref(*ref, delta_softplus=True, return_last_state=True)
    tol = 1e-4 if dtype == torch.float32 else 1e-2

    def rel(a, b):
        return ((a.double() - b).norm() / b.norm()).item()
    assert rel(flip(out), y64) < tol and rel(last, last64) < 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_a_fresh_process_builds_the_backward_in_autograd_thread_on_gpu():
    """The first backward of a process builds its kernel on autograd's device thread, which has made no CUDA
    runtime call yet: the driver calls must make the context current themselves (CUDA error 201 otherwise)."""
    import subprocess
    import sys
    code = ('import torch\n'
            'from mamba_sr_archs.ops import cuda_scan as cs\n'
            'cs._CONFIG_OVERRIDE["TP"] = 1\n'
            'kw = dict(device="cuda", requires_grad=True)\n'
            'u, dt = torch.randn(2, 8, 300, **kw), torch.randn(2, 8, 300, **kw)\n'
            'A = (-torch.rand(8, 8, device="cuda")).requires_grad_()\n'
            'B, C = torch.randn(2, 8, 300, **kw), torch.randn(2, 8, 300, **kw)\n'
            'cs.selective_scan_cuda(u, dt, A, B, C, delta_softplus=True).sum().backward()\n'
            'torch.cuda.synchronize()\n'
            'assert torch.isfinite(A.grad).all() and A.grad.abs().sum() > 0\n')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_automatic_choice_falls_back_when_the_kernels_cannot_be_built(monkeypatch):
    """A KernelBuildError (NVRTC or the driver failing) makes the automatic choice warn and use the next backend;
    an explicit backend='cuda' raises it.  CPU stand-in: the choice is pinned to 'cuda' while it is importable."""
    import importlib
    ss = importlib.import_module('mamba_sr_archs.ops.selective_scan')

    def failing(*args):
        raise cs.KernelBuildError('building the CUDA scan kernel ssm_fwd for sm_90 failed: test')

    def pick(backend, u, dtype, tiv, dstate=16):
        name = ss._requested_backend(backend)
        if name == 'auto':
            return 'cuda' if ss._IMPORTS.get('cuda', (None,))[0] is not None else 'torch'
        return name

    monkeypatch.setitem(ss._IMPORTS, 'cuda', (failing, None))
    monkeypatch.setattr(ss, '_pick_backend', pick)
    monkeypatch.delenv(ss.ENV_VAR, raising=False)
    g = torch.Generator().manual_seed(0)
    u, delta = torch.randn(1, 4, 9, generator=g), torch.randn(1, 4, 9, generator=g)
    A, B, C = -torch.rand(4, 3, generator=g), torch.randn(1, 3, 9, generator=g), torch.randn(1, 3, 9, generator=g)
    with pytest.raises(cs.KernelBuildError):
        ss.selective_scan(u, delta, A, B, C, backend='cuda')
    with pytest.warns(RuntimeWarning, match='falls back to the next backend'):
        out = ss.selective_scan(u, delta, A, B, C)
    assert ss.last_backend() == 'torch'
    torch.testing.assert_close(out, ss.selective_scan_torch(u, delta, A, B, C))
    assert ss._IMPORTS['cuda'][0] is None and 'KernelBuildError' in ss._IMPORTS['cuda'][1]

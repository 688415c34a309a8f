"""Selective scan (S6) as CUDA C++ kernels compiled at run time with NVRTC: no nvcc, no build step.

``selective_scan_cuda`` computes what mamba_ssm's ``selective_scan_fn`` computes (real ``A``; see
``triton_scan`` for the formulas and layouts, which are the same).  The kernels are in ``csrc/selective_scan.cu``;
the first call for a configuration compiles them with NVRTC (the runtime compiler that ships with PyTorch's CUDA
wheels, ``libnvrtc``) into a cubin for the present GPU and loads it through the CUDA driver, about a second per
configuration, cached for the process.

Why a second GPU backend beside Triton: the S6 recurrence is cheapest when a thread walks time sequentially and
keeps its states in registers (one exp2 and two FMAs per state and step); Triton's layouts put time on the lanes
and pay a scan tree and layout conversions per chunk, which left our Triton kernels 1.5-4.5x slower than
mamba_ssm's (docs/benchmarks.md).  Here a thread owns NS states of one channel, the TPC threads of a channel are
neighbouring lanes, and only sums over states or channels cross lanes (reduce-scatters, shuffles).
"""
import ctypes
import ctypes.util
import glob
import os
import sys
import threading

import torch

from ._kernel_scan import KernelScan, cast_if as _as, grad_buffers, next_pow2 as _next_pow2, sm_count as _sm_count

__all__ = ['selective_scan_cuda', 'is_available', 'launch_config', 'unavailable_reason', 'KernelBuildError']


class KernelBuildError(RuntimeError):
    """NVRTC could not compile the kernels, or the driver could not load them (``selective_scan`` in automatic
    mode then falls back to the next backend, with a warning)."""

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc', 'selective_scan.cu')
_KINDS = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
MAX_DSTATE = 64
# Benchmarks may set NS / T / NTHREADS / SEGMENTS (and ASYNC / DEFER / BCD 0: the lane forward's element-wise loads,
# its reduction after each chunk, its B/C staged as floats; DTU2 / SP1 0 or 1: its paired (delta, delta u) reads,
# the one-instruction softplus; TP_BCA 0 or 1: the time-parallel forward's B/C copies by cp.async; the
# time-parallel keys of _TP_DEFINES) here to try other launch configurations; empty in normal use.
_CONFIG_OVERRIDE = {}
# When True, outputs are pre-filled with NaN so that an element no thread writes shows up in checks.
_POISON_OUTPUTS = False
_LOCK = threading.Lock()
_STATE = {'error': None, 'nvrtc': None, 'cuda': None}
_KERNELS = {}


# ---------------------------------------------------------------------------------------------------------------
# NVRTC and the CUDA driver, through ctypes
# ---------------------------------------------------------------------------------------------------------------

def _find_nvrtc():
    getter = getattr(getattr(torch.cuda, '_utils', None), '_get_gpu_rtc_library', None)
    if getter is not None:
        try:
            return getter()
        except Exception:
            pass
    names = []
    for base in (os.path.dirname(torch.__file__), os.path.join(os.path.dirname(torch.__file__), '..')):
        names += glob.glob(os.path.join(base, 'nvidia', '*', 'lib', 'libnvrtc.so*'))
        names += glob.glob(os.path.join(base, 'nvidia', 'cuda_nvrtc', 'lib', 'libnvrtc.so*'))
    found = ctypes.util.find_library('nvrtc')
    if found:
        names.append(found)
    for name in names:
        if 'builtins' in name or '.alt.' in name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError('libnvrtc not found (it ships with PyTorch CUDA wheels as nvidia-cuda-nvrtc)')


def _nvrtc():
    """NVRTC alone (compiling needs no driver: the tests compile cubins on machines without a GPU)."""
    if _STATE['nvrtc'] is None:
        _STATE['nvrtc'] = _find_nvrtc()
    return _STATE['nvrtc']


def _libs():
    """(NVRTC, the CUDA driver library)."""
    if _STATE['cuda'] is None:
        _STATE['cuda'] = ctypes.CDLL('libcuda.so.1')
    return _nvrtc(), _STATE['cuda']


def _check_cu(res, what):
    if res != 0:
        _, cuda = _libs()
        msg = ctypes.c_char_p()
        cuda.cuGetErrorString(res, ctypes.byref(msg))
        raise RuntimeError(f'{what} failed: CUDA error {res} ({(msg.value or b"?").decode()})')


_PRIMARY = {}        # device index -> its primary context (retained once)


def _ensure_context(device):
    """Make the device's primary context (PyTorch's) current on this thread; returns the driver library.  Driver
    calls need a current context; PyTorch's runtime calls bind it lazily, so a thread that has made none yet
    (autograd's device thread, when the backward builds or launches a kernel first) has none: cuModuleLoadData failed
    there with CUDA error 201."""
    _, cuda = _libs()
    ctx = _PRIMARY.get(device.index)
    if ctx is None:
        dev = ctypes.c_int()
        _check_cu(cuda.cuDeviceGet(ctypes.byref(dev), device.index), 'cuDeviceGet')
        ctx = ctypes.c_void_p()
        _check_cu(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), 'cuDevicePrimaryCtxRetain')
        _PRIMARY[device.index] = ctx
    cur = ctypes.c_void_p()
    _check_cu(cuda.cuCtxGetCurrent(ctypes.byref(cur)), 'cuCtxGetCurrent')
    if cur.value != ctx.value:
        _check_cu(cuda.cuCtxSetCurrent(ctx), 'cuCtxSetCurrent')
    return cuda


def _nvrtc_cubin(source, options):
    nvrtc = _nvrtc()
    prog = ctypes.c_void_p()
    res = nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b'selective_scan.cu', 0, None, None)
    if res != 0:
        raise RuntimeError(f'nvrtcCreateProgram failed ({res})')
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        res = nvrtc.nvrtcCompileProgram(prog, len(options), opts)
        if res != 0:
            size = ctypes.c_size_t()
            nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            nvrtc.nvrtcGetProgramLog(prog, log)
            raise RuntimeError(f'NVRTC could not compile {_SRC} with {options}:\n{log.value.decode()}')
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        cubin = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetCUBIN(prog, cubin)
        return cubin.raw
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))


class _Kernel:
    """One loaded kernel function (launched through ``_Launch``)."""

    def __init__(self, module, func, nthreads):
        self.module, self.func, self.nthreads = module, func, nthreads


_KERNEL_NAMES = ('ssm_fwd', 'ssm_bwd', 'ssm_fwd_tp', 'ssm_bwd_tp')    # index: the SS_ONLY value that builds it


def _block_threads(name, defines):
    """Threads per block: DB channels of TPC lanes; the time-parallel kernels give each channel a warp."""
    return defines['DB'] * (32 if name.endswith('_tp') else defines['TPC'])


def compile_options(name, defines, arch):
    """NVRTC options that build kernel ``name`` (one of ``_KERNEL_NAMES``) for ``arch`` (e.g. 'sm_90')."""
    options = [f'--gpu-architecture={arch}', '--use_fast_math', '-std=c++17']
    options += [f'-DSS_{k}={int(v)}' for k, v in sorted(defines.items())]
    # Only the kernel launched: the forward's chunk (TF) would not fit the backward's shared memory.
    options.append(f'-DSS_ONLY={_KERNEL_NAMES.index(name)}')
    if os.environ.get('MAMBA_SR_NVRTC_LINEINFO') == '1':      # source lines for profilers (ncu)
        options.append('--generate-line-info')
    return options


def _kernel(name, defines, device):
    """Compiled and loaded kernel ``name`` for the given -D values, cached per device and configuration."""
    key = (name, tuple(sorted(defines.items())), device.index)
    k = _KERNELS.get(key)
    if k is not None:
        return k
    with _LOCK:
        if key in _KERNELS:
            return _KERNELS[key]
        major, minor = torch.cuda.get_device_capability(device)
        with open(_SRC) as f:
            source = f.read()
        options = compile_options(name, defines, f'sm_{major}{minor}')
        try:
            cubin = _nvrtc_cubin(source, options)
            with torch.cuda.device(device):
                cuda = _ensure_context(device)
                module = ctypes.c_void_p()
                _check_cu(cuda.cuModuleLoadData(ctypes.byref(module), cubin), 'cuModuleLoadData')
                func = ctypes.c_void_p()
                _check_cu(cuda.cuModuleGetFunction(ctypes.byref(func), module, name.encode()),
                          'cuModuleGetFunction')
        except (RuntimeError, OSError) as exc:
            raise KernelBuildError(f'building the CUDA scan kernel {name} for sm_{major}{minor} failed: {exc}') \
                from exc
        k = _Kernel(module, func, _block_threads(name, defines))
        _KERNELS[key] = k
        return k


def unavailable_reason():
    """None when the CUDA kernels can be used here, else a one-line reason."""
    if not torch.cuda.is_available():
        return 'no CUDA device'
    if torch.version.hip:
        return 'ROCm build of PyTorch (the kernels are CUDA C++)'
    if _STATE['error'] is None:
        try:
            major, _ = torch.cuda.get_device_capability()
            if major < 8:
                raise RuntimeError(f'compute capability {major}.x < 8.0 (bf16 conversions need sm_80)')
            _libs()
            _STATE['error'] = ''
        except Exception as exc:  # pragma: no cover - depends on the install
            _STATE['error'] = f'{type(exc).__name__}: {exc}'
    return _STATE['error'] or None


def is_available():
    """True when a CUDA device, NVRTC and the driver library are present (compute capability >= 8.0)."""
    return unavailable_reason() is None


# ---------------------------------------------------------------------------------------------------------------
# Launch configuration
# ---------------------------------------------------------------------------------------------------------------

def launch_config(batch, dim, groups, dstate, seqlen, sm_count=132, grad=True, chunk=None, in_bytes=4):
    """Per-thread states NS, threads per channel TPC, channels per block DB, chunk length T, reduction group RG.

    ``grad``: the configuration of a forward that stores checkpoints and of its backward (they must agree on T,
    the checkpoint interval); ``grad=False`` that of a forward without autograd; ``chunk`` asks for another chunk
    length T (= checkpoint interval; the lean Mamba path keeps fewer checkpoints this way).  Defaults from the sweeps in
    docs/benchmarks.md (H100): N >= 16: 8 lanes per channel (NS = N/8 states per thread), T = 8 with autograd (16
    at N = 32) and 16 without (32 at N = 16; N >= 32 without autograd: NS = N/16, but N/8 at N = 32 with 2-byte
    inputs, ``in_bytes``); N <= 8: NS = min(N, 4), T = 16.
    Blocks of 128 threads (without autograd: 256 at N = 32, 64 at N = 16).  NS >= N/32 so that a channel fits in a
    warp.  ``PG``: forward steps whose exp2 and shared loads are issued ahead of their recurrence, T unless
    ``_CONFIG_OVERRIDE['PG']`` says otherwise (MMA-B's batch-16 forward 0.355 ms at PG = 16 vs 0.384 step by step;
    docs/bench_results/cuda_scan_run24).  ``TF``: the forward's own chunk length, a multiple of T and at least 16;
    it stores checkpoints every T steps.
    """
    over = _CONFIG_OVERRIDE
    npad = _next_pow2(dstate)
    # 256 threads for the forward without autograd at N = 32 (16 channels of 16 lanes share a block's B/C staging):
    # MPSI's batch-16 forward 0.287 vs 0.308 ms (bf16), 0.302 vs 0.326 (fp32); MMA-B's N = 16 is slower so
    # (cuda_scan_run65, run66).
    # 64 threads and 32-step chunks for the forward without autograd at N = 16 (with the B/C rows read as copied,
    # BCD): MMA-B's batch-16 forward 0.217 vs 0.242 ms (bf16), 0.248 vs 0.301 (fp32); its LR 256x256 inference
    # sequence 0.357 vs 0.381 / 0.397 vs 0.466 (cuda_scan_run73).
    lean16 = npad == 16 and not grad
    nthreads = int(over.get('NTHREADS', 256 if npad == 32 and not grad else 64 if lean16 else 128))
    # N >= 32 without autograd: 16 lanes per channel (twice the warps; MPSI's batch-16 forward 0.417 vs 0.525 ms,
    # docs/bench_results/cuda_scan_sweeps/log_run5.txt); with autograd 8 (its backward is faster so).  With 2-byte
    # inputs (``in_bytes``) and B/C read as copied, 8 lanes at N = 32 are faster again: 0.241 vs 0.266 ms in bf16
    # (0.281 vs 0.272 in fp32; cuda_scan_run72, run77).
    lanes16 = npad >= 32 and not grad and not (npad == 32 and in_bytes < 4)
    ns = int(over.get('NS') or (npad // 16 if lanes16 else npad // 8 if npad >= 16 else min(npad, 4)))
    ns = max(ns, npad // 32)
    tpc = npad // ns
    dpg = dim // groups
    # Channels per block: a power of two up to nthreads / tpc (whole warps); the one that pads the group's channels
    # least (96 channels: 32, not 64 with a half-empty second block), the largest of those.
    cands = [1 << i for i in range(12) if 32 // tpc <= (1 << i) <= max(32 // tpc, nthreads // tpc)]
    db = min(cands, key=lambda x: (-(-dpg // x) * x, -x))
    rg = _next_pow2(max(2, tpc // 2, -(-16 // (tpc * ns))))
    # With autograd, 8-step chunks, except at N = 32 (MPSI), where 16 took its batch-16 forward+backward from 2.02 to
    # 1.91 ms (fp32) and 2.03 to 1.89 (bf16), and halves the checkpoints (MMA-B's N = 16: 1.56 -> 1.93 ms, so 8 stays;
    # cuda_scan_run54, run55).
    t = max(int(over.get('T') or chunk or (8 if grad and npad >= 16 and npad != 32 else 32 if lean16 else 16)), tpc,
            rg)

    def bwd_smem(db):        # the backward's static shared memory: 8 channel rows, (B, C) pairs, per-warp dB/dC
        return ((8 * db + 2 * (db * tpc // 32) * npad) * (t + 1) + t * (2 * npad + 4)) * 4

    while db > 32 // tpc and bwd_smem(db) > 48 * 1024:
        db //= 2
    n_dblk = -(-dpg // db)
    pg = int(over.get('PG', t))
    # The forward walks chunks of TF >= 16 steps (its per-chunk costs halve from T = 8), storing checkpoints every T.
    tf = int(over.get('TF') or -(-16 // t) * t)
    return dict(NS=ns, TPC=tpc, DB=db, T=t, TF=tf if tf % t == 0 else t, RG=rg, PG=pg if t % pg == 0 else t,
                n_dblk=n_dblk, grid=(groups * n_dblk, batch, 1), dpg=dpg)


# Segment rule (split below this many warps per multiprocessor, warps per multiprocessor aimed at, most segments):
# for the forward without autograd (inference), aiming at 32 took MPSI's compiled LR 256x256 inference from 35.3 to
# 32.5 ms on an H100 (MMA-B unchanged, 79.3-79.5 ms; docs/benchmarks.md, networks_run20); training kernels aim at 16,
# which the training benchmarks were run with.  Both split only below 4 warps per multiprocessor: splitting MPSI's
# batch-16 scan (7.3 warps per multiprocessor) into 5 segments made it 1.6x slower (networks_run22).
_SEG_RULE = {False: (4, 32, 128), True: (4, 16, 64)}


def _segments(cfg, batch, groups, seqlen, sm_count, grad):
    """Segments the forward (``grad=False``: without autograd) or backward splits the sequence into (1 = no split).

    A grid of few warps (a long single sequence, or few channels) leaves the GPU latency-bound: each thread walks
    the whole sequence.  Split into S segments, pass 1 scans every segment from a zero state keeping its last state
    and total decay, pass 2 rescans every segment from its true start state (folded from the pass-1 summaries of
    the segments before it) writing the outputs and checkpoints.  That doubles the exp2 work, so it is used only
    below a few warps per multiprocessor (``_SEG_RULE``).  ``_CONFIG_OVERRIDE['SEGMENTS']`` forces a count;
    ``SEG_WARPS`` (warps per multiprocessor aimed at) and ``SEG_MAX`` (most segments) change the rule.
    """
    n_chunks = -(-seqlen // cfg['T'])
    forced = _CONFIG_OVERRIDE.get('SEGMENTS')
    if forced:
        return max(1, min(int(forced), n_chunks))
    warps = batch * groups * cfg['n_dblk'] * cfg['DB'] * cfg['TPC'] // 32
    below, aim, most = _SEG_RULE[bool(grad)]
    want = sm_count * int(_CONFIG_OVERRIDE.get('SEG_WARPS', aim))
    if warps >= below * sm_count:
        return 1
    return max(1, min(-(-want // warps), n_chunks // 4, int(_CONFIG_OVERRIDE.get('SEG_MAX', most))))


# The time-parallel kernels (ssm_fwd_tp / ssm_bwd_tp) run calls with N <= 8 whose (batch, channel) pairs give at
# least this many warps per multiprocessor (a warp per channel; fewer leave it latency-bound: then the lane kernels
# with the segment split above).
_TP_MIN_WARPS = 4


# The time-parallel kernels' own compile-time settings: keys of tp_config's result (and of _CONFIG_OVERRIDE) that
# _defines passes on as -DSS_<key>.
_TP_DEFINES = ('TP_MINB', 'TP_PF', 'TP_BU', 'TP_GPF', 'TP_ABSORB', 'TP_FASTMASK')
# Compile-time settings _defines derives from the call (DTU2: read by ssm_fwd alone; SP1: by every kernel) and
# _CONFIG_OVERRIDE may change.
_LANE_DEFINES = ('DTU2', 'SP1')


def tp_config(cfg, batch, dim, dstate, sm_count, in_bytes=4):
    """Launch configuration of the time-parallel kernels (ssm_fwd_tp, ssm_bwd_tp) for this call, or None when the
    lane kernels run.

    Used for N <= 8 (NS = N rounded up to a power of two) and batch x channels of at least ``_TP_MIN_WARPS`` warps
    per multiprocessor.  A lane takes T = 8 steps of every state, one state at a time; every CK / T-th lane's start
    state is a checkpoint (CK = cfg['T'], the checkpoint interval: T or 2 T; the backward derives the other lanes'
    start states from them).  The checkpoints are the same as the lane kernels', so either backward can follow
    either forward.  ``in_bytes``: the size of an input element.  ``_CONFIG_OVERRIDE``: ``TP`` 1 forces it (where N
    allows), 0 turns it off; ``TP_DB`` channels (warps) per block (4), ``TP_T``, ``TP_MINB`` (blocks per SM to fit
    registers for), ``TP_PF`` (the forward loads the next window's B/C, bit 1, and delta/u, bit 2, while it computes
    this one: both by default for 2-byte inputs, neither in fp32, where the registers they take spill;
    cuda_scan_run50, run53), ``TP_GPF`` (the forward prefetches the next window into L2, 1, or L1, 2: 1 by default in
    fp32), ``TP_BU`` (unroll the backward's state loop this many times), ``TP_ABSORB`` (the scan over the lanes
    without predication: 1 by default for 2-byte inputs), ``TP_FASTMASK`` (the forward's steps tested against the
    end with one compare each: 1 by default for 2-byte inputs).
    """
    force = _CONFIG_OVERRIDE.get('TP')
    npad = _next_pow2(dstate)
    t = int(_CONFIG_OVERRIDE.get('TP_T', 8))
    if force == 0 or npad > 8 or cfg['T'] not in (t, 2 * t):     # the backward starts lanes from checkpoints
        return None
    if force is None and batch * dim < _TP_MIN_WARPS * sm_count:
        return None
    db = int(_CONFIG_OVERRIDE.get('TP_DB', 4))
    groups = cfg['grid'][0] // cfg['n_dblk']
    n_dblk = -(-(dim // groups) // db)
    # fp32 (no register prefetch: it spills there) prefetches the next window into L2 instead: MambaIRv2-light's
    # batch-16 forward 0.066 vs 0.072 ms; with 2-byte inputs it is slower (0.053 vs 0.052; cuda_scan_run75).
    # TP_ABSORB (the scan over the lanes without predication, carry folded into the first lane): 2-byte inputs only,
    # 0.049 vs 0.051-0.052 ms; in fp32, where it spills 8 bytes more, 0.067 vs 0.066 (cuda_scan_run88).
    # TP_FASTMASK (the forward tests its steps against the end with one compare each): 2-byte inputs only, 0.048 vs
    # 0.050 ms; in fp32 0.068 vs 0.067 (it spills 8 bytes more; cuda_scan_run92).
    cfg = dict(NS=npad, TPC=1, DB=db, T=t, CK=cfg['T'], RG=1, PG=1, n_dblk=n_dblk, grid=(groups * n_dblk, batch, 1),
               TP_PF=3 if in_bytes < 4 else 0, TP_GPF=0 if in_bytes < 4 else 1, TP_ABSORB=int(in_bytes < 4),
               TP_FASTMASK=int(in_bytes < 4))
    for key in _TP_DEFINES:
        if key in _CONFIG_OVERRIDE:
            cfg[key] = int(_CONFIG_OVERRIDE[key])
    return cfg


def _rows_vectorizable(*tensors):
    """True when every row (all but the last index) of these tensors is contiguous and starts a whole number of
    16-byte vectors after the tensor's first element (the plan's part; ``_aligned`` checks the addresses)."""
    for t in tensors:
        if t is None:
            continue
        per = 16 // t.element_size()
        if t.stride(-1) != 1 or any(n > 1 and st % per for n, st in zip(t.shape[:-1], t.stride()[:-1])):
            return False
    return True


def _aligned(*tensors):
    return all(t is None or t.data_ptr() % 16 == 0 for t in tensors)


def _vec_flags(aligned, rows, bc):
    """The time-parallel kernels' ``vec`` argument: bit 1 when the channel rows (``rows``) move as aligned 16-byte
    vectors, bit 2 when B/C (``bc``) do; ``aligned``: the (rows, B/C) address checks of the call, part of its plan's
    key.  The outputs the kernels write are allocated here, contiguous and aligned."""
    return int(aligned[0] and _rows_vectorizable(*rows)) | 2 * int(aligned[1] and _rows_vectorizable(*bc))


# ---------------------------------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------------------------------

def _empty(shape, dtype, device):
    if _POISON_OUTPUTS:
        return torch.full(shape, float('nan'), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def _defines(cfg, u, B4, D, z, delta_bias, delta_softplus, reverse=False, **extra):
    if u.dtype not in _KINDS or B4.dtype not in _KINDS:
        raise TypeError(f'selective_scan_cuda supports float32, bfloat16 and float16; got u {u.dtype}, '
                        f'B/C {B4.dtype}')
    defines = dict(NS=cfg['NS'], TPC=cfg['TPC'], DB=cfg['DB'], T=cfg['T'], CK=cfg.get('CK', cfg['T']),
                   RG=cfg['RG'], PG=cfg['PG'],
                   BWD_MINB=int(_CONFIG_OVERRIDE.get('BWD_MINB', 1)), HAS_D=D is not None,
                   HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                   IN_KIND=_KINDS[u.dtype], BC_KIND=_KINDS[B4.dtype], REVERSE=bool(reverse), STORE_OUT=1)
    defines.update((k, cfg[k]) for k in _TP_DEFINES if k in cfg)
    # DTU2 (the lane forward reads two steps' (delta, delta u) at once) where a lane has at most 2 states, in the
    # forward without checkpoints: MMA-B's batch-16 forward 0.244 vs 0.250 ms (fp32) and 0.211 vs 0.215 (bf16),
    # L65536 0.382 vs 0.389 / 0.345 vs 0.347; at NS = 4 (MPSI in bf16) 0.252 vs 0.239 (cuda_scan_run93).  With
    # checkpoints (autograd) MMA-B's training step was slower: 109.3-109.5 vs 108.9-109.0 ms (networks_run100).
    # SP1 (softplus with one special-function instruction, a polynomial for log1p) for 2-byte inputs: L65536 bf16
    # forward 0.335 vs 0.343-0.345 ms, where the segment summaries are bound by that pipe; in fp32 MambaIRv2-light's
    # forward 0.068-0.069 vs 0.067 and MPSI's 0.276 vs 0.271 (cuda_scan_run94).  The backward takes the same softplus
    # as the forward (same dtype).
    defines.update(DTU2=int(cfg['NS'] <= 2 and not extra.get('STORE_CKPT')), SP1=int(u.element_size() < 4))
    for key in _LANE_DEFINES:
        if key in _CONFIG_OVERRIDE:
            defines[key] = int(_CONFIG_OVERRIDE[key])
    defines.update(extra)
    return defines


def _strides(*tensors_dims):
    return [ctypes.c_longlong(t.stride(i) if t is not None else 0) for t, dims in tensors_dims for i in dims]


def _shape_config(u, A, B4, grad, chunk=None):
    """(batch, dim, seqlen, dstate, groups, sm_count, launch configuration) of one call."""
    batch, dim, seqlen = u.shape
    dstate, groups = A.shape[1], B4.shape[1]
    sm = _sm_count(u.device)
    return batch, dim, seqlen, dstate, groups, sm, launch_config(batch, dim, groups, dstate, seqlen, sm, grad=grad,
                                                                 chunk=chunk, in_bytes=u.element_size())


def forward_config(cfg):
    """The forward kernel's configuration: chunks of TF steps, checkpoints every T (CK); ``FNTHREADS`` in
    ``_CONFIG_OVERRIDE``: another block size for the forward alone."""
    fc = dict(cfg, T=cfg['TF'], CK=cfg['T'])
    if 'FNTHREADS' in _CONFIG_OVERRIDE:
        db = max(1, int(_CONFIG_OVERRIDE['FNTHREADS']) // cfg['TPC'])
        n_dblk = -(-cfg['dpg'] // db)
        fc.update(DB=db, n_dblk=n_dblk, grid=(cfg['grid'][0] // cfg['n_dblk'] * n_dblk,) + cfg['grid'][1:])
    return fc


def _segment_plan(cfg, n_seg, seqlen):
    """(seg_len, grid, segment count) of a two-pass launch over ``n_seg`` segments of whole chunks of ``cfg['T']``
    steps (no empty trailing segment).  Its summaries take two float32 (batch, segments, dim, N) buffers."""
    n_chunks = -(-seqlen // cfg['T'])
    seg_len = -(-n_chunks // n_seg) * cfg['T']
    n_seg = -(-seqlen // seg_len)
    return seg_len, cfg['grid'][:2] + (n_seg,), n_seg


class _Launch:
    """One kernel launch prepared for a call signature.  Its arguments are ctypes objects and the pointer array the
    driver reads is built once; the tensor arguments are shared ``c_void_p`` slots that each call fills with the
    tensors' addresses (``_Plan.run``).  Building the argument lists was most of the host time of a call."""

    def __init__(self, kernel, grid, args):
        self.kernel, self.grid, self.args = kernel, tuple(int(g) for g in grid), args
        self.argv = (ctypes.c_void_p * len(args))(*map(ctypes.addressof, args))

    def __call__(self, cuda, stream):
        k = self.kernel
        _check_cu(cuda.cuLaunchKernel(k.func, self.grid[0], self.grid[1], self.grid[2], k.nthreads, 1, 1, 0, stream,
                                      self.argv, None), 'cuLaunchKernel (selective scan)')


class _Plan:
    """The launches of one call signature (shapes, strides, dtypes, flags, configuration overrides), with the
    buffers it allocates per call: ``slots`` maps tensor-argument names to the ``c_void_p`` slots of the launches."""

    def __init__(self):
        self.slots, self.launches, self.meta = {}, [], {}

    def slot(self, name):
        return self.slots.setdefault(name, ctypes.c_void_p())

    def fill(self, tensors):
        """Write the addresses of ``tensors`` (name -> tensor or None) into the slots."""
        for name, slot in self.slots.items():
            t = tensors.get(name)
            slot.value = t.data_ptr() if t is not None else None

    def run(self, tensors, device):
        """Fill the slots from ``tensors`` and launch."""
        self.fill(tensors)
        cuda = _ensure_context(device)
        stream = ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream)
        for launch in self.launches:
            launch(cuda, stream)


_PLANS = threading.local()       # per thread: a plan's slots are written just before its launches
_MAX_PLANS = 512                 # per thread; past it the cache starts over (many input sizes, e.g. at inference)


def _cached_plan(key, build, *args):
    """This thread's plan for ``key``, built by ``build(*args)`` the first time."""
    cache = getattr(_PLANS, 'cache', None)
    if cache is None:
        cache = _PLANS.cache = {}
    plan = cache.get(key)
    if plan is None:
        if len(cache) >= _MAX_PLANS:
            cache.clear()
        plan = cache[key] = build(*args)
    return plan


def _signature(tag, u, delta, A, B4, C4, D, z, delta_bias, *flags):
    """Everything a plan depends on besides the tensors' addresses."""
    return (tag, u.shape, u.dtype, u.stride(), delta.stride(), A.shape, A.stride(), B4.shape, B4.dtype, B4.stride(),
            C4.stride(), D is None, None if z is None else z.stride(), delta_bias is None, u.device.index,
            tuple(sorted(_CONFIG_OVERRIDE.items())) if _CONFIG_OVERRIDE else ()) + flags


def _fwd(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, store_ckpt, reverse=False, store_out=True,
         chunk=None):
    """(out, last_state, ckpt).  ``reverse``: scan from the sequence's end (the result of flipping every input
    along L, scanning and flipping the output back, without the copies).  ``store_out=False``: checkpoints only
    (out is None), to rebuild them for a backward.  ``chunk``: checkpoint interval other than the default (the
    backward must be given the same)."""
    C4, A, D, delta_bias = _as(C4, B4.dtype), _as(A, torch.float32), _as(D, torch.float32), _as(delta_bias,
                                                                                                torch.float32)
    delta, z = _as(delta, u.dtype), _as(z, u.dtype)
    # Whether the input rows and B/C start on 16-byte boundaries: vector loads where they do (part of the plan)
    aligned = (_aligned(u, delta, z if store_out else None), _aligned(B4, C4))
    plan = _cached_plan(_signature('fwd', u, delta, A, B4, C4, D, z, delta_bias, bool(delta_softplus),
                                   bool(store_ckpt), bool(reverse), bool(store_out), chunk) + aligned,
                        _fwd_plan, u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, store_ckpt, reverse,
                        store_out, chunk, aligned)
    batch, dim, seqlen = u.shape
    dev = u.device
    m = plan.meta
    # Separate allocations: the outputs of a custom op (torch.compile's path) may not alias one another.
    out = _empty((batch, dim, seqlen), u.dtype, dev) if store_out else None
    last = _empty((batch, dim, m['dstate']), torch.float32, dev)
    ckpt = (_empty((batch, dim, m['n_chunks'], m['dstate']), torch.float32, dev) if store_ckpt
            else torch.empty(1, dtype=torch.float32, device=dev))
    tensors = dict(u=u, delta=delta, A=A, B=B4, C=C4, D=D, z=z, bias=delta_bias, out=out, last=last, ckpt=ckpt)
    if m['n_seg_floats']:
        seg = torch.empty((m['n_seg_floats'],), dtype=torch.float32, device=dev)
        tensors['seg_a'], tensors['seg_b'] = seg.chunk(2)
    plan.run(tensors, dev)
    return out, last, ckpt


def _fwd_plan(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, store_ckpt, reverse, store_out, chunk, aligned):
    batch, dim, seqlen, dstate, groups, sm, cfg = _shape_config(u, A, B4, bool(store_ckpt), chunk)
    dev = u.device
    n_chunks = -(-seqlen // cfg['T'])                # checkpoints: one per chunk of the backward
    tp = tp_config(cfg, batch, dim, dstate, sm, u.element_size())    # lanes of T steps; start states: checkpoints
    cfg = forward_config(cfg)
    plan = _Plan()
    plan.meta = dict(dstate=dstate, n_chunks=n_chunks, n_seg_floats=0)
    sl = plan.slot
    out_strides = (dim * seqlen, seqlen)             # out is allocated contiguous
    strides = _strides((u, (0, 1)), (delta, (0, 1)), (A, (0, 1)), (B4, (0, 1, 2)), (C4, (0, 1, 2)), (z, (0, 1)))
    strides += [ctypes.c_longlong(v) for v in out_strides]
    head = [sl('u'), sl('delta'), sl('A'), sl('B'), sl('C'), sl('D'), sl('z'), sl('bias')]
    if tp is not None:
        out_rows = torch.empty_strided((batch, dim, seqlen), out_strides + (1,), dtype=u.dtype, device='meta')
        vec = _vec_flags(aligned, (u, delta, z if store_out else None, out_rows), (B4, C4))
        # TP_BCA: B/C copied by cp.async into shared memory, not through registers (aligned, contiguous rows of
        # whole vectors only).  For 2-byte B/C: MambaIRv2-light's bf16 forward 0.044 vs 0.048 ms; in fp32 0.067 vs
        # 0.066-0.067.  The lanes' delta/u rows copied the same way were slower (bf16 0.045, fp32 0.074; run 97).
        bca = int(bool(vec & 2) and seqlen % (16 // B4.element_size()) == 0
                  and int(_CONFIG_OVERRIDE.get('TP_BCA', int(B4.element_size() < 4))) == 1)
        kern = _kernel('ssm_fwd_tp', _defines(tp, u, B4, D, z, delta_bias, delta_softplus, reverse, TP_BCA=bca,
                                              STORE_CKPT=bool(store_ckpt), STORE_OUT=int(store_out)), dev)
        plan.launches.append(_Launch(kern, tp['grid'], head + [sl('out'), sl('last'), sl('ckpt')]
                                     + [ctypes.c_int(v) for v in (dim, seqlen, dstate, dim // groups, tp['n_dblk'],
                                                                  n_chunks, vec)] + strides))
        return plan
    # Chunks copied by cp.async: every row contiguous and 16-byte aligned, L whole vectors (cuda_scan_run60).
    z_rows, c_rows = (z, C4) if store_out else (None, None)
    use_async = (all(aligned) and int(_CONFIG_OVERRIDE.get('ASYNC', 1)) == 1
                 and _rows_vectorizable(u, delta, z_rows, B4, c_rows)
                 and seqlen % (16 // u.element_size()) == 0 and seqlen % (16 // B4.element_size()) == 0)
    # DEFER: a chunk's sums over states are reduced while the next one is computed (cuda_scan_run62).
    defer = int(_CONFIG_OVERRIDE.get('DEFER', 1)) if store_out else 0
    # BCD: with cp.async copies, each lane reads its B and C straight from the copied rows (16-byte loads of a
    # group's steps), no staging: 2-byte B/C move half the shared-memory bytes of staged floats.
    bcd = int(use_async and int(_CONFIG_OVERRIDE.get('BCD', 1)) == 1
              and cfg['PG'] % (16 // B4.element_size()) == 0)
    kern = _kernel('ssm_fwd', _defines(cfg, u, B4, D, z, delta_bias, delta_softplus, reverse, ASYNC=use_async,
                                       DEFER=defer, BCD=bcd, STORE_CKPT=bool(store_ckpt), STORE_OUT=int(store_out)),
                   dev)
    n_seg = _segments(cfg, batch, groups, seqlen, sm, grad=bool(store_ckpt))
    tail = [ctypes.c_int(v) for v in (dim, seqlen, dstate, dim // groups, cfg['n_dblk'], n_chunks)]
    if n_seg == 1:
        plan.launches.append(_Launch(kern, cfg['grid'], head + [sl('out'), sl('last'), sl('ckpt'), sl('seg_a'),
                                                                sl('seg_b')] + tail + [ctypes.c_int(seqlen)]
                                     + strides + [ctypes.c_int(0)]))
        return plan
    seg_len, grid, n_seg = _segment_plan(cfg, n_seg, seqlen)
    plan.meta['n_seg_floats'] = 2 * batch * n_seg * dim * dstate       # seg_last, seg_decay
    args = head + [sl('out'), sl('last'), sl('ckpt'), sl('seg_a'), sl('seg_b')] + tail + [ctypes.c_int(seg_len)] \
        + strides
    # Pass 1: segment summaries (no outputs, no checkpoints; STORE_OUT 0 is what sums delta for the segment's
    # decay); pass 2: outputs from the true start states.
    summary = _kernel('ssm_fwd', _defines(cfg, u, B4, D, z, delta_bias, delta_softplus, reverse, ASYNC=use_async,
                                          BCD=bcd, STORE_CKPT=0, STORE_OUT=0), dev)
    plan.launches += [_Launch(summary, grid, args + [ctypes.c_int(1)]), _Launch(kern, grid, args + [ctypes.c_int(2)])]
    return plan


def _bwd(dout, u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, ckpt, reverse=False, chunk=None):
    C4 = _as(C4, B4.dtype)
    if dout.stride(-1) != 1:
        dout = dout.contiguous()
    dout, delta_in, z_in = _as(dout, u.dtype), _as(delta, u.dtype), _as(z, u.dtype)
    A32, D32, bias32 = _as(A, torch.float32), _as(D, torch.float32), _as(delta_bias, torch.float32)
    aligned = (_aligned(u, delta_in, z_in, dout), _aligned(B4, C4))      # as in _fwd
    plan = _cached_plan(_signature('bwd', u, delta_in, A32, B4, C4, D32, z_in, bias32, bool(delta_softplus),
                                   bool(reverse), chunk, dout.stride(), ckpt.shape) + aligned,
                        _bwd_plan, dout, u, delta_in, A32, B4, C4, D32, z_in, bias32, delta_softplus, ckpt,
                        reverse, chunk, aligned)
    dev = u.device
    m = plan.meta
    # Separate allocations (the outputs of a custom op may not alias one another); the kernels write du, ddelta and
    # dz in u's dtype (converted back by _bwd_cast).
    du, ddelta, dB, dC, dA, dD, dz, dbias = grad_buffers(u, delta_in, z_in, D, delta_bias, B4.shape[1], B4.shape[2],
                                                         m['atomic'], _empty)
    tensors = dict(u=u, delta=delta_in, A=A32, B=B4, C=C4, D=D32, z=z_in, bias=bias32, dout=dout, ckpt=ckpt, du=du,
                   ddelta=ddelta, dA=dA, dB=dB, dC=dC, dD=dD, dz=dz, dbias=dbias)
    if m['n_seg_floats']:
        tensors['seg_a'], tensors['seg_b'] = torch.empty((m['n_seg_floats'],), dtype=torch.float32, device=dev).chunk(2)
    plan.run(tensors, dev)
    return _bwd_cast(delta, z, u, (du, ddelta, dA, dB, dC, dD, dz, dbias))


def _bwd_plan(dout, u, delta_in, A32, B4, C4, D32, z_in, bias32, delta_softplus, ckpt, reverse, chunk, aligned):
    batch, dim, seqlen, dstate, groups, sm, cfg = _shape_config(u, A32, B4, True, chunk)
    dev = u.device
    n_chunks = ckpt.shape[2]
    assert n_chunks == -(-seqlen // cfg['T']), 'chunk length changed between forward and backward'
    tp = tp_config(cfg, batch, dim, dstate, sm, u.element_size())
    plan = _Plan()
    # The lane kernel adds into dB/dC (atomics) when several blocks share a group's channels; the time-parallel one
    # always adds (its windows' sums), so they start from zero.
    atomic = tp is not None or cfg['n_dblk'] > 1
    plan.meta = dict(atomic=atomic, n_seg_floats=0)
    sl = plan.slot
    args = [sl('u'), sl('delta'), sl('A'), sl('B'), sl('C'), sl('D'), sl('z'), sl('bias'), sl('dout'), sl('ckpt'),
            sl('du'), sl('ddelta'), sl('dA'), sl('dB'), sl('dC'), sl('dD'), sl('dz'), sl('dbias')]
    strides = _strides((u, (0, 1)), (delta_in, (0, 1)), (A32, (0, 1)), (B4, (0, 1, 2)), (C4, (0, 1, 2)),
                       (z_in, (0, 1)), (dout, (0, 1)))
    defines = dict(reverse=reverse, STORE_CKPT=0)
    if tp is not None:
        kern = _kernel('ssm_bwd_tp', _defines(tp, u, B4, D32, z_in, bias32, delta_softplus, **defines), dev)
        grad_rows = torch.empty((batch, dim, seqlen), dtype=u.dtype, device='meta')      # du, ddelta, dz
        vec = _vec_flags(aligned, (u, delta_in, z_in, dout, grad_rows), (B4, C4))
        plan.launches.append(_Launch(kern, tp['grid'], args + [ctypes.c_int(v) for v in (
            dim, seqlen, dstate, dim // groups, tp['n_dblk'], n_chunks, groups, vec)] + strides))
        return plan
    kern = _kernel('ssm_bwd', _defines(cfg, u, B4, D32, z_in, bias32, delta_softplus, **defines), dev)
    args += [ctypes.c_int(v) for v in (dim, seqlen, dstate, dim // groups, cfg['n_dblk'], n_chunks, groups,
                                       int(atomic))]
    args += strides
    n_seg = _segments(cfg, batch, groups, seqlen, sm, grad=True)
    if n_seg == 1:
        plan.launches.append(_Launch(kern, cfg['grid'], args + [sl('seg_a'), sl('seg_b'),
                                                                ctypes.c_int(n_chunks * cfg['T']), ctypes.c_int(0)]))
        return plan
    # Pass 1: per segment, the dh it hands to the segment before it (from a zero incoming dh) and its decay, by a
    # build of its own (SUMMARY: no states, no u/B loads; L65536 f+b 2.00 -> 1.69 ms in bf16, cuda_scan_run81);
    # pass 2: every segment from its true incoming dh, writing the gradients.
    seg_len, grid, n_seg = _segment_plan(cfg, n_seg, seqlen)
    plan.meta['n_seg_floats'] = 2 * batch * n_seg * dim * dstate       # seg_carry, seg_decay
    extra = [sl('seg_a'), sl('seg_b'), ctypes.c_int(seg_len)]
    summary = _kernel('ssm_bwd', _defines(cfg, u, B4, D32, z_in, bias32, delta_softplus, SUMMARY=1, **defines), dev)
    plan.launches += [_Launch(summary, grid, args + extra + [ctypes.c_int(1)]),
                      _Launch(kern, grid, args + extra + [ctypes.c_int(2)])]
    return plan


def _bwd_cast(delta, z, u, grads):
    """The kernels write ddelta and dz in u's dtype: back to delta's / z's where those differ."""
    du, ddelta, dA, dB, dC, dD, dz, dbias = grads
    if delta.dtype != u.dtype:
        ddelta = ddelta.to(delta.dtype)
    if z is not None and z.dtype != u.dtype:
        dz = dz.to(z.dtype)
    return du, ddelta, dA, dB, dC, dD, dz, dbias


def ckpt_shape(batch, dim, groups, dstate, seqlen, chunk=None):
    """Shape of the state checkpoints the forward stores for the backward (one per chunk of T steps)."""
    t = launch_config(batch, dim, groups, dstate, seqlen, grad=True, chunk=chunk)['T']
    return (batch, dim, -(-seqlen // t), dstate)


def _check_ready(u):
    if u.device.type != 'cuda':
        raise RuntimeError(f'selective_scan_cuda runs on CUDA tensors only; got a tensor on {u.device}. '
                           'Use the PyTorch backend for CPU tensors.')
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(f'selective_scan_cuda is not available here: {reason}')


# Eager calls go through an autograd.Function, torch.compile through the registered custom ops
# mamba_sr_archs::cuda_scan_fwd / _bwd; both launch the same kernels.
_SCAN = KernelScan('cuda_scan', sys.modules[__name__], _check_ready, MAX_DSTATE, 'selective_scan_cuda')


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False):
    """CUDA (NVRTC) selective scan with mamba_ssm ``selective_scan_fn`` semantics.

    Returns ``out`` (b, d, L) in the dtype of ``u``, or ``(out, last_state)`` with last_state (b, d, N) float32
    when ``return_last_state``.  Differentiable in u, delta, A, B, C, D, z and delta_bias; N <= 64.
    """
    return _SCAN(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

"""Selective scan (S6, Gu & Dao 2023, Alg. 2) with mamba_ssm ``selective_scan_fn`` semantics.

For every batch b, channel d and state index n the scan runs the linear recurrence

    h_t = exp(delta_t * A[d, n]) * h_{t-1} + delta_t * B_t[n] * u_t,     y_t = sum_n C_t[n] * h_t[n]

followed by ``out = (y + D * u) * silu(z)``; ``delta`` is first shifted by ``delta_bias`` and passed through
softplus when ``delta_softplus`` is set.  B and C are (batch, N, L) or grouped (batch, G, N, L), where channel d
uses group ``d // (D_inner / G)``.

Backends (picked per call, see :func:`selective_scan`):

* ``'cuda'``      -- ``.cuda_scan.selective_scan_cuda``: CUDA C++ kernels compiled at run time with NVRTC (CUDA tensors,
  compute capability >= 8.0; no build step);
* ``'triton'``    -- ``.triton_scan.selective_scan_triton`` (CUDA tensors, when triton and that module import);
* ``'mamba_ssm'`` -- ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` (CUDA tensors, when installed);
* ``'torch'``     -- the chunked pure-PyTorch scan below (any device; the CPU path);
* ``'ref'``       -- the sequential reference, one Python step per time step (slow; for tests).

The chunked scan (``'torch'``) splits the sequence into chunks of T ~ sqrt(L)/2 steps and never loops over all L
steps in Python:

1. inside every chunk the recurrence is solved from a zero state, all chunks at once (T vectorised steps);
2. the state entering each chunk is carried across the L/T chunk ends (one small step per chunk);
3. that state is added to every position of its chunk, times the decay from the chunk start,
   exp(A * cumsum(delta)) -- the segsum form: an exp of a non-positive number, never a quotient of decays, so
   nothing overflows for any delta >= 0 and A <= 0 (decays below exp(-60), exp(-600) in float64, are set to 0:
   far below rounding, and it keeps slow subnormal floats out of the CPU arithmetic).

Gradients come from a custom autograd Function: the forward keeps the states h, the backward runs the adjoint
recurrence dh_t = C_t dy_t + exp(delta_{t+1} A) dh_{t+1} with the same chunked scan reversed in time.  Peak memory
is three (batch, D, N, L) tensors, a third of what autograd through the sequential reference holds.
"""
import importlib
import math
import os
import warnings

import torch
import torch.nn.functional as F

__all__ = ['selective_scan', 'selective_scan_ref', 'selective_scan_torch', 'available_backends', 'last_backend',
           'BACKENDS', 'ENV_VAR']

ENV_VAR = 'MAMBA_SR_SCAN_BACKEND'
# Also the automatic priority order on CUDA: our NVRTC kernels first (faster than mamba_ssm's compiled kernel at the
# networks' shapes on an H100, N = 8 included: GPU time of forward+backward 1.7x, docs/benchmarks.md), then
# mamba_ssm, then Triton.
BACKENDS = ('cuda', 'mamba_ssm', 'triton', 'torch', 'ref')
_GPU_BACKENDS = ('cuda', 'mamba_ssm', 'triton')
_LAST = {'backend': None}


def last_backend():
    """Name of the backend that ran the most recent :func:`selective_scan` call (None before the first call)."""
    return _LAST['backend']


# ----------------------------------------------------------------------------------------------------------------
# Shared argument handling
# ----------------------------------------------------------------------------------------------------------------

def _compute_dtype(*tensors):
    """float64 if any input is float64, else float32 (the official code computes in float32)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _check_shapes(u, delta, A, B, C, D, z, delta_bias):
    if u.dim() != 3:
        raise ValueError(f'u must be (batch, dim, seqlen), got shape {tuple(u.shape)}')
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f'delta must have the shape of u {tuple(u.shape)}, got {tuple(delta.shape)}')
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f'A must be (dim, dstate) = ({dim}, N), got {tuple(A.shape)}')
    if A.is_complex():
        raise NotImplementedError('complex A is not supported')
    dstate = A.shape[1]
    for name, t in (('B', B), ('C', C)):
        if t.dim() == 2:
            ok = t.shape == (dim, dstate)
        elif t.dim() == 3:
            ok = t.shape == (batch, dstate, length)
        elif t.dim() == 4:
            ok = t.shape[0] == batch and t.shape[2:] == (dstate, length) and dim % t.shape[1] == 0
        else:
            ok = False
        if not ok:
            raise ValueError(f'{name} must be (batch, dstate, seqlen), (batch, groups, dstate, seqlen) with groups '
                             f'dividing dim, or (dim, dstate); got {tuple(t.shape)} for u {tuple(u.shape)}, '
                             f'A {tuple(A.shape)}')
    for name, t, shape in (('D', D, (dim,)), ('delta_bias', delta_bias, (dim,)), ('z', z, tuple(u.shape))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f'{name} must have shape {shape}, got {tuple(t.shape)}')


def _as_groups(X, batch, length):
    """B or C as (batch, groups, dstate, seqlen); a time-invariant (dim, dstate) matrix becomes dim groups."""
    if X.dim() == 2:
        return X[None, :, :, None].expand(batch, -1, -1, length)
    if X.dim() == 3:
        return X.unsqueeze(1)
    return X


def _prepare_delta(delta, delta_bias, delta_softplus, dtype):
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def _epilogue(y, u, D, z, dtype_out):
    """out = (y + D * u) * silu(z), cast to u's dtype."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype_out)


# ----------------------------------------------------------------------------------------------------------------
# Sequential reference
# ----------------------------------------------------------------------------------------------------------------

def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Sequential reference: one Python step per time step, exactly mamba_ssm's ``selective_scan_ref``.

    Computes in float32 (float64 when an input is float64).  u, delta (b, d, l); A (d, n);
    B, C (b, n, l), (b, g, n, l) or (d, n).  Returns out (b, d, l) in u's dtype [, last state (b, d, n)].
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype = _compute_dtype(u, delta, A, B, C)
    batch, dim, length = u.shape
    u_c = u.to(dtype)
    delta = _prepare_delta(delta, delta_bias, delta_softplus, dtype)
    A = A.to(dtype)
    B = _as_groups(B.to(dtype), batch, length)
    C = _as_groups(C.to(dtype), batch, length)
    B = B.repeat_interleave(dim // B.shape[1], dim=1)  # (b, d, n, l)
    C = C.repeat_interleave(dim // C.shape[1], dim=1)
    deltaA = torch.exp(delta[..., None] * A[None, :, None, :])  # (b, d, l, n)
    deltaBu = (delta * u_c)[..., None] * B.transpose(-1, -2)  # (b, d, l, n)
    x = u_c.new_zeros(batch, dim, A.shape[1])
    ys = []
    # unbind (not indexing) so that autograd's backward costs O(L), not O(L^2), through the per-step slices
    for dA_i, dBu_i, C_i in zip(deltaA.unbind(2), deltaBu.unbind(2), C.unbind(-1)):
        x = dA_i * x + dBu_i
        ys.append((x * C_i).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u_c.new_zeros(batch, dim, 0)
    out = _epilogue(y, u_c, D, z, u.dtype)
    return (out, x) if return_last_state else out


# ----------------------------------------------------------------------------------------------------------------
# Chunked pure-PyTorch scan
# ----------------------------------------------------------------------------------------------------------------
#
# Layout.  A sequence of Lp = nchunks * T steps (padded with delta = u = B = C = 0, which leaves the state
# unchanged) is stored "time-major within chunks": position p = c * T + t lives at [t, ..., c].  Large tensors are
# (T, batch, dim, N, nchunks): one step of the in-chunk recurrence is one op over the contiguous slice [t], and
# every broadcast or reduction over N or over channels runs on contiguous rows of nchunks elements.

def _default_chunk(length):
    """Chunk size T ~ sqrt(L) / 2 (power of two in [8, 128]; measured best on CPU for L = 1k..16k)."""
    if length <= 8:
        return max(length, 1)
    return int(min(128, max(8, 2 ** round(math.log2(math.sqrt(length) / 2)))))


def _chunk_scan_(a, x, cum_delta, A, reverse=False):
    """Solve a first-order linear recurrence in place over the chunked time axis of (T, b, d, n, nchunks) tensors.

    forward:  h[p] = a[p] * h[p-1] + x[p]   (a[p] = exp(delta[p] A): decay from p-1 to p; zero state at the start)
    reverse:  h[p] = a[p] * h[p+1] + x[p]   (a[p]: decay from p+1 to p; zero state after the end)

    ``cum_delta`` (T, b, d, nchunks) is the within-chunk cumulative sum of the deltas of ``a`` (inclusive, from the
    chunk start for forward, from the chunk end for reverse), so the decay from a chunk boundary to position p is
    exp(A * cum_delta[p]): an exp of a non-positive number, never a quotient of decays.  ``x`` is overwritten with
    h and ``a`` is used as scratch.  Returns the final state: h at the last (forward) or first (reverse) position.
    """
    chunk, nchunks = x.shape[0], x.shape[-1]
    step = 1 if reverse else -1
    # 1) the recurrence inside all chunks at once, from a zero state
    for t in (range(chunk - 2, -1, -1) if reverse else range(1, chunk)):
        x[t].addcmul_(a[t], x[t + step])
    # 2) the state entering every chunk: one short step per chunk
    decay = _decays(cum_delta, A, out=a)  # decay from the chunk boundary to every position
    end = 0 if reverse else chunk - 1
    chunk_decay, local = decay[end], x[end]
    carries = [torch.zeros_like(local[..., 0])]
    for c in (range(nchunks - 1, 0, -1) if reverse else range(nchunks - 1)):
        carries.append(torch.addcmul(local[..., c], chunk_decay[..., c], carries[-1]))
    carry = torch.stack(carries[::-1] if reverse else carries, dim=-1)
    # 3) add it to every position of its chunk
    x.addcmul_(decay, carry)
    return x[end, ..., 0 if reverse else -1].clone()


class _Chunks:
    """Conversions between (..., L) sequences and the zero-padded chunked layout (T, ..., nchunks)."""

    def __init__(self, length, chunk):
        self.length, self.chunk = length, chunk
        self.nchunks = -(-length // chunk)
        self.pad = self.nchunks * chunk - length

    def split(self, v):
        """(..., L) -> (T, ..., nchunks), contiguous."""
        if self.pad:
            v = F.pad(v, (0, self.pad))
        return v.unflatten(-1, (self.nchunks, self.chunk)).movedim(-1, 0).contiguous()

    def merge(self, v):
        """(T, ..., nchunks) -> (..., L)."""
        return v.movedim(0, -1).flatten(-2)[..., :self.length]

    def position(self, p):
        """(t, c) index of sequence position p."""
        return p % self.chunk, p // self.chunk


def _decays(delta, A, out):
    """out (T, b, d, n, c) <- exp(delta * A), delta (T, b, d, c), A (d, n).

    Decays below exp(-60) (float32) / exp(-600) (float64) are set to exactly 0.  What they would add is far below
    the rounding of the result, and it keeps subnormal numbers, which are ~100x slower on CPUs, out of the scan.
    """
    torch.mul(delta.unsqueeze(-2), A.unsqueeze(-1), out=out)
    limit = 600.0 if out.dtype == torch.float64 else 60.0
    # Eagerly a cheap test on small tensors skips the full pass when no decay is that small; torch.compile always
    # thresholds (the test would be a host sync and break the graph; the pass fuses into the exp there).
    if torch.compiler.is_compiling() or float(delta.abs().amax()) * float(A.abs().amax()) > limit:
        F.threshold(out, -limit, -math.inf, inplace=True)
    return out.exp_()


def _grouped(full, g):
    """(T, b, d, ...) -> (T, b, g, d // g, ...) view."""
    return full.unflatten(2, (g, full.shape[2] // g))


def _outer(v, X, out):
    """out (T, b, d, n, c) <- v (T, b, d, c) * X (T, b, g, n, c); channel d uses group d // (dim / g)."""
    g = X.shape[2]
    torch.mul(_grouped(v, g).unsqueeze(-2), X.unsqueeze(3), out=_grouped(out, g))
    return out


def _sum_n_with(full, X, buf):
    """sum_n full * X -> (T, b, d, c), X (T, b, g, n, c) broadcast over each group's channels; buf is scratch."""
    g = X.shape[2]
    torch.mul(_grouped(full, g), X.unsqueeze(3), out=_grouped(buf, g))
    return buf.sum(-2)


def _group_sum_with(full, v, g, buf):
    """sum over each group's channels of full * v -> (T, b, g, n, c), v (T, b, d, c); buf is scratch."""
    torch.mul(full, v.unsqueeze(-2), out=buf)
    return _grouped(buf, g).sum(3)


def _chunked_forward(u, delta, A, B, C, chunk, keep_states):
    """(y, last_state, h): the chunked scan of u, delta (b, d, l), A (d, n), B, C (b, g, n, l) in the compute dtype.

    h, the states (one tensor of b*d*n*l elements, the sequential reference under autograd keeps several), is kept
    for the backward when ``keep_states``, else None.
    """
    b, d, length = u.shape
    ch = _Chunks(length, chunk)
    buf = u.new_empty(ch.chunk, b, d, A.shape[1], ch.nchunks)
    delta_c = ch.split(delta)
    a = _decays(delta_c, A, buf)
    h = _outer(ch.split(delta * u), ch.split(B), torch.empty_like(buf))
    last = _chunk_scan_(a, h, delta_c.cumsum(0), A)
    y = ch.merge(_sum_n_with(h, ch.split(C), buf))
    return y, last, (h if keep_states else None)


def _chunked_backward(gy, glast, u, delta, A, B, C, h, chunk, need):
    """Gradients (du, ddelta, dA, dB, dC) of :func:`_chunked_forward`; ``need`` says which (others are None).

    The adjoint recurrence dh_p = gy_p C_p + exp(delta_{p+1} A) dh_{p+1} is solved with the same chunked scan,
    reversed in time, using two more tensors the size of h (h itself is only read).
    """
    ch = _Chunks(u.shape[-1], chunk)
    gB, gC = B.shape[1], C.shape[1]
    gy_c = ch.split(gy.to(u.dtype) if gy is not None else torch.zeros_like(u))
    Bc, Cc = ch.split(B), ch.split(C)
    delta_c, u_c = ch.split(delta), ch.split(u)
    delta_u_c = delta_c * u_c
    buf = torch.empty_like(h)

    dC = ch.merge(_group_sum_with(h, gy_c, gC, buf)) if need[4] else None

    # adjoint: dh_p = gy_p C_p + exp(delta_{p+1} A) dh_{p+1}, plus the last state's gradient at p = L-1
    dh = _outer(gy_c, Cc, torch.empty_like(h))
    if glast is not None:
        t, c = ch.position(ch.length - 1)
        dh[t, ..., c] += glast.to(dh.dtype)
    delta_next = ch.split(F.pad(delta[..., 1:], (0, 1)))
    _chunk_scan_(_decays(delta_next, A, buf), dh, delta_next.flip(0).cumsum(0).flip(0), A, reverse=True)

    s = _sum_n_with(dh, Bc, buf)  # sum_n dh B: feeds du and one part of d delta
    du = ch.merge(s * delta_c) if need[0] else None
    dB = ch.merge(_group_sum_with(dh, delta_u_c, gB, buf)) if need[3] else None
    ddelta = dA = None
    if need[1] or need[2]:
        # m = dh_p * exp(delta_p A) h_{p-1} = dh_p * (h_p - delta_p u_p B_p): the gradient of log-decay delta_p A
        m = torch.sub(h, _outer(delta_u_c, Bc, buf), out=buf).mul_(dh)
        scratch = dh
        if need[1]:
            torch.mul(m, A.unsqueeze(-1), out=scratch)
            ddelta = ch.merge(s * u_c + scratch.sum(-2))
        if need[2]:
            torch.mul(m, delta_c.unsqueeze(-2), out=scratch)
            dA = scratch.sum((0, 1, 4))
    return du, ddelta, dA, dB, dC


class _ChunkedScanFn(torch.autograd.Function):
    """(y, last_state) of the chunked scan with its explicit backward (eager path; see :func:`_chunked_forward`)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk):
        ctx.set_materialize_grads(False)
        y, last, h = _chunked_forward(u, delta, A, B, C, chunk, any(ctx.needs_input_grad))
        ctx.chunk = chunk
        ctx.save_for_backward(u, delta, A, B, C, h)
        return y, last

    @staticmethod
    def backward(ctx, gy, glast):
        u, delta, A, B, C, h = ctx.saved_tensors  # h is read only (the graph may be run backward again)
        return _chunked_backward(gy, glast, u, delta, A, B, C, h, ctx.chunk, ctx.needs_input_grad) + (None,)


# Under torch.compile the chunked scan runs as two registered custom ops (fake shapes + autograd): the compiler keeps
# it as one opaque node instead of tracing its in-place, strided buffer arithmetic (which AOT autograd's
# functionalisation does not reproduce: a traced backward failed with a view/stride error).
_custom_op = getattr(getattr(torch, 'library', None), 'custom_op', None)


def like_input(grad, x):
    """``grad`` with the strides ``torch.empty_like(x)`` has (a copy only where they differ).

    Custom ops' gradients come back in their input's layout, in the real and the fake implementation alike: a
    compiled backward feeds them to ops such as softplus_backward together with the input, and for mixed layouts
    the fake and the real kernels of such ops can pick different output strides (seen with torch 2.14 on CPU).
    """
    target = torch.empty_like(x, dtype=grad.dtype)
    return grad if grad.stride() == target.stride() else target.copy_(grad)


if _custom_op is not None:
    from typing import List, Tuple

    @_custom_op('mamba_sr_archs::chunked_scan_fwd', mutates_args=())
    def _chunked_fwd_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                        chunk: int, keep_states: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Fresh contiguous outputs, as the fake implementation promises (the compiled graph relies on the strides).
        y, last, h = _chunked_forward(u, delta, A, B, C, chunk, keep_states)
        return (y.clone(memory_format=torch.contiguous_format), last.contiguous(),
                h if h is not None else u.new_empty((0,)))

    @_chunked_fwd_op.register_fake
    def _chunked_fwd_fake(u, delta, A, B, C, chunk, keep_states):
        b, d, length = u.shape
        ch = _Chunks(length, chunk)
        h_shape = (ch.chunk, b, d, A.shape[1], ch.nchunks) if keep_states else (0,)
        return u.new_empty((b, d, length)), u.new_empty((b, d, A.shape[1])), u.new_empty(h_shape)

    @_custom_op('mamba_sr_archs::chunked_scan_bwd', mutates_args=())
    def _chunked_bwd_op(gy: torch.Tensor, glast: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                        B: torch.Tensor, C: torch.Tensor, h: torch.Tensor, chunk: int) -> List[torch.Tensor]:
        grads = _chunked_backward(gy, glast, u, delta, A, B, C, h, chunk, (True,) * 5)
        return [like_input(g, x) for g, x in zip(grads, (u, delta, A, B, C))]

    @_chunked_bwd_op.register_fake
    def _chunked_bwd_fake(gy, glast, u, delta, A, B, C, h, chunk):
        return [torch.empty_like(x) for x in (u, delta, A, B, C)]

    def _chunked_op_setup(ctx, inputs, output):
        u, delta, A, B, C, chunk, _ = inputs
        ctx.save_for_backward(u, delta, A, B, C, output[2])
        ctx.chunk = chunk

    def _chunked_op_backward(ctx, gy, glast, gh):
        u, delta, A, B, C, h = ctx.saved_tensors
        gy = gy if gy is not None else torch.zeros_like(u)
        glast = glast if glast is not None else u.new_zeros((u.shape[0], u.shape[1], A.shape[1]))
        du, ddelta, dA, dB, dC = _chunked_bwd_op(gy, glast, u, delta, A, B, C, h, ctx.chunk)
        return du, ddelta, dA, dB, dC, None, None

    _chunked_fwd_op.register_autograd(_chunked_op_backward, setup_context=_chunked_op_setup)


def _chunked_scan(u, delta, A, B, C, chunk):
    """(y, last_state): the custom op under torch.compile, the autograd.Function eagerly (the same functions)."""
    if _custom_op is not None and torch.compiler.is_compiling():
        keep = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
        y, last, _ = _chunked_fwd_op(u, delta, A, B, C, chunk, keep)
        return y, last
    return _ChunkedScanFn.apply(u, delta, A, B, C, chunk)


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False, chunk_size=None):
    """Chunked pure-PyTorch selective scan (any device); same arguments and results as :func:`selective_scan`.

    ``chunk_size`` (default ~sqrt(L)) only changes speed, never the result beyond rounding.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype = _compute_dtype(u, delta, A, B, C)
    batch, dim, length = u.shape
    chunk = int(chunk_size) if chunk_size else _default_chunk(length)
    if chunk < 1:
        raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
    u_c = u.to(dtype)
    delta = _prepare_delta(delta, delta_bias, delta_softplus, dtype)
    Bg = _as_groups(B.to(dtype), batch, length)
    Cg = _as_groups(C.to(dtype), batch, length)
    if length == 0:
        y, last = u_c.new_zeros(batch, dim, 0), u_c.new_zeros(batch, dim, A.shape[1])
    else:
        y, last = _chunked_scan(u_c, delta, A.to(dtype), Bg, Cg, chunk)
    out = _epilogue(y, u_c, D, z, u.dtype)
    return (out, last) if return_last_state else out


# ----------------------------------------------------------------------------------------------------------------
# Backend discovery and dispatch
# ----------------------------------------------------------------------------------------------------------------

_IMPORTS = {}
# This package's compiled scans: backend name -> module (each has MAX_DSTATE and a KernelScan ``_SCAN``).
_KERNEL_MODULES = {'cuda': 'cuda_scan', 'triton': 'triton_scan'}


def _kernel_module(name):
    return importlib.import_module(f'{__package__}.{_KERNEL_MODULES[name]}')


def _import_backend(name):
    """(function, None) or (None, reason) for the CUDA backends; imports are tried once and cached."""
    if name not in _IMPORTS:
        try:
            if name == 'triton':
                importlib.import_module('triton')
                module = _kernel_module('triton')
                if hasattr(module, 'is_available') and not module.is_available():
                    raise ImportError('triton_scan.is_available() is False (no CUDA device?)')
                fn = module.selective_scan_triton
            elif name == 'cuda':
                module = _kernel_module('cuda')
                reason = module.unavailable_reason()
                if reason:
                    raise ImportError(reason)
                fn = module.selective_scan_cuda
            else:
                fn = importlib.import_module('mamba_ssm.ops.selective_scan_interface').selective_scan_fn
            _IMPORTS[name] = (fn, None)
        except Exception as exc:  # ImportError, missing CUDA extension, missing attribute, ...
            _IMPORTS[name] = (None, f'{type(exc).__name__}: {exc}')
    return _IMPORTS[name]


def _device_type(device):
    if device is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(device).type


def available_backends(device=None):
    """Backends usable for tensors on ``device`` (default: CUDA if available, else CPU), in automatic priority."""
    usable = []
    for name in BACKENDS:
        if name in _GPU_BACKENDS:
            if _device_type(device) == 'cuda' and _import_backend(name)[0] is not None:
                usable.append(name)
        else:
            usable.append(name)
    return usable


def _unavailable_reason(name, device_type):
    if name in ('torch', 'ref'):
        return None
    if device_type != 'cuda':
        return f'it needs CUDA tensors, got {device_type} tensors'
    fn, reason = _import_backend(name)
    return None if fn is not None else f'it could not be imported ({reason})'


def _requested_backend(backend):
    raw = backend if backend is not None else os.environ.get(ENV_VAR, '')
    name = (raw or 'auto').strip().lower()
    if name not in BACKENDS + ('auto',):
        source = 'backend argument' if backend is not None else f'environment variable {ENV_VAR}'
        raise ValueError(f'unknown selective-scan backend {raw!r} (from the {source}); '
                         f"choose one of: auto, {', '.join(BACKENDS)}")
    return name


def _pick_backend(backend, u, dtype, time_invariant_bc, dstate=16):
    name = _requested_backend(backend)
    device_type = u.device.type
    if name != 'auto':
        reason = _unavailable_reason(name, device_type)
        if reason is not None:
            raise RuntimeError(f"selective-scan backend {name!r} was requested but is unavailable: {reason}. "
                               f"Available here: {', '.join(available_backends(u.device))}")
        return name
    if device_type == 'cuda' and dtype != torch.float64:  # the CUDA kernels have no float64 path
        for candidate in _GPU_BACKENDS:
            if _unavailable_reason(candidate, device_type) is not None:
                continue
            if candidate in _KERNEL_MODULES and (time_invariant_bc or dstate > _kernel_module(candidate).MAX_DSTATE):
                continue        # our kernels take neither (dim, N) B/C nor more states than their MAX_DSTATE
            return candidate
    return 'torch'


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend=None):
    """Selective scan with mamba_ssm ``selective_scan_fn`` semantics; differentiable in every tensor input.

    Args:
        u, delta: (batch, dim, seqlen).
        A: (dim, dstate), real (negative for a stable scan).
        B, C: (batch, dstate, seqlen) or grouped (batch, groups, dstate, seqlen); (dim, dstate) = time-invariant.
        D: (dim,) skip weight; z: (batch, dim, seqlen) gate, out *= silu(z); delta_bias: (dim,).
        delta_softplus: apply softplus to ``delta + delta_bias``.
        return_last_state: also return the final state (batch, dim, dstate) in float32 (float64 for float64 input).
        backend: 'auto' (default), 'cuda', 'triton', 'mamba_ssm', 'torch' or 'ref'.  None reads the environment
            variable ``MAMBA_SR_SCAN_BACKEND`` (same names); the argument wins over the variable.  Auto picks, for
            CUDA tensors, cuda, then mamba_ssm, then triton, then torch (float64 inputs always take torch); for
            CPU tensors torch.  An unavailable explicit choice raises RuntimeError, an unknown name ValueError.

    Returns:
        out (batch, dim, seqlen) in u's dtype, or (out, last_state).
    """
    name = _pick_backend(backend, u, _compute_dtype(u, delta, A, B, C), B.dim() == 2 or C.dim() == 2,
                         A.shape[-1] if A.dim() == 2 else 16)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if name == 'torch':
        result = selective_scan_torch(*args)
    elif name == 'ref':
        result = selective_scan_ref(*args)
    else:
        try:
            result = _import_backend(name)[0](*args)
        except Exception as exc:
            if (name != 'cuda' or _requested_backend(backend) != 'auto'
                    or not isinstance(exc, _kernel_module('cuda').KernelBuildError)):
                raise
            # Automatic choice: the run-time compiled kernels could not be built here; use the next backend.
            warnings.warn(f'{exc}; the selective scan falls back to the next backend', RuntimeWarning)
            _IMPORTS['cuda'] = (None, f'KernelBuildError: {exc}')
            return selective_scan(*args, backend=backend)
    _LAST['backend'] = name
    return result

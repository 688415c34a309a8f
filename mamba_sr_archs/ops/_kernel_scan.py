"""What the compiled GPU scan backends share: input checks, the autograd wrapper and the torch.compile custom ops.

A backend module provides ``_fwd(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, store_ckpt) -> (out,
last_state, ckpt)`` and ``_bwd(dout, u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, ckpt) -> (du, ddelta,
dA, dB4, dC4, dD, dz, d(delta_bias))`` (float32 dA, dB4, dC4, dD, d(delta_bias)) and a ``ckpt_shape`` function;
:class:`KernelScan` turns them into a ``selective_scan_fn``-like callable: eagerly through an autograd.Function, under
torch.compile through two registered custom ops (``mamba_sr_archs::<name>_fwd`` / ``_bwd``, with fake shape
functions and autograd) so that the scan stays inside one graph as an opaque node.
"""
from typing import List, Optional, Tuple

import torch

_custom_op = getattr(getattr(torch, 'library', None), 'custom_op', None)


def next_pow2(x):
    return 1 if x <= 1 else 1 << (int(x) - 1).bit_length()


_SM_COUNT = {}


def sm_count(device):
    """Multiprocessors of a CUDA ``device`` (cached per device); 132 (an H100) for anything else, e.g. the
    interpreter or CPU-side checks of launch configurations."""
    if device is None or device.type != 'cuda':
        return 132
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


def last_contig(x):
    return x if x is None or x.stride(-1) == 1 else x.contiguous()


def as_grouped(x, name, batch, seqlen):
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[0] != batch or x.shape[-1] != seqlen:
        raise ValueError(f'{name} must be (b, N, L) or (b, G, N, L) with b={batch}, L={seqlen}; '
                         f'got {tuple(x.shape)}')
    return last_contig(x)


def prepare_inputs(u, delta, A, B, C, D, z, delta_bias, max_dstate, fn_name):
    """Check shapes; B/C as (b, G, N, L) with one group count; unit stride along L.

    Returns (u, delta, B4, C4, D, z, delta_bias).  Only differentiable view/copy ops, so the custom-op path can
    call it outside the op and let autograd carry the B/C gradients back through it.
    """
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f'u and delta must both be (b, d, L); got {tuple(u.shape)} and {tuple(delta.shape)}')
    if A.is_complex():
        raise NotImplementedError(f'{fn_name} supports real A only')
    batch, dim, seqlen = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f'A must be (d, N) with d={dim}; got {tuple(A.shape)}')
    dstate = A.shape[1]
    if dstate > max_dstate:
        raise ValueError(f'{fn_name} supports N <= {max_dstate}; got {dstate}')
    B4 = as_grouped(B, 'B', batch, seqlen)
    C4 = as_grouped(C, 'C', batch, seqlen)
    for name, t in (('B', B4), ('C', C4)):
        if t.shape[2] != dstate or dim % t.shape[1] != 0:
            raise ValueError(f'{name} has shape {tuple(t.shape)}: needs N={dstate} and G dividing d={dim}')
    if B4.shape[1] != C4.shape[1]:
        # Different group counts for B and C: run both on the finer grouping.
        g = max(B4.shape[1], C4.shape[1])
        B4 = B4.repeat_interleave(g // B4.shape[1], dim=1)
        C4 = C4.repeat_interleave(g // C4.shape[1], dim=1)
    u, delta, z = last_contig(u), last_contig(delta), last_contig(z)
    D = D.contiguous() if D is not None else None
    delta_bias = delta_bias.contiguous() if delta_bias is not None else None
    if z is not None and z.shape != u.shape:
        raise ValueError(f'z must be (b, d, L) like u; got {tuple(z.shape)}')
    return u, delta, B4, C4, D, z, delta_bias


def grad_buffers(u, delta, z, D, delta_bias, groups, dstate, atomic_bc, empty):
    """Output buffers of a backward kernel, as (du, ddelta, dB, dC, dA, dD, dz, d(delta_bias)): du, ddelta, dz in
    their inputs' dtypes (ddelta/dz in ``delta``/``z``'s dtype), float32 dB/dC (b, G, N, L) (zeroed when several
    programs add into them, ``atomic_bc``) and zeroed float32 dA, dD, d(delta_bias) (sums over the batch).
    ``empty(shape, dtype, device)`` allocates the ones not zeroed; the zeroed ones are cleared by one fused launch
    (this runs on every backward call)."""
    batch, dim, seqlen = u.shape
    dev = u.device
    f32 = dict(dtype=torch.float32, device=dev)
    shape_bc = (batch, groups, dstate, seqlen)
    dB, dC = (torch.empty(shape_bc, **f32) if atomic_bc else empty(shape_bc, torch.float32, dev) for _ in range(2))
    dA = torch.empty((dim, dstate), **f32)
    dD = torch.empty((dim,), **f32) if D is not None else None
    dbias = torch.empty((dim,), **f32) if delta_bias is not None else None
    torch._foreach_zero_([t for t in ((dB, dC) if atomic_bc else ()) + (dA, dD, dbias) if t is not None])
    return (empty((batch, dim, seqlen), u.dtype, dev), empty((batch, dim, seqlen), delta.dtype, dev), dB, dC, dA, dD,
            empty((batch, dim, seqlen), z.dtype, dev) if z is not None else None, dbias)


def _regroup(grad, shape, dtype):
    """dB/dC of the (b, G, N, L) view back to the caller's B/C shape (undoing a repeat_interleave of groups) and
    dtype.  (Each step is skipped where it would change nothing: this runs on every backward call.)"""
    g0 = 1 if len(shape) == 3 else shape[1]
    if grad.shape[1] != g0:
        grad = grad.view(grad.shape[0], g0, -1, *grad.shape[2:]).sum(2)
    if grad.shape != shape:
        grad = grad.reshape(shape)
    return grad if grad.dtype == dtype else grad.to(dtype)


def cast_if(x, dtype):
    """x in ``dtype`` (x itself when it already is, or None)."""
    return x if x is None or x.dtype == dtype else x.to(dtype)


class KernelScan:
    """``selective_scan_fn``-like callable over one backend module (see the module docstring)."""

    def __init__(self, name, backend, check_ready, max_dstate, fn_name):
        self.backend, self.check_ready, self.max_dstate, self.fn_name = backend, check_ready, max_dstate, fn_name
        self.force_custom_op = False      # tests set this to run the custom-op path eagerly
        self.function = self._make_function()
        self.fwd_op = self._register_ops(name) if _custom_op is not None else None

    def prepare(self, u, delta, A, B, C, D, z, delta_bias):
        self.check_ready(u)
        return prepare_inputs(u, delta, A, B, C, D, z, delta_bias, self.max_dstate, self.fn_name)

    def _make_function(self):
        scan = self

        class Fn(torch.autograd.Function):
            @staticmethod
            def forward(ctx, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                        return_last_state=False):
                u, delta, B4, C4, D, z, delta_bias = scan.prepare(u, delta, A, B, C, D, z, delta_bias)
                need_grad = any(ctx.needs_input_grad[:8])
                out, last, ckpt = scan.backend._fwd(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus,
                                                    need_grad)
                if need_grad:
                    ctx.save_for_backward(u, delta, A, B4, C4, D, z, delta_bias, ckpt)
                ctx.meta = (delta_softplus, B.shape, C.shape, B.dtype, C.dtype)
                if return_last_state:
                    ctx.mark_non_differentiable(last)
                    return out, last
                return out

            @staticmethod
            def backward(ctx, dout, *unused):
                u, delta, A, B4, C4, D, z, delta_bias, ckpt = ctx.saved_tensors
                delta_softplus, B_shape, C_shape, B_dtype, C_dtype = ctx.meta
                du, ddelta, dA, dB, dC, dD, dz, dbias = scan.backend._bwd(last_contig(dout), u, delta, A, B4, C4,
                                                                          D, z, delta_bias, delta_softplus, ckpt)
                return (du, ddelta, cast_if(dA, A.dtype), _regroup(dB, B_shape, B_dtype),
                        _regroup(dC, C_shape, C_dtype), cast_if(dD, D.dtype) if D is not None else None, dz,
                        cast_if(dbias, delta_bias.dtype) if delta_bias is not None else None, None, None)

        Fn.__name__ = Fn.__qualname__ = f'{self.fn_name}_Fn'
        return Fn

    def _register_ops(self, name):
        from .selective_scan import like_input
        backend = self.backend

        @_custom_op(f'mamba_sr_archs::{name}_fwd', mutates_args=())
        def fwd_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B4: torch.Tensor, C4: torch.Tensor,
                   D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                   delta_softplus: bool, store_ckpt: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return backend._fwd(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, store_ckpt)

        @fwd_op.register_fake
        def _fwd_fake(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, store_ckpt):
            batch, dim, seqlen = u.shape
            dstate = A.shape[1]
            ckpt_shape = backend.ckpt_shape(batch, dim, B4.shape[1], dstate, seqlen) if store_ckpt else (1,)
            return (u.new_empty((batch, dim, seqlen)), u.new_empty((batch, dim, dstate), dtype=torch.float32),
                    u.new_empty(ckpt_shape, dtype=torch.float32))

        @_custom_op(f'mamba_sr_archs::{name}_bwd', mutates_args=())
        def bwd_op(dout: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B4: torch.Tensor,
                   C4: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor],
                   delta_bias: Optional[torch.Tensor], delta_softplus: bool,
                   ckpt: torch.Tensor) -> List[torch.Tensor]:
            # Gradients in their inputs' layouts (see selective_scan.like_input), absent ones as empty tensors.
            grads = backend._bwd(dout, u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, ckpt)
            inputs = (u, delta, A, B4, C4, D, z, delta_bias)
            return [like_input(g, x) if g is not None else u.new_empty((0,)) for g, x in zip(grads, inputs)]

        @bwd_op.register_fake
        def _bwd_fake(dout, u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, ckpt):
            f32 = dict(dtype=torch.float32)   # the kernels' dA, dB, dC, dD, d(delta_bias) are float32
            absent = u.new_empty((0,))
            return [torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A, **f32),
                    torch.empty_like(B4, **f32), torch.empty_like(C4, **f32),
                    torch.empty_like(D, **f32) if D is not None else absent,
                    torch.empty_like(z) if z is not None else absent,
                    torch.empty_like(delta_bias, **f32) if delta_bias is not None else absent]

        def setup(ctx, inputs, output):
            u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, _ = inputs
            ctx.save_for_backward(u, delta, A, B4, C4, D, z, delta_bias, output[2])
            ctx.delta_softplus = delta_softplus

        def backward(ctx, dout, dlast, dckpt):
            u, delta, A, B4, C4, D, z, delta_bias, ckpt = ctx.saved_tensors
            if dout is None:
                dout = torch.zeros_like(u)
            du, ddelta, dA, dB, dC, dD, dz, dbias = bwd_op(last_contig(dout), u, delta, A, B4, C4, D, z,
                                                           delta_bias, ctx.delta_softplus, ckpt)
            return (du, ddelta, dA.to(A.dtype), dB.to(B4.dtype), dC.to(C4.dtype),
                    dD.to(D.dtype) if D is not None else None, dz if z is not None else None,
                    dbias.to(delta_bias.dtype) if delta_bias is not None else None, None, None)

        fwd_op.register_autograd(backward, setup_context=setup)
        return fwd_op

    def _custom_op_call(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
        u, delta, B4, C4, D, z, delta_bias = self.prepare(u, delta, A, B, C, D, z, delta_bias)
        tensors = (u, delta, A, B4, C4, D, z, delta_bias)
        store_ckpt = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
        out, last, _ = self.fwd_op(u, delta, A, B4, C4, D, z, delta_bias, bool(delta_softplus), store_ckpt)
        return (out, last.detach()) if return_last_state else out

    def __call__(self, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                 return_last_state=False):
        if self.fwd_op is not None and (self.force_custom_op or torch.compiler.is_compiling()):
            return self._custom_op_call(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
        return self.function.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

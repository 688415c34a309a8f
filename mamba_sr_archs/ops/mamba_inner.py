"""Memory-lean Mamba inner path: causal conv1d + SiLU, x/delta projections and the selective scan of one direction
as one differentiable op that keeps only its inputs and the scan's state checkpoints, and recomputes the rest in the
backward.

The plain layer (``archs/mamba_layer.Mamba._scan``) leaves autograd to save every intermediate of one direction:
the padded conv input, the conv output before and after SiLU, delta, the contiguous B/C, and for Vim's backward
direction flipped copies of x and z, each (batch, d_inner, L).  This op saves x, z and the weights (level 1: plus the
scan kernel's checkpoints, as mamba_ssm's ``mamba_inner_fn`` does; level 2: nothing of the scan, the backward
rebuilds the checkpoints with a checkpoints-only scan forward); the backward recomputes conv, SiLU, the projections
and delta (cheap next to the scan), runs the scan kernel's backward once, and takes the projections' and the conv's
gradients by hand (no autograd inside).  ``reverse=True`` is the direction that scans the time-reversed sequence; on
the CUDA kernels it needs no flipped copies at all (anti-causal conv + a kernel scanning from the end), on Triton
it flips inside the op and keeps no flipped copies.

Eagerly it runs as an autograd.Function; under torch.compile as two registered custom ops
(``mamba_sr_archs::mamba_inner_fwd`` / ``_bwd``, fake shapes + autograd), so it stays one opaque node of the
compiled graph and combines with ``compile: true``.  bf16/fp16 autocast is honoured by casting to the autocast
dtype exactly where autocast would (conv and linear layers), since custom ops run below autocast.

It needs a scan backend with separate forward/backward kernels (this package's ``cuda`` or ``triton``); elsewhere
(CPU, mamba_ssm, float64) :func:`mamba_inner` returns None and the caller runs the plain path.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from ._kernel_scan import next_pow2

__all__ = ['mamba_inner', 'kernel_backend_for', 'channel_first_matmul']

_custom_op = getattr(getattr(torch, 'library', None), 'custom_op', None)
_FORCE_CUSTOM_OP = [False]   # tests set this to run the custom-op path eagerly


def kernel_backend_for(u, dstate):
    """Name of the kernel backend (``'cuda'`` / ``'triton'``) ``selective_scan`` would pick for ``u``, else None."""
    from .selective_scan import _KERNEL_MODULES, _pick_backend   # per call: tests pin the choice
    if u.dtype == torch.float64:
        return None
    try:
        name = _pick_backend(None, u, torch.float32, False, dstate)
    except (RuntimeError, ValueError):
        return None
    return name if name in _KERNEL_MODULES else None


def channel_first_matmul(weight, x):
    """weight (m, k) @ x (b, k, L) -> (b, m, L), contiguous, as one batched product over a stride-0 view of the
    weight.  (torch.matmul folds a 2-D @ 3-D product into (x^T @ weight^T)^T: a copy of x^T and a transposed
    result, which the scan kernels would then copy again.)"""
    return torch.bmm(weight.expand(x.shape[0], -1, -1), x)


def _scan_object(backend):
    from .selective_scan import _kernel_module
    return _kernel_module(backend)._SCAN


def _cast(t, dtype):
    return t.to(dtype) if t is not None else None


def _f32(t):
    return t if t is None or t.dtype == torch.float64 else t.float()


# Kernel backends whose _fwd/_bwd take ``reverse=`` (scan from the sequence's end), ``store_out=`` and ``chunk=``
# (checkpoint interval): a reversed direction needs no flipped copies there.  Around the others the op flips inputs
# and outputs.
_NATIVE_REVERSE = frozenset({'cuda'})


def _kept_chunk(backend, d_state, keep_ckpt):
    """Checkpoint interval of the checkpoints level 1 keeps, on the CUDA kernels: every max(8, N/2) steps, so they
    hold about 2 floats per (channel, step) whatever N.  (The kernels' default is 8 steps, 16 at N = 32, where it is
    also the faster one; at N = 64 a chunk of 32 quarters the checkpoints.)  None (the default) for level 2's
    transient checkpoints and for other backends."""
    if not keep_ckpt or backend not in _NATIVE_REVERSE:
        return None
    return max(8, next_pow2(d_state) // 2)


def _reverse_plan(reverse, backend):
    """(native, flip) of one direction: the kernels scan it from the end themselves, or the op flips around them."""
    native = reverse and backend in _NATIVE_REVERSE
    return native, reverse and not native


def _recompute(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse, backend,
               scan, cdt):
    """Everything between the layer's x/z and the scan kernel, in the compute dtype ``cdt``.

    The projections are computed channel-first ((k, d) @ (b, d, L)), so B, C and delta come out with unit stride
    along L and need no transposed copies.  A reversed direction on the CUDA kernels stays in the original order:
    the causal conv of the reversed sequence is the anti-causal conv (right padding, flipped taps) of the original,
    and the kernel scans from the end; other backends get flipped copies.
    Returns (xpad, taps, u_pre, u, dtv, prepared) with prepared = the kernel's inputs (u, delta, A, B4, C4, D, z,
    delta_bias).
    """
    native, flip = _reverse_plan(reverse, backend)
    if flip:
        x, z = x.flip(-1), z.flip(-1) if z is not None else None
    width = conv_w.shape[-1]
    taps = conv_w.to(cdt)
    if native:
        xpad, taps = F.pad(x.to(cdt), (0, width - 1)), taps.flip(-1)
    else:
        xpad = F.pad(x.to(cdt), (width - 1, 0))
    u_pre = F.conv1d(xpad, taps.unsqueeze(1), _cast(conv_b, cdt), groups=x.shape[1])
    u = F.silu(u_pre)
    x_dbl = channel_first_matmul(x_proj_w.to(cdt), u)                      # (b, r + 2n, L)
    dtv, B, C = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=1)
    delta = channel_first_matmul(dt_proj_w.to(cdt), dtv)                   # (b, d_inner, L)
    A = -torch.exp(_f32(A_log))
    su, sdelta, B4, C4, D32, zz, bias = scan.prepare(u, delta, A, B, C, _f32(D), z, _f32(dt_bias))
    return xpad, taps, u_pre, u, dtv, (su, sdelta, A, B4, C4, D32, zz, bias)


def _scan_fwd(scan, backend, prepared, store_ckpt, reverse, store_out=True, chunk=None):
    """The kernel forward; the CUDA kernels scan reversed directions natively, can skip the outputs and take a
    checkpoint interval."""
    if backend in _NATIVE_REVERSE:
        return scan.backend._fwd(*prepared, True, store_ckpt, reverse=reverse, store_out=store_out, chunk=chunk)
    return scan.backend._fwd(*prepared, True, store_ckpt)


def _forward(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse, backend,
             cdt, keep_ckpt):
    """(out (b, d_inner, L) in ``cdt``, scan checkpoints, or an empty tensor when not ``keep_ckpt``)."""
    scan = _scan_object(backend)
    with torch.no_grad():
        prepared = _recompute(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state,
                              reverse, backend, scan, cdt)[-1]
        out, _, ckpt = _scan_fwd(scan, backend, prepared, keep_ckpt, reverse,
                                 chunk=_kept_chunk(backend, d_state, keep_ckpt))
    if _reverse_plan(reverse, backend)[1]:
        out = out.flip(-1)
    return out, (ckpt if keep_ckpt else x.new_empty((0,), dtype=torch.float32))


def _backward(dout, x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, ckpt, dt_rank, d_state, reverse,
              backend, cdt, keep_ckpt):
    """Gradients (dx, dz, d conv_w, d conv_b, d x_proj_w, d dt_proj_w, d dt_bias, d A_log, dD); None for absent
    inputs.  Chain rule by hand, in the order the forward ran backwards: scan -> dt_proj -> x_proj -> SiLU -> conv."""
    scan = _scan_object(backend)
    native, flip = _reverse_plan(reverse, backend)
    with torch.no_grad():
        xpad, taps, u_pre, u, dtv, prepared = _recompute(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log,
                                                         D, dt_rank, d_state, reverse, backend, scan, cdt)
        A = prepared[2]
        if flip:
            dout = dout.flip(-1)
        if not keep_ckpt:      # level 2: the forward kept no checkpoints; rerun the scan's forward to get them
            ckpt = _scan_fwd(scan, backend, prepared, True, reverse, store_out=False)[2]
        scan_bwd = dict(reverse=reverse, chunk=_kept_chunk(backend, d_state, keep_ckpt)) \
            if backend in _NATIVE_REVERSE else {}
        du, ddelta, dA, dB, dC, dD, dz, dbias = scan.backend._bwd(dout.contiguous(), *prepared, True, ckpt,
                                                                  **scan_bwd)
        del ckpt
        batch, dim, seqlen = u.shape
        # delta = dt_proj_w @ dtv, x_dbl = x_proj_w @ u = [dtv; B; C], all (b, rows, L)
        ddelta = ddelta.to(cdt)
        d_dt_proj_w = torch.bmm(ddelta, dtv.transpose(1, 2)).sum(0)                      # (d, r)
        d_xdbl = torch.cat([channel_first_matmul(dt_proj_w.to(cdt).t(), ddelta),
                            dB.reshape(batch, d_state, seqlen).to(cdt),
                            dC.reshape(batch, d_state, seqlen).to(cdt)], dim=1)            # (b, r + 2n, L)
        d_x_proj_w = torch.bmm(d_xdbl, u.transpose(1, 2)).sum(0)                          # (r + 2n, d)
        du = du.baddbmm_(x_proj_w.to(cdt).t().expand(batch, -1, -1), d_xdbl)             # (b, d, L)
        du_pre = torch.ops.aten.silu_backward(du, u_pre)
        # depthwise conv over the padded input
        dxpad, dtaps, dconv_b = torch.ops.aten.convolution_backward(
            du_pre, xpad, taps.unsqueeze(1), [dim] if conv_b is not None else None, [1], [0], [1], False,
            [0], dim, [True, True, conv_b is not None])
        dtaps = dtaps.squeeze(1)
        if native:
            dx, dtaps = dxpad[..., :seqlen], dtaps.flip(-1)
        else:
            dx = dxpad[..., conv_w.shape[-1] - 1:]
        if flip:
            dx = dx.flip(-1)
            dz = dz.flip(-1) if dz is not None else None
    return (dx.to(x.dtype), _cast(dz, z.dtype) if z is not None else None, dtaps.to(conv_w.dtype),
            _cast(dconv_b, conv_b.dtype) if conv_b is not None else None, d_x_proj_w.to(x_proj_w.dtype),
            d_dt_proj_w.to(dt_proj_w.dtype), _cast(dbias, dt_bias.dtype), (dA * A).to(A_log.dtype),
            _cast(dD, D.dtype))


class _MambaInnerFn(torch.autograd.Function):
    """Eager path: :func:`_forward` / :func:`_backward` as an autograd.Function."""

    @staticmethod
    def forward(ctx, x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse, backend,
                cdt, keep_ckpt):
        ctx.meta = (dt_rank, d_state, reverse, backend, cdt, keep_ckpt)
        out, ckpt = _forward(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse,
                             backend, cdt, keep_ckpt)
        ctx.save_for_backward(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, ckpt)
        return out

    @staticmethod
    def backward(ctx, dout):
        *saved, ckpt = ctx.saved_tensors
        grads = _backward(dout, *saved, ckpt, *ctx.meta)
        return grads + (None,) * 6


if _custom_op is not None:
    @_custom_op('mamba_sr_archs::mamba_inner_fwd', mutates_args=())
    def _fwd_op(x: torch.Tensor, z: Optional[torch.Tensor], conv_w: torch.Tensor, conv_b: Optional[torch.Tensor],
                x_proj_w: torch.Tensor, dt_proj_w: torch.Tensor, dt_bias: torch.Tensor, A_log: torch.Tensor,
                D: torch.Tensor, dt_rank: int, d_state: int, reverse: bool, backend: str, cdt: torch.dtype,
                keep_ckpt: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        return _forward(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse,
                        backend, cdt, keep_ckpt)

    @_fwd_op.register_fake
    def _fwd_fake(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse, backend,
                  cdt, keep_ckpt):
        from .selective_scan import _kernel_module
        batch, dim, seqlen = x.shape
        chunk = _kept_chunk(backend, d_state, keep_ckpt)
        extra = dict(chunk=chunk) if chunk else {}      # the CUDA kernels' interval for level 1
        ckpt_shape = (_kernel_module(backend).ckpt_shape(batch, dim, 1, d_state, seqlen, **extra) if keep_ckpt
                      else (0,))
        return x.new_empty((batch, dim, seqlen), dtype=cdt), x.new_empty(ckpt_shape, dtype=torch.float32)

    @_custom_op('mamba_sr_archs::mamba_inner_bwd', mutates_args=())
    def _bwd_op(dout: torch.Tensor, x: torch.Tensor, z: Optional[torch.Tensor], conv_w: torch.Tensor,
                conv_b: Optional[torch.Tensor], x_proj_w: torch.Tensor, dt_proj_w: torch.Tensor,
                dt_bias: torch.Tensor, A_log: torch.Tensor, D: torch.Tensor, ckpt: torch.Tensor, dt_rank: int,
                d_state: int, reverse: bool, backend: str, cdt: torch.dtype, keep_ckpt: bool) -> List[torch.Tensor]:
        from .selective_scan import like_input
        grads = _backward(dout, x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, ckpt, dt_rank,
                          d_state, reverse, backend, cdt, keep_ckpt)
        inputs = (x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D)
        # Gradients in their inputs' layouts (as the fake promises); absent ones as empty tensors.
        return [like_input(g, t) if g is not None else x.new_empty((0,)) for g, t in zip(grads, inputs)]

    @_bwd_op.register_fake
    def _bwd_fake(dout, x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, ckpt, dt_rank, d_state,
                  reverse, backend, cdt, keep_ckpt):
        return [torch.empty_like(t) if t is not None else x.new_empty((0,))
                for t in (x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D)]

    def _op_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:9], output[1])
        ctx.meta = inputs[9:]

    def _op_backward(ctx, dout, dckpt):
        *saved, ckpt = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(saved[0])
        grads = _bwd_op(dout, *saved, ckpt, *ctx.meta)
        return tuple(g if t is not None else None for g, t in zip(grads, saved)) + (None,) * 6

    _fwd_op.register_autograd(_op_backward, setup_context=_op_setup)


def mamba_inner(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse=False,
                level=2):
    """One Mamba direction, memory-lean (see the module docstring): returns (batch, d_inner, L), or None when no
    kernel backend with separate forward/backward is usable here (the caller then runs the plain layer).

    ``level`` 1 keeps the scan kernel's state checkpoints from the forward to the backward, (b, d, L / T, N) floats
    (on the CUDA kernels T = max(8, N / 2): 2x the size of x; on Triton 2-4x at N = 16-32); level 2 keeps nothing
    of the scan, and the backward reruns the scan's forward (checkpoints only) to rebuild them: one more scan
    forward per direction, transient memory only.

    x, z: (batch, d_inner, L); conv_w (d_inner, K), conv_b (d_inner,) or None; x_proj_w (dt_rank + 2 d_state,
    d_inner); dt_proj_w (d_inner, dt_rank); dt_bias, D (d_inner,); A_log (d_inner, d_state).
    """
    backend = kernel_backend_for(x, d_state)
    if backend is None:
        return None
    device = x.device.type
    cdt = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    args = (x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, int(dt_rank), int(d_state), bool(reverse),
            backend, cdt, level == 1)
    if _custom_op is not None and (_FORCE_CUSTOM_OP[0] or torch.compiler.is_compiling()):
        return _fwd_op(*args)[0]
    return _MambaInnerFn.apply(*args)

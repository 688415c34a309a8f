"""Memory-lean Mamba inner path: causal conv1d + SiLU, x/delta projections and the selective scan as one autograd
Function that keeps only its inputs and the scan's state checkpoints, and recomputes the rest in the backward.

The plain layer (``archs/mamba_layer.Mamba._scan``) leaves autograd to save every intermediate of one direction:
the conv output before and after SiLU, delta, the contiguous B/C, and for Vim's backward direction flipped copies of
x and z, each (batch, d_inner, L).  This Function saves x, z, the small x_proj output and the weights, plus the scan
kernel's checkpoints, as mamba_ssm's ``mamba_inner_fn`` does (checkpoint level 1); the backward recomputes conv,
SiLU, the projections and delta (cheap next to the scan) and runs the scan kernel's backward once.  ``reverse=True``
scans the time-reversed sequence and flips the result back without keeping flipped copies.

It needs a scan backend with separate forward/backward kernels (this package's ``cuda`` or ``triton``); elsewhere
(CPU, mamba_ssm, under torch.compile) :func:`mamba_inner` returns None and the caller runs the plain path.
"""
import torch
import torch.nn.functional as F

from .causal_conv1d import causal_conv1d

__all__ = ['mamba_inner', 'kernel_scan_for']


def kernel_scan_for(u, dstate):
    """The KernelScan object of the backend ``selective_scan`` would pick for ``u`` (cuda / triton), else None."""
    from .selective_scan import _KERNEL_MODULES, _kernel_module, _pick_backend   # per call: tests pin the choice
    if torch.compiler.is_compiling() or u.dtype == torch.float64:
        return None
    try:
        name = _pick_backend(None, u, torch.float32, False, dstate)
    except (RuntimeError, ValueError):
        return None
    return _kernel_module(name)._SCAN if name in _KERNEL_MODULES else None


def _f32(t):
    return t if t is None or t.dtype == torch.float64 else t.float()


def _pre_scan(scan, x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse):
    """Conv + SiLU, projections, delta, A: the scan's prepared inputs (u, delta, A, B4, C4, D, z, bias)."""
    if reverse:
        x, z = x.flip(-1), z.flip(-1) if z is not None else None
    u = causal_conv1d(x, conv_w, conv_b, activation='silu')
    x_dbl = F.linear(u.transpose(1, 2), x_proj_w)                      # (b, L, r + 2n)
    dt, B, C = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=-1)
    delta = F.linear(dt, dt_proj_w).transpose(1, 2)                    # (b, d_inner, L)
    A = -torch.exp(_f32(A_log))
    u, delta, B4, C4, D, z, bias = scan.prepare(u, delta, A, B.transpose(1, 2), C.transpose(1, 2), _f32(D), z,
                                                _f32(dt_bias))
    return u, delta, A, B4, C4, D, z, bias


class _MambaInnerFn(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse, scan):
        ctx.autocast = (torch.is_autocast_enabled(x.device.type), torch.get_autocast_dtype(x.device.type))
        ctx.meta = (dt_rank, d_state, reverse, scan)
        with torch.no_grad():
            u, delta, A, B4, C4, D32, zz, bias = _pre_scan(scan, x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias,
                                                           A_log, D, dt_rank, d_state, reverse)
            out, _, ckpt = scan.backend._fwd(u, delta, A, B4, C4, D32, zz, bias, True, True)
        ctx.save_for_backward(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, ckpt)
        return out.flip(-1) if reverse else out

    @staticmethod
    def backward(ctx, dout):
        x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, ckpt = ctx.saved_tensors
        dt_rank, d_state, reverse, scan = ctx.meta
        leaves = [t.detach().requires_grad_(t.requires_grad) if t is not None else None
                  for t in (x, conv_w, conv_b, x_proj_w, dt_proj_w, A_log)]
        xl, cw, cb, xw, dw, al = leaves
        enabled, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(x.device.type, dtype=dtype, enabled=enabled):
            u, delta, A, B4, C4, D32, zz, bias = _pre_scan(scan, xl, z, cw, cb, xw, dw, dt_bias, al, D, dt_rank,
                                                           d_state, reverse)
        if reverse:
            dout = dout.flip(-1)
        du, ddelta, dA, dB, dC, dD, dz, dbias = scan.backend._bwd(
            dout.contiguous(), u.detach(), delta.detach(), A.detach(), B4.detach(), C4.detach(), D32, zz, bias,
            True, ckpt)
        pairs = [(t, g) for t, g in ((u, du), (delta, ddelta), (A, dA), (B4, dB.to(B4.dtype)), (C4, dC.to(C4.dtype)))
                 if t.requires_grad]
        grads = [None] * len(leaves)
        wanted = [i for i, t in enumerate(leaves) if t is not None and t.requires_grad]
        if pairs and wanted:
            got = torch.autograd.grad([t for t, _ in pairs], [leaves[i] for i in wanted], [g for _, g in pairs],
                                      allow_unused=True)
            for i, g in zip(wanted, got):
                grads[i] = g
        if dz is not None and reverse:
            dz = dz.flip(-1)
        dx, dcw, dcb, dxw, ddw, dal = grads
        return (dx, dz if z is not None else None, dcw, dcb, dxw, ddw,
                dbias.to(dt_bias.dtype) if dbias is not None else None, dal,
                dD.to(D.dtype) if dD is not None else None, None, None, None, None)


def mamba_inner(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state, reverse=False):
    """One Mamba direction, memory-lean (see the module docstring): returns (batch, d_inner, L), or None when no
    kernel backend with separate forward/backward is usable here (the caller then runs the plain layer).

    x, z: (batch, d_inner, L); conv_w (d_inner, K), conv_b (d_inner,) or None; x_proj_w (dt_rank + 2 d_state,
    d_inner); dt_proj_w (d_inner, dt_rank); dt_bias, D (d_inner,); A_log (d_inner, d_state).
    """
    scan = kernel_scan_for(x, d_state)
    if scan is None:
        return None
    return _MambaInnerFn.apply(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_bias, A_log, D, dt_rank, d_state,
                               reverse, scan)

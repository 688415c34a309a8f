"""Selective scan (S6) with mamba_ssm ``selective_scan_fn`` semantics.

PLACEHOLDER reference implementation (sequential); the ops owner replaces the internals with the
chunked CPU backend and run-time backend dispatch while keeping this public API.
"""
import torch
import torch.nn.functional as F

_LAST = {'backend': None}


def available_backends():
    return ['torch']


def last_backend():
    return _LAST['backend']


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Sequential float32 reference: u, delta (b, d, l); A (d, n); B, C (b, n, l) or (b, g, n, l)."""
    dtype_in = u.dtype
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    A = A.float()
    B = B.float()
    C = C.float()
    if B.dim() == 4:
        B = B.repeat_interleave(dim // B.shape[1], dim=1)  # (b, d, n, l)
    else:
        B = B[:, None]
    if C.dim() == 4:
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
    else:
        C = C[:, None]
    deltaA = torch.exp(delta[..., None] * A[None, :, None, :])  # (b, d, l, n)
    deltaBu = delta[..., None] * B.transpose(-1, -2) * u[..., None]  # (b, d, l, n)
    x = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for i in range(length):
        x = deltaA[:, :, i] * x + deltaBu[:, :, i]
        ys.append((x * C[..., i]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.float()[..., None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, x) if return_last_state else y


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend=None):
    _LAST['backend'] = 'torch'
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

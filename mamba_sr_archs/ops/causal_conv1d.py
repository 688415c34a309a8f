"""Causal depthwise conv1d with ``causal_conv1d_fn`` semantics."""
import torch.nn.functional as F


def causal_conv1d(x, weight, bias=None, activation=None):
    """x (b, d, l), weight (d, k), bias (d,); left zero padding k-1; activation None or 'silu'/'swish'."""
    if activation not in (None, 'silu', 'swish'):
        raise ValueError(f"activation must be None, 'silu' or 'swish', got {activation!r}")
    k = weight.shape[-1]
    out = F.conv1d(F.pad(x, (k - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(out) if activation else out

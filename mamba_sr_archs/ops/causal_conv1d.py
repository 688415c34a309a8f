"""Causal depthwise conv1d with ``causal_conv1d_fn`` semantics (the short convolution of a Mamba layer).

``out[b, d, t] = act(bias[d] + sum_k weight[d, k] * x[b, d, t - (K - 1) + k])`` with zeros before t = 0.  Uses the
``causal_conv1d`` package's CUDA kernel for CUDA tensors when it is installed, else ``F.conv1d``; under torch.compile
a sum of K shifted products, which Inductor fuses with the padding, the SiLU and its neighbours into one pointwise
kernel (``F.conv1d`` stays an opaque call there, and for a depthwise conv with a width-4 kernel PyTorch runs its
generic depthwise kernel, far from the memory bound at Mamba's sequence lengths).
"""
import importlib

import torch
import torch.nn.functional as F

__all__ = ['causal_conv1d', 'causal_conv1d_torch', 'causal_conv1d_shifted']

_KERNEL = {}


def _cuda_kernel():
    """``causal_conv1d.causal_conv1d_fn`` or None (import tried once)."""
    if 'fn' not in _KERNEL:
        try:
            _KERNEL['fn'] = importlib.import_module('causal_conv1d').causal_conv1d_fn
        except Exception:  # not installed, or its CUDA extension does not load
            _KERNEL['fn'] = None
    return _KERNEL['fn']


def _check(x, weight, bias, activation):
    if activation not in (None, 'silu', 'swish'):
        raise ValueError(f"activation must be None, 'silu' or 'swish', got {activation!r}")
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f'x must be (batch, dim, seqlen) and weight (dim, width); got {tuple(x.shape)} and '
                         f'{tuple(weight.shape)}')
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f'bias must be (dim,) = ({x.shape[1]},), got {tuple(bias.shape)}')


def causal_conv1d_torch(x, weight, bias=None, activation=None):
    """PyTorch path: left zero padding of width K - 1, depthwise ``F.conv1d``, optional SiLU."""
    _check(x, weight, bias, activation)
    out = F.conv1d(F.pad(x, (weight.shape[-1] - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(out) if activation else out


def causal_conv1d_shifted(x, weight, bias=None, activation=None):
    """The same as a sum of K shifted products (for torch.compile, which fuses it into one kernel)."""
    _check(x, weight, bias, activation)
    width, seqlen = weight.shape[-1], x.shape[-1]
    xpad = F.pad(x, (width - 1, 0))
    w = weight.to(x.dtype).unsqueeze(-1)                       # (dim, width, 1)
    out = xpad[..., :seqlen] * w[:, 0]
    for k in range(1, width):
        out = out + xpad[..., k:k + seqlen] * w[:, k]
    if bias is not None:
        out = out + bias.to(x.dtype).unsqueeze(-1)
    return F.silu(out) if activation else out


def causal_conv1d(x, weight, bias=None, activation=None):
    """x (batch, dim, seqlen), weight (dim, width), bias (dim,) or None; activation None, 'silu' or 'swish'.

    Returns (batch, dim, seqlen) in x's dtype.
    """
    _check(x, weight, bias, activation)
    if torch.compiler.is_compiling():
        return causal_conv1d_shifted(x, weight, bias, activation)
    fn = _cuda_kernel() if x.is_cuda else None
    if fn is not None:
        return fn(x, weight, bias, activation)
    return causal_conv1d_torch(x, weight, bias, activation)

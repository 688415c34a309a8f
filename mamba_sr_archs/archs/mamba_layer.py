"""The Mamba (S6) layer shared by MMA and MPSI.

One module serves both networks: a unidirectional layer (``bimamba_type='none'``, as in
mamba_ssm's ``Mamba``) and the bidirectional Vision-Mamba layer (``bimamba_type='v2'``, Vim,
Zhu et al. 2024, Sec. 3.3): shared ``in_proj``/``out_proj``; the forward direction and the backward
direction (run on the reversed sequence) each have their own causal depthwise conv1d, ``x_proj``,
``dt_proj``, ``A`` and ``D``; the two outputs are summed before ``out_proj``.

Parameter names and shapes follow the official layer so that official checkpoints load with
``strict=True``.  All scans go through :mod:`mamba_sr_archs.ops`, so the fastest available backend
(mamba_ssm CUDA, Triton, pure PyTorch) runs without the network knowing which.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import causal_conv1d, selective_scan
from ..ops.mamba_inner import channel_first_matmul, mamba_inner


def _at_least_f32(t):
    """The official ``.float()`` casts, except that float64 stays float64 (so a float64 model runs in float64)."""
    return t if t.dtype == torch.float64 else t.float()


def s4d_real_A_log(d_inner, d_state):
    """S4D-real initialisation of ``A_log``: log(1..N) for every channel, shape (d_inner, d_state)."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1))


def dt_bias_init(d_inner, dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4):
    """delta bias such that softplus(bias) is log-uniform in [dt_min, dt_max] (inverse softplus)."""
    dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


class Mamba(nn.Module):
    """Selective state-space layer on token sequences of shape (batch, length, d_model).

    Args:
        d_model: token width.
        d_state: SSM state size N.
        d_conv: causal depthwise conv1d kernel size.
        expand: inner width factor (d_inner = expand * d_model).
        dt_rank: rank of the delta projection, ``'auto'`` = ceil(d_model / 16).
        bimamba_type: ``'none'`` (forward direction only) or ``'v2'`` (forward + backward, summed).
        backward_params: create the ``*_b`` parameters; defaults to ``bimamba_type == 'v2'``.  MPSI's
            official unidirectional layer carries them unused, so it passes ``True``.
    """

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank='auto', dt_min=0.001, dt_max=0.1,
                 dt_init_floor=1e-4, conv_bias=True, bias=False, bimamba_type='none', backward_params=None):
        super().__init__()
        if bimamba_type not in ('none', 'v2'):
            raise ValueError(f"bimamba_type must be 'none' or 'v2', got {bimamba_type!r}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == 'auto' else int(dt_rank)
        self.bimamba_type = bimamba_type
        if backward_params is None:
            backward_params = bimamba_type == 'v2'
        if bimamba_type == 'v2' and not backward_params:
            raise ValueError("bimamba_type='v2' needs the backward-direction parameters")

        # Parameter creation order follows the official layer (A_log, D, [A_b_log, D_b], projections).
        self.A_log = nn.Parameter(self._init_A_log())
        self.D = nn.Parameter(torch.ones(self.d_inner))
        if backward_params:
            self.A_b_log = nn.Parameter(self._init_A_log())
            self.D_b = nn.Parameter(torch.ones(self.d_inner))
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d, self.x_proj, self.dt_proj = self._direction(conv_bias, dt_min, dt_max, dt_init_floor)
        if backward_params:
            self.conv1d_b, self.x_proj_b, self.dt_proj_b = self._direction(conv_bias, dt_min, dt_max, dt_init_floor)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        for p in (self.A_log, self.D) + ((self.A_b_log, self.D_b) if backward_params else ()):
            p._no_weight_decay = True
        # Memory-lean training path (ops.mamba_inner): False, 1 or 2 (= True; the level of ops.mamba_inner.mamba_inner),
        # set by MambaSRModel's ``train: {lean_memory: ...}``.
        self.lean_memory = False

    def _init_A_log(self):
        return s4d_real_A_log(self.d_inner, self.d_state)

    def _direction(self, conv_bias, dt_min, dt_max, dt_init_floor):
        conv = nn.Conv1d(self.d_inner, self.d_inner, self.d_conv, groups=self.d_inner, padding=self.d_conv - 1,
                         bias=conv_bias)
        x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        nn.init.uniform_(dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        with torch.no_grad():
            dt_proj.bias.copy_(dt_bias_init(self.d_inner, dt_min, dt_max, dt_init_floor))
        dt_proj.bias._no_reinit = True
        return conv, x_proj, dt_proj

    def _scan(self, x, z, conv, x_proj, dt_proj, A_log, D):
        """One direction: causal conv + SiLU, input-dependent (delta, B, C), gated selective scan.

        x, z: (batch, d_inner, length).  Returns (batch, d_inner, length).
        """
        x = causal_conv1d(x, conv.weight.squeeze(1), conv.bias, activation='silu')
        # Channel-first projections, (rows, d_inner) @ (b, d_inner, l): B, C and delta come out with unit stride
        # along l, as the scan kernels read them, with no transposed copies.
        x_dbl = channel_first_matmul(x_proj.weight, x)  # (b, r + 2n, l)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        delta = channel_first_matmul(dt_proj.weight, dt)  # (b, d_inner, l), bias goes in as delta_bias
        A = -torch.exp(_at_least_f32(A_log))
        return selective_scan(x, delta, A, B, C, _at_least_f32(D), z=z, delta_bias=_at_least_f32(dt_proj.bias),
                              delta_softplus=True)

    def _lean(self, x, z, conv, x_proj, dt_proj, A_log, D, reverse):
        """:meth:`_scan` (on the reversed sequence when ``reverse``, in the original order) through ops.mamba_inner,
        which saves far fewer activations; None where it cannot run (then the caller uses :meth:`_scan`)."""
        return mamba_inner(x, z, conv.weight.squeeze(1), conv.bias, x_proj.weight, dt_proj.weight, dt_proj.bias,
                           A_log, D, self.dt_rank, self.d_state, reverse=reverse,
                           level=2 if self.lean_memory is True else self.lean_memory)

    def forward(self, hidden_states):
        """hidden_states (batch, length, d_model) -> (batch, length, d_model).

        The projections run channel-first (weight @ (b, channels, l)), so x and z have unit stride along l and the
        result is a transposed view of a (b, d_model, l) tensor: no copies where the caller's tokens are the
        transpose of an image (MMA) or the scan wants (b, d, l) rows.
        """
        xz = self._proj(self.in_proj, hidden_states.transpose(1, 2))  # (b, 2 d_inner, l)
        x, z = xz.chunk(2, dim=1)
        fwd = (self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        bwd = (self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b) if self.bimamba_type == 'v2' \
            else None
        y = self._lean(x, z, *fwd, reverse=False) if self.lean_memory and torch.is_grad_enabled() else None
        if y is not None:
            if bwd is not None:
                y = y + self._lean(x, z, *bwd, reverse=True)
        else:
            y = self._scan(x, z, *fwd)
            if bwd is not None:
                y = y + self._scan(x.flip(-1), z.flip(-1), *bwd).flip(-1)
        return self._proj(self.out_proj, y).transpose(1, 2)

    @staticmethod
    def _proj(linear, x):
        """``linear`` applied channel-first: (out, in) @ (b, in, l) (+ bias) -> (b, out, l)."""
        y = channel_first_matmul(linear.weight, x)
        return y if linear.bias is None else y + linear.bias[:, None].to(y.dtype)   # autocast: stay in y's dtype

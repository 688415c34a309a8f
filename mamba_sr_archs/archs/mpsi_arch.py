"""MPSI: Mamba enhancement model for Pixel-wise Sequential Interaction image super-resolution.

He and He, arXiv 2412.07222.  Structure, parameter names and forward semantics follow the official
code (github.com/8596858/COMP5329-Project @ d493be8, ``basicsr/archs/new_arch.py``, class ``MPSI``)
so that official checkpoints load with ``load_state_dict(sd, strict=True)``:

* shallow feature: ``conv_first`` (3x3 conv);
* deep feature: ``ResidualGroup``s of ``SAMB`` blocks that alternate a Spatial Transformer Block
  (STB, even block index: two rectangular-window attention branches on half the channels each, one
  with (8, 32) windows and one with (32, 8) windows, plus a depthwise-conv branch on V; every
  fourth STB shifts its windows) and a Channel-Mamba Block (CMB, odd index: bidirectional Mamba on
  the pixel sequence plus a depthwise-conv branch); every block ends with the Spatial-Gate FFN;
* the Mamba Channel Recursion Module (MCRM) of each group: the average-pooled feature taken along
  the depth of the group forms a token sequence, a unidirectional Mamba runs over it, and an MLP +
  sigmoid on its last output rescales the group output channel-wise before the group's conv;
* reconstruction: ``pixelshuffledirect`` (lightweight SR, the published setting) or ``pixelshuffle``.

Where the paper's prose and the code differ, the code is followed:

* MCRM: the code tests ``index % 2 == 0`` with an ``index`` that is never incremented, so a pooled
  token is taken before *every* block (not every second one) plus once after the last block: the
  MCRM Mamba sees ``depth + 1`` tokens (19 in the published config).  Reproduced.
* The CMB's Mamba runs on the block input tokens, not on the ``qkv`` projection: ``qkv`` (a single
  ``dim -> dim`` Linear) only feeds the depthwise-conv branch; ``temperature`` is never used.
* The dynamic position bias (DPB) is degenerate in the published config: each attention branch has
  30 channels, builds ``DynamicPosBias(30 // 4)`` whose hidden width is ``7 // 4 = 1``, and a
  LayerNorm over one feature returns its bias, so the bias is a per-head constant that softmax
  cancels.  Implemented in general (it is not degenerate for wider models).
* Window attention zero-pads q, k, v (after the qkv Linear) to multiples of ``max(split_size)`` on
  both axes; padded keys are not masked (the shift mask only separates rolled regions), so outputs
  depend on this padding.  Reproduced.
* The official ``_init_weights`` re-initialises every ``nn.Linear``, including those inside Mamba
  (``dt_proj.bias`` becomes 0).  Reproduced, so training from scratch matches the official recipe.
* Unsupported ``upsampler`` values raise ``ValueError`` (the official forward silently returns the
  normalised input unchanged).

Tensors that the official model carries but this one does not (a deliberate choice):

* ``Spatial_Attention.rpe_biases`` / ``relative_position_index`` are constants of the window shape:
  kept as non-persistent buffers (recomputed at construction, moved by ``.to()``, not saved).
* ``attn_mask_0`` / ``attn_mask_1`` of the shifted blocks are computed in the official code for
  ``img_size`` only (and recomputed for any other padded size); here they are computed for the
  actual padded input size and cached per (size, device, dtype) in a small LRU shared by the blocks
  of a group.  ``img_size`` therefore has no effect on the output.
* Loading an official state dict drops exactly these keys (after checking their shapes and, for
  the position tables, their values against the ones computed here); they are still reported as
  unexpected where this model would not have them (e.g. a mask in an unshifted block), so a
  mismatched config is caught by ``strict=True``.

Parameters that never influence the output are kept as real parameters so that official
checkpoints load strictly and our own ``state_dict()`` round-trips: ``Channel_Mamba_Block``'s
``temperature``, the ``depth + 1`` BatchNorm layers ``ResidualGroup.seq``, the backward-direction
``*_b`` parameters of the MCRM's unidirectional Mamba (the vendored mamba_ssm always creates them),
and the degenerate DPB weights.  They receive no (or only rounding-level) gradients.
"""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils import checkpoint

from .._registry import register_arch
from .mamba_layer import Mamba
from .upsamplers import Upsample, UpsampleOneStep

__all__ = ['MPSI', 'RECOMPUTED_BUFFERS', 'is_recomputed_key']

#: Official state-dict entries (by last name component) that this implementation recomputes and
#: drops on load: position tables of the window attention and the img_size-specific shift masks.
RECOMPUTED_BUFFERS = ('attn_mask_0', 'attn_mask_1', 'rpe_biases', 'relative_position_index')


def is_recomputed_key(key):
    """True for an official MPSI state-dict key that this module recomputes instead of storing
    (e.g. to silence BasicSR's 'loaded net - current net' key report for official checkpoints)."""
    return key.rsplit('.', 1)[-1] in RECOMPUTED_BUFFERS


# ---------------------------------------------------------------------------------------------- helpers
class DropPath(nn.Module):
    """Stochastic depth per sample (as timm's ``DropPath``, survivors scaled by 1 / keep_prob)."""

    def __init__(self, drop_prob=0.):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class ToTokens(nn.Module):
    """(B, C, H, W) -> (B, H*W, C)."""

    def forward(self, x):
        return x.flatten(2).transpose(1, 2)


def to_image(x, h, w):
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def window_partition(x, h_sp, w_sp, num_heads):
    """(B, H, W, C) -> (B * nW, heads, h_sp * w_sp, C // heads); windows in raster order."""
    b, h, w, c = x.shape
    x = x.view(b, h // h_sp, h_sp, w // w_sp, w_sp, num_heads, c // num_heads)
    return x.permute(0, 1, 3, 5, 2, 4, 6).reshape(-1, num_heads, h_sp * w_sp, c // num_heads)


def window_reverse(x, h_sp, w_sp, h, w):
    """(B * nW, heads, h_sp * w_sp, d) -> (B, H, W, heads * d)."""
    nh, nw = h // h_sp, w // w_sp
    heads, d = x.shape[1], x.shape[3]
    x = x.view(-1, nh, nw, heads, h_sp, w_sp, d)
    return x.permute(0, 1, 4, 2, 5, 3, 6).reshape(-1, h, w, heads * d)


def shift_window_mask(h, w, win, shift, device=None, dtype=torch.float32):
    """Swin-style mask for windows of size ``win = (wh, ww)`` rolled by ``-shift = -(sh, sw)``.

    Tokens of the same window that come from different regions of the rolled image get -100.
    Returns (nW, wh * ww, wh * ww).  Region boundaries use Python slice semantics exactly as the
    official ``calculate_mask`` (three slices per axis).
    """
    (wh, ww), (sh, sw) = win, shift
    label = torch.zeros(h, w, device=device)
    cnt = 0
    for hs in (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)):
        for ws in (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)):
            label[hs, ws] = cnt
            cnt += 1
    label = label.view(h // wh, wh, w // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    diff = label[:, None, :] != label[:, :, None]
    return torch.zeros(diff.shape, device=device, dtype=dtype).masked_fill_(diff, -100.0)


class ShiftMaskCache:
    """Small LRU of shift-window masks keyed by (padded size, device, dtype), shared by the
    shifted blocks of one residual group (they all use the same windows and shifts)."""

    def __init__(self, max_entries=4):
        self.max_entries = max_entries
        self._store = OrderedDict()

    def get(self, h, w, split_size, shift_size, device, dtype):
        key = (h, w, tuple(split_size), tuple(shift_size), str(device), dtype)
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key]
        s0, s1 = split_size
        t0, t1 = shift_size
        masks = (shift_window_mask(h, w, (s0, s1), (t0, t1), device, dtype),
                 shift_window_mask(h, w, (s1, s0), (t1, t0), device, dtype))
        self._store[key] = masks
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)
        return masks

    def clear(self):
        self._store.clear()

    def __deepcopy__(self, memo):
        return ShiftMaskCache(self.max_entries)


def _pop_checked(state_dict, key, expected, error_msgs, check_values=True):
    """Remove a recomputable tensor from an incoming state dict; report a shape/value mismatch."""
    if key not in state_dict:
        return
    value = state_dict.pop(key)
    if tuple(value.shape) != tuple(expected.shape):
        error_msgs.append(f'size mismatch for {key}: copying a param with shape {tuple(value.shape)} from '
                          f'checkpoint, the shape computed by this model is {tuple(expected.shape)} '
                          f'(different split_size/img_size in the checkpoint config?).')
    elif check_values and not torch.equal(value.detach().cpu().to(expected.dtype), expected.detach().cpu()):
        error_msgs.append(f'value mismatch for {key}: the checkpoint holds a different constant table than '
                          f'this model computes (different split_size in the checkpoint config?).')


# ---------------------------------------------------------------------------------------------- FFN
class SpatialGate(nn.Module):
    """Spatial gate of SGFN: split channels in two halves, gate the first with a LayerNorm +
    depthwise 3x3 conv of the second (``dim`` = half of the hidden width)."""

    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim)

    def forward(self, x, h, w):
        x1, x2 = x.chunk(2, dim=-1)
        x2 = self.conv(to_image(self.norm(x2), h, w)).flatten(2).transpose(1, 2)
        return x1 * x2


class SGFN(nn.Module):
    """Spatial-Gate Feed-Forward Network: Linear -> GELU -> spatial gate -> Linear (hidden/2 -> out)."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.sg = SpatialGate(hidden_features // 2)
        self.fc2 = nn.Linear(hidden_features // 2, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x, h, w):
        x = self.drop(self.act(self.fc1(x)))
        x = self.drop(self.sg(x, h, w))
        return self.drop(self.fc2(x))


class Mlp(nn.Module):
    """Two-layer MLP (Linear -> GELU -> Linear), the MCRM gate network."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


# ---------------------------------------------------------------------------------------------- STB
class DynamicPosBias(nn.Module):
    """Dynamic relative position bias (CrossFormer): an MLP maps each (dy, dx) offset to one bias per
    head.  Hidden width ``dim // 4``; ``residual`` adds skip connections around the hidden layers."""

    def __init__(self, dim, num_heads, residual):
        super().__init__()
        self.residual = residual
        self.num_heads = num_heads
        self.pos_dim = dim // 4
        self.pos_proj = nn.Linear(2, self.pos_dim)
        self.pos1 = self._layer(self.pos_dim, self.pos_dim)
        self.pos2 = self._layer(self.pos_dim, self.pos_dim)
        self.pos3 = self._layer(self.pos_dim, num_heads)

    @staticmethod
    def _layer(dim, out):
        return nn.Sequential(nn.LayerNorm(dim), nn.ReLU(inplace=True), nn.Linear(dim, out))

    def forward(self, biases):
        pos = self.pos_proj(biases)
        if self.residual:
            pos = pos + self.pos1(pos)
            pos = pos + self.pos2(pos)
            return self.pos3(pos)
        return self.pos3(self.pos2(self.pos1(pos)))


class SpatialWindowAttention(nn.Module):
    """Multi-head self-attention inside rectangular windows (official ``Spatial_Attention``).

    ``idx = 0``: windows of ``split_size[0] x split_size[1]`` (H x W); ``idx = 1``: transposed.
    Input q, k, v of shape (B, H, W, C) with H, W multiples of the window; output (B, H, W, C).
    """

    def __init__(self, dim, idx, split_size=(8, 8), dim_out=None, num_heads=6, attn_drop=0., proj_drop=0.,
                 qk_scale=None, position_bias=True):
        super().__init__()
        if idx not in (0, 1):
            raise ValueError(f'idx must be 0 or 1, got {idx}')
        self.dim = dim
        self.dim_out = dim_out or dim
        self.split_size = split_size
        self.num_heads = num_heads
        self.idx = idx
        self.position_bias = position_bias
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        self.H_sp, self.W_sp = (split_size[0], split_size[1]) if idx == 0 else (split_size[1], split_size[0])

        if position_bias:
            self.pos = DynamicPosBias(dim // 4, num_heads, residual=False)
            # Non-persistent: pure functions of the window shape (see module docstring).
            self.register_buffer('rpe_biases', self._rpe_biases(), persistent=False)
            self.register_buffer('relative_position_index', self._relative_position_index(), persistent=False)
        self.attn_drop = nn.Dropout(attn_drop)

    def _rpe_biases(self):
        """All (dy, dx) offsets in the window, (2*H_sp-1)*(2*W_sp-1) rows of float (dy, dx)."""
        dy = torch.arange(1 - self.H_sp, self.H_sp)
        dx = torch.arange(1 - self.W_sp, self.W_sp)
        return torch.stack(torch.meshgrid(dy, dx, indexing='ij')).flatten(1).t().contiguous().float()

    def _relative_position_index(self):
        """(N, N) int64 index of the offset of token j relative to token i into ``rpe_biases``."""
        coords = torch.stack(torch.meshgrid(torch.arange(self.H_sp), torch.arange(self.W_sp), indexing='ij'))
        coords = coords.flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
        return (rel[..., 0] + self.H_sp - 1) * (2 * self.W_sp - 1) + (rel[..., 1] + self.W_sp - 1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if self.position_bias:
            _pop_checked(state_dict, prefix + 'rpe_biases', self.rpe_biases, error_msgs)
            _pop_checked(state_dict, prefix + 'relative_position_index', self.relative_position_index, error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, q, k, v, mask=None):
        b, h, w, _ = q.shape
        q, k, v = (window_partition(t, self.H_sp, self.W_sp, self.num_heads) for t in (q, k, v))
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B*nW, heads, N, N)
        if self.position_bias:
            n = self.H_sp * self.W_sp
            pos = self.pos(self.rpe_biases)  # (offsets, heads)
            bias = pos[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
            attn = attn + bias.unsqueeze(0)
        if mask is not None:
            n_win, n = mask.shape[0], attn.shape[-1]
            attn = (attn.view(-1, n_win, self.num_heads, n, n) + mask[None, :, None]).view(-1, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        return window_reverse(attn @ v, self.H_sp, self.W_sp, h, w)


class AdaptiveSpatialAttention(nn.Module):
    """Spatial mixer of the STB (official ``Adaptive_Spatial_Attention``, after CAT/DAT).

    qkv Linear; q, k, v zero-padded to multiples of ``max(split_size)``; half the channels attend in
    ``split_size`` windows and half in transposed windows (both rolled by ``shift_size`` in the
    shifted blocks, with masks for the rolled regions); plus a depthwise-conv + BN + GELU branch on
    the unpadded V; the sum goes through ``proj``.
    """

    def __init__(self, dim, num_heads, reso=64, split_size=(8, 8), shift_size=(1, 2), qkv_bias=False,
                 qk_scale=None, drop=0., attn_drop=0., rg_idx=0, b_idx=0, mask_cache=None):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.split_size = tuple(split_size)
        self.shift_size = tuple(shift_size)
        self.b_idx = b_idx
        self.rg_idx = rg_idx
        self.patches_resolution = reso  # only sizes the official img_size-specific mask buffers
        if not (0 <= shift_size[0] < split_size[0] and 0 <= shift_size[1] < split_size[1]):
            raise ValueError('shift_size must lie in [0, split_size)')
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.branch_num = 2
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)
        self.attns = nn.ModuleList([
            SpatialWindowAttention(dim // 2, idx=i, split_size=split_size, num_heads=num_heads // 2,
                                   dim_out=dim // 2, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop,
                                   position_bias=True) for i in range(self.branch_num)
        ])
        # shift in blocks 2, 6, 10, ... of even groups and 0, 4, 8, ... of odd groups (official rule)
        self.shifted = (rg_idx % 2 == 0 and b_idx > 0 and (b_idx - 2) % 4 == 0) or (rg_idx % 2 != 0
                                                                                     and b_idx % 4 == 0)
        self.mask_cache = mask_cache if mask_cache is not None else ShiftMaskCache()
        self.dwconv = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim), nn.BatchNorm2d(dim), nn.GELU())

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if self.shifted:  # official img_size-specific masks: recomputed per input size here
            n = self.split_size[0] * self.split_size[1]
            for i in (0, 1):
                key = f'{prefix}attn_mask_{i}'
                if key in state_dict:
                    shape = tuple(state_dict.pop(key).shape)
                    if len(shape) != 3 or shape[1:] != (n, n):
                        error_msgs.append(f'size mismatch for {key}: shape {shape} in checkpoint, windows of '
                                          f'{n} tokens expected (different split_size?).')
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x, h, w):
        b, length, c = x.shape
        if length != h * w:
            raise ValueError(f'token count {length} != {h} x {w}')
        qkv = self.qkv(x).view(b, h, w, 3, c)
        v_img = qkv[..., 2, :].permute(0, 3, 1, 2)  # unpadded V for the conv branch

        size = max(self.split_size)
        pad_b, pad_r = (size - h % size) % size, (size - w % size) % size
        qkv = F.pad(qkv, (0, 0, 0, 0, 0, pad_r, 0, pad_b))  # zero q, k, v on the bottom/right
        hp, wp = h + pad_b, w + pad_r
        q, k, v = qkv.unbind(3)
        half = c // 2
        t0, t1 = self.shift_size

        if self.shifted:
            mask0, mask1 = self.mask_cache.get(hp, wp, self.split_size, self.shift_size, x.device, x.dtype)
            q0, k0, v0 = (torch.roll(t[..., :half], (-t0, -t1), dims=(1, 2)) for t in (q, k, v))
            q1, k1, v1 = (torch.roll(t[..., half:], (-t1, -t0), dims=(1, 2)) for t in (q, k, v))
            x1 = torch.roll(self.attns[0](q0, k0, v0, mask0), (t0, t1), dims=(1, 2))
            x2 = torch.roll(self.attns[1](q1, k1, v1, mask1), (t1, t0), dims=(1, 2))
        else:
            x1 = self.attns[0](q[..., :half], k[..., :half], v[..., :half])
            x2 = self.attns[1](q[..., half:], k[..., half:], v[..., half:])
        attened = torch.cat([x1[:, :h, :w], x2[:, :h, :w]], dim=-1).reshape(b, length, c)

        conv_x = self.dwconv(v_img).flatten(2).transpose(1, 2)
        return self.proj_drop(self.proj(attened + conv_x))


# ---------------------------------------------------------------------------------------------- CMB
class ChannelMambaBlock(nn.Module):
    """Channel-Mamba Block (official ``Channel_Mamba_Block``): a bidirectional (Vim ``v2``) Mamba over
    the H*W pixel sequence plus a depthwise-conv + BN + GELU branch on a Linear projection of the
    input; their sum goes through ``proj``.  ``temperature`` and ``num_heads`` have no effect
    (left over from XCiT channel attention; kept for checkpoint compatibility)."""

    def __init__(self, dim, num_heads=8, qkv_bias=False, attn_drop=0., proj_drop=0., d_state=32, d_conv=3,
                 expand=4):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))  # unused
        self.qkv = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dwconv = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim), nn.BatchNorm2d(dim), nn.GELU())
        self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand, bimamba_type='v2')

    def forward(self, x, h, w):
        mamba_x = self.mamba(x)
        conv_x = self.dwconv(to_image(self.qkv(x), h, w)).flatten(2).transpose(1, 2)
        return self.proj_drop(self.proj(mamba_x + conv_x))


# ---------------------------------------------------------------------------------------------- blocks
class SAMB(nn.Module):
    """Spatial Attention Mamba Block: pre-norm residual mixer (STB for even ``b_idx``, CMB for odd)
    followed by a pre-norm residual SGFN."""

    def __init__(self, dim, num_heads, reso=64, split_size=(2, 4), shift_size=(1, 2), expansion_factor=4.,
                 qkv_bias=False, qk_scale=None, drop=0., attn_drop=0., drop_path=0., act_layer=nn.GELU,
                 norm_layer=nn.LayerNorm, rg_idx=0, b_idx=0, mask_cache=None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.b_idx = b_idx
        if b_idx % 2 == 0:  # STB
            self.attn = AdaptiveSpatialAttention(dim, num_heads=num_heads, reso=reso, split_size=split_size,
                                                 shift_size=shift_size, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                                 drop=drop, attn_drop=attn_drop, rg_idx=rg_idx, b_idx=b_idx,
                                                 mask_cache=mask_cache)
        else:  # CMB
            self.attn = ChannelMambaBlock(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                          proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.ffn = SGFN(dim, int(dim * expansion_factor), dim, act_layer=act_layer)
        self.norm2 = norm_layer(dim)

    def forward(self, x, x_size):
        h, w = x_size
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.ffn(self.norm2(x), h, w))


class ResidualGroup(nn.Module):
    """``depth`` SAMB blocks, the Mamba Channel Recursion Module (MCRM) and a conv, with a residual.

    MCRM (paper Sec. 3): the spatial mean of the features before every block and after the last one
    (``depth + 1`` tokens, see the module docstring) -> LayerNorm -> unidirectional Mamba along the
    depth axis -> last output -> Mlp -> sigmoid = channel gate on the group output.
    """

    def __init__(self, dim, reso, num_heads, split_size=(2, 4), expansion_factor=4., qkv_bias=False, qk_scale=None,
                 drop=0., attn_drop=0., drop_paths=None, act_layer=nn.GELU, norm_layer=nn.LayerNorm, depth=2,
                 use_chk=False, resi_connection='1conv', rg_idx=0):
        super().__init__()
        self.use_chk = use_chk
        self.reso = reso
        drop_paths = drop_paths if drop_paths is not None else [0.] * depth
        mask_cache = ShiftMaskCache()
        self.blocks = nn.ModuleList([
            SAMB(dim=dim, num_heads=num_heads, reso=reso, split_size=split_size,
                 shift_size=[split_size[0] // 2, split_size[1] // 2], expansion_factor=expansion_factor,
                 qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop, attn_drop=attn_drop, drop_path=drop_paths[i],
                 act_layer=act_layer, norm_layer=norm_layer, rg_idx=rg_idx, b_idx=i, mask_cache=mask_cache)
            for i in range(depth)
        ])
        # Unused by the official forward (kept for checkpoint compatibility).
        self.seq = nn.ModuleDict({
            f'seq_{i}': nn.Sequential(nn.BatchNorm2d(dim), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1))
            for i in range(depth + 1)
        })
        if resi_connection == '1conv':
            self.conv = nn.Conv2d(dim, dim, 3, 1, 1)
        elif resi_connection == '3conv':
            self.conv = conv3_block(dim)
        else:
            raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")
        self.mlp1 = Mlp(dim, dim * 2, dim)
        self.norm1 = norm_layer(dim)
        self.mamba = Mamba(d_model=dim, d_state=64, d_conv=4, expand=2, bimamba_type='none', backward_params=True)

    def mcrm_gate(self, tokens):
        """(B, depth+1, C) pooled descriptors -> (B, C, 1, 1) channel gate in (0, 1)."""
        y = self.mamba(self.norm1(tokens))[:, -1]
        return torch.sigmoid(self.mlp1(y))[:, :, None, None]

    def forward(self, x, x_size):
        h, w = x_size
        res = x
        pooled = []
        for blk in self.blocks:
            pooled.append(x.mean(dim=1))
            if self.use_chk and x.requires_grad:
                x = checkpoint.checkpoint(blk, x, x_size, use_reentrant=False)
            else:
                x = blk(x, x_size)
        pooled.append(x.mean(dim=1))
        x = to_image(x, h, w) * self.mcrm_gate(torch.stack(pooled, dim=1))
        return res + self.conv(x).flatten(2).transpose(1, 2)


def conv3_block(dim):
    """'3conv' residual connection: 3x3 (dim -> dim/4), 1x1, 3x3 (dim/4 -> dim) with LeakyReLU(0.2)."""
    return nn.Sequential(
        nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(negative_slope=0.2, inplace=True),
        nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(negative_slope=0.2, inplace=True),
        nn.Conv2d(dim // 4, dim, 3, 1, 1))


# ---------------------------------------------------------------------------------------------- network
@register_arch
class MPSI(nn.Module):
    """Mamba Pixel-wise Sequential Interaction network.

    Args (official names and defaults; the published lightweight config is ``embed_dim=60,
    depth=[18], num_heads=[6], expansion_factor=2, split_size=[8, 32], resi_connection='3conv',
    upsampler='pixelshuffledirect'``, 1,419,618 parameters at x2):
        img_size: size the official code precomputed shift masks for; no effect here.
        in_chans: image channels (RGB mean subtraction when 3).
        embed_dim: feature width.
        split_size: (height, width) of the attention windows of branch 0 (branch 1 is transposed).
        depth: blocks per residual group; num_heads: attention heads per group (half per branch).
        expansion_factor: SGFN hidden width factor.
        qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate: as in Swin/DAT.
        act_layer, norm_layer: activation / normalisation classes.
        use_chk: gradient checkpointing per block (training only).
        upscale: 2, 3 or 4; img_range: 1. or 255.
        resi_connection: '1conv' or '3conv'; upsampler: 'pixelshuffle' or 'pixelshuffledirect'.
    """

    def __init__(self, img_size=64, in_chans=3, embed_dim=180, split_size=(2, 4), depth=(2, 2, 2, 2),
                 num_heads=(2, 2, 2, 2), expansion_factor=4., qkv_bias=True, qk_scale=None, drop_rate=0.,
                 attn_drop_rate=0., drop_path_rate=0.1, act_layer=nn.GELU, norm_layer=nn.LayerNorm, use_chk=False,
                 upscale=2, img_range=1., resi_connection='1conv', upsampler='pixelshuffle', **kwargs):
        super().__init__()
        num_in_ch = num_out_ch = in_chans
        num_feat = 64
        self.img_range = img_range
        mean = torch.tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1) if in_chans == 3 else torch.zeros(1, 1, 1, 1)
        self.register_buffer('mean', mean, persistent=False)  # a plain attribute in the official code
        self.upscale = upscale
        self.upsampler = upsampler
        if upsampler not in ('pixelshuffle', 'pixelshuffledirect'):
            raise ValueError(f"upsampler must be 'pixelshuffle' or 'pixelshuffledirect', got {upsampler!r}")

        # 1. shallow feature extraction
        self.conv_first = nn.Conv2d(num_in_ch, embed_dim, 3, 1, 1)

        # 2. deep feature extraction
        self.num_layers = len(depth)
        self.use_chk = use_chk
        self.num_features = self.embed_dim = embed_dim
        self.before_RG = nn.Sequential(ToTokens(), nn.LayerNorm(embed_dim))
        dpr = torch.linspace(0, drop_path_rate, sum(depth)).tolist()  # stochastic depth decay rule
        self.layers = nn.ModuleDict()
        for i in range(self.num_layers):
            self.layers[f'layer_{i}'] = ResidualGroup(
                dim=embed_dim, num_heads=num_heads[i], reso=img_size, split_size=list(split_size),
                expansion_factor=expansion_factor, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate,
                attn_drop=attn_drop_rate, drop_paths=dpr[sum(depth[:i]):sum(depth[:i + 1])], act_layer=act_layer,
                norm_layer=norm_layer, depth=depth[i], use_chk=use_chk, resi_connection=resi_connection, rg_idx=i)
        self.norm = norm_layer(embed_dim)
        if resi_connection == '1conv':
            self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        elif resi_connection == '3conv':
            self.conv_after_body = conv3_block(embed_dim)
        else:
            raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")

        # 3. reconstruction
        if upsampler == 'pixelshuffle':
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True))
            self.upsample = Upsample(upscale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        else:
            self.upsample = UpsampleOneStep(upscale, embed_dim, num_out_ch, (img_size, img_size))

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        """Official init: every Linear (Mamba's included) trunc-normal(0.02) with zero bias; norms 1/0."""
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward_features(self, x):
        h, w = x.shape[-2:]
        x = self.before_RG(x)
        for layer in self.layers.values():
            x = layer(x, (h, w))
        return to_image(self.norm(x), h, w)

    def forward(self, x):
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        if self.upsampler == 'pixelshuffle':
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        else:
            x = self.upsample(x)
        return x / self.img_range + mean

"""MMA: "Activating Wider Areas in Image Super-Resolution" (Cheng, Wang, Sun, arXiv 2403.08330).

An EDSR/RCAN-style SR network whose body is a stack of MetaFormer-style MMA blocks (the paper's
recipe 1: integrate Vision Mamba into a MetaFormer-style block):

    x -> LayerNorm -> token mixer -> (+x) -> LayerNorm -> gated depthwise-conv FFN -> (+)

The token mixer is the sum of two branches that read the same normalised features:

* a bidirectional Vision-Mamba layer (Vim, ``bimamba_type='v2'``) over the H*W tokens in raster order, which gives
  every pixel an image-wide receptive field ("activating wider areas");
* a channel-attention block (RCAN/HAT CAB: conv-GELU-conv + squeeze-excitation), the complementary attention of
  recipe 3.

There are no layer scales, no drop-path and no window partition/padding: any H x W works.  Parameter names follow
the official code (``body.<i>.norm1.body.weight``, ``body.<i>.attn.mamba.mamba.*``, ``...channel_attention.cab.*``,
``...ffn.project_in``...) so official checkpoints load with ``strict=True``.  The official class names are kept as
aliases (``MLPMixer``, ``HybridAttBlock``, ``MambaLayer``, ``CAB``, ``FeedForward``).
"""
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._registry import register_arch
from .mamba_layer import Mamba
from .upsamplers import Upsample

logger = logging.getLogger('mamba_sr_archs')

# Keys that official option files pass in ``network_g`` but the official ``MMA.__init__`` does not take
# (``res_scale: 0.1`` in options/test/MMA/test_MMA_x3.yml).  They have no effect; we accept them with a warning.
IGNORED_OFFICIAL_KWARGS = ('res_scale',)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map (Restormer-style, eps 1e-5, biased variance).

    ``layer_norm_type='WithBias'`` (the one MMA uses) is a standard LayerNorm with weight and bias;
    ``'BiasFree'`` scales by 1/std without removing the mean, as in Restormer.
    """

    def __init__(self, dim, layer_norm_type='WithBias', eps=1e-5):
        super().__init__()
        if layer_norm_type == 'WithBias':
            self.body = nn.LayerNorm(dim, eps=eps)
        elif layer_norm_type == 'BiasFree':
            self.body = BiasFreeLayerNorm(dim, eps=eps)
        else:
            raise ValueError(f"layer_norm_type must be 'WithBias' or 'BiasFree', got {layer_norm_type!r}")

    def forward(self, x):
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class BiasFreeLayerNorm(nn.Module):
    """x / sqrt(var(x) + eps) * weight over the last axis (no centring, no bias)."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.var(-1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(var + self.eps) * self.weight


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel gate (RCAN): x * sigmoid(W2 relu(W1 avgpool(x)))."""

    def __init__(self, num_feat, squeeze_factor=16):
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, num_feat // squeeze_factor, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // squeeze_factor, num_feat, 1),
            nn.Sigmoid())

    def forward(self, x):
        return x * self.attention(x)


class ChannelAttentionBlock(nn.Module):
    """CAB (HAT): 3x3 conv (C -> C/compress) - GELU - 3x3 conv (-> C) - channel attention.

    MMA uses compress_ratio 4 and squeeze_factor 30 (so num_feat // 30 squeeze channels: 6 at C=192, 1 at C=48).
    """

    def __init__(self, num_feat, compress_ratio=4, squeeze_factor=30):
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat // compress_ratio, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(num_feat // compress_ratio, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze_factor))

    def forward(self, x):
        return self.cab(x)


class VisionMambaMixer(nn.Module):
    """Bidirectional Vim layer on an image: (B, C, H, W) -> H*W tokens in raster order -> Mamba v2 -> (B, C, H, W).

    The forward and the backward (reversed-sequence) scans have separate conv1d / x_proj / dt_proj / A / D
    (the ``*_b`` parameters) and share in_proj / out_proj; their outputs are summed (Vim's bidirectional layer).
    """

    def __init__(self, dim, d_state=16, d_conv=4, expand=2):
        super().__init__()
        self.dim = dim
        self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand, bimamba_type='v2')

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = x.reshape(b, c, h * w).transpose(1, 2)  # (b, h*w, c), row-major scan order
        return self.mamba(tokens).transpose(1, 2).reshape(b, c, h, w)


class HybridTokenMixer(nn.Module):
    """MMA token mixer (recipe 3): Vision-Mamba branch + channel-attention branch, summed."""

    def __init__(self, dim, compress_ratio=4, squeeze_factor=30):
        super().__init__()
        self.mamba = VisionMambaMixer(dim)
        self.channel_attention = ChannelAttentionBlock(dim, compress_ratio, squeeze_factor)

    def forward(self, x):
        return self.mamba(x) + self.channel_attention(x)


class GatedDConvFFN(nn.Module):
    """Gated depthwise-conv feed-forward network (Restormer GDFN).

    1x1 conv to 2*hidden, 3x3 depthwise conv, split in two halves, gelu(x1) * x2, 1x1 conv back to dim;
    hidden = int(dim * ffn_expansion_factor) (510 at dim 192 with factor 2.66).
    """

    def __init__(self, dim, ffn_expansion_factor=2.66, bias=True):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x):
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class MMABlock(nn.Module):
    """MetaFormer-style MMA block (recipe 1): x + mixer(norm1(x)), then + ffn(norm2(x)); no layer scale."""

    def __init__(self, dim, ffn_expansion_factor=2.66, bias=True, layer_norm_type='WithBias'):
        super().__init__()
        self.dim = dim
        self.norm1 = ChannelLayerNorm(dim, layer_norm_type)
        self.attn = HybridTokenMixer(dim)
        self.norm2 = ChannelLayerNorm(dim, layer_norm_type)
        self.ffn = GatedDConvFFN(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


@register_arch
class MMA(nn.Module):
    """MMA super-resolution network.

    conv_first (shallow features) -> body (num_block MMA blocks) -> conv_after_body, + shallow features
    (global residual) -> pixel-shuffle upsampler -> conv_last.  Input is mean-shifted and scaled by img_range,
    the output is shifted back.

    Args (the official ``network_g`` keys):
        num_in_ch, num_out_ch: image channels.
        num_feat: feature width C (192 for MMA, 48 for MMA-T).
        num_block: number of MMA blocks (24 for MMA).
        upscale: 2^n or 3.
        img_range: image range the network works in (official configs use 1.0).
        rgb_mean: per-channel mean subtracted from the input (3 values).
        **kwargs: only keys that official option files pass without effect (``res_scale``) are accepted, with a
            warning; any other key raises TypeError.
    """

    def __init__(self, num_in_ch, num_out_ch, num_feat=64, num_block=16, upscale=4, img_range=255.,
                 rgb_mean=(0.4488, 0.4371, 0.4040), **kwargs):
        super().__init__()
        for key, value in kwargs.items():
            if key not in IGNORED_OFFICIAL_KWARGS:
                raise TypeError(f"MMA.__init__() got an unexpected keyword argument '{key}'")
            logger.warning(f'MMA: ignoring {key}={value!r}: the official option files pass it, but the official '
                           f'MMA has no such argument and it has no effect.')
        self.upscale = upscale
        self.img_range = img_range
        # Not a parameter and not in the state_dict (as in the official code); a buffer so that it follows .to().
        self.register_buffer('mean', torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[MMABlock(num_feat) for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x):
        mean = self.mean.to(x)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.body(x)) + x
        x = self.conv_last(self.upsample(x))
        return x / self.img_range + mean


# Official class names, for readers comparing with the reference code.
MLPMixer = MMABlock
HybridAttBlock = HybridTokenMixer
MambaLayer = VisionMambaMixer
CAB = ChannelAttentionBlock
FeedForward = GatedDConvFFN

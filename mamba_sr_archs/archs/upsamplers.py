"""Sub-pixel reconstruction heads shared by the networks (module layout as BasicSR's, so keys match)."""
import math

import torch.nn as nn


class Upsample(nn.Sequential):
    """Classic SR head: (conv C -> 4C, PixelShuffle(2)) per factor 2 for scales 2^n, or conv C -> 9C +
    PixelShuffle(3) for scale 3."""

    def __init__(self, scale, num_feat):
        layers = []
        if scale > 0 and (scale & (scale - 1)) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f'upscale {scale} is not supported; supported: 2^n and 3.')
        super().__init__(*layers)
        self.scale = scale
        self.num_feat = num_feat


class UpsampleOneStep(nn.Sequential):
    """Pixel-shuffle-direct head of lightweight SR: one 3x3 conv to scale^2 * out channels + PixelShuffle."""

    def __init__(self, scale, num_feat, num_out_ch, input_resolution=None):
        super().__init__(nn.Conv2d(num_feat, scale**2 * num_out_ch, 3, 1, 1), nn.PixelShuffle(scale))
        self.num_feat = num_feat
        self.input_resolution = input_resolution

"""Inference helpers shared by the BasicSR model classes and ``basicsr infer``.

* :func:`tiled_forward`: overlapping tiles, blended with linear ramps over the overlap, so peak
  memory is bounded by the tile size, not the image.
* :func:`self_ensemble_forward`: the x8 geometric self-ensemble (flips and transposes, averaged).
"""
import torch


def _axis_windows(size, tile, pad):
    """(window_start, window_end) per tile along one axis: cores of ``tile`` pixels at stride ``tile``,
    each widened by up to ``pad`` pixels of context on both sides (clipped to the image)."""
    return [(max(0, s - pad), min(size, s + tile + pad)) for s in range(0, size, tile)]


def _ramp(length, lead, trail, device, dtype):
    """1-D blending weights for a window: linear ramp up over ``lead`` overlap pixels, flat 1, then ramp
    down over ``trail`` pixels.  Weights are > 0 everywhere and 1 on the tile's core."""
    w = torch.ones(length, device=device, dtype=dtype)
    if lead > 0:
        w[:lead] = torch.arange(1, lead + 1, device=device, dtype=dtype) / (lead + 1)
    if trail > 0:
        w[length - trail:] = torch.arange(trail, 0, -1, device=device, dtype=dtype) / (trail + 1)
    return w


@torch.no_grad()
def tiled_forward(net, img, scale, tile_size, tile_pad=16):
    """Run ``net`` on ``img`` (n, c, h, w) tile by tile and blend the overlaps.

    Each tile is a ``tile_size`` core plus ``tile_pad`` context pixels on every side; in the output,
    overlapping context regions are averaged with linear ramp weights (seamless, no hard edges).
    Returns (n, c_out, h * scale, w * scale) on ``img``'s device.
    """
    if tile_size <= 0:
        raise ValueError(f'tile_size must be positive, got {tile_size}')
    if tile_pad < 0:
        raise ValueError(f'tile_pad must be >= 0, got {tile_pad}')
    n, _, h, w = img.shape
    if tile_size >= h and tile_size >= w:
        return net(img)
    out = weight = None
    for y0, y1 in _axis_windows(h, tile_size, tile_pad):
        for x0, x1 in _axis_windows(w, tile_size, tile_pad):
            tile_out = net(img[:, :, y0:y1, x0:x1])
            if out is None:
                out = img.new_zeros(n, tile_out.shape[1], h * scale, w * scale, dtype=torch.float32)
                weight = img.new_zeros(1, 1, h * scale, w * scale, dtype=torch.float32)
            # Overlap with the neighbours = the context taken on each side (0 at the image border).
            wy = _ramp((y1 - y0) * scale, (min(tile_pad, y0) if y0 > 0 else 0) * scale,
                       (tile_pad if y1 < h else 0) * scale, out.device, out.dtype)
            wx = _ramp((x1 - x0) * scale, (min(tile_pad, x0) if x0 > 0 else 0) * scale,
                       (tile_pad if x1 < w else 0) * scale, out.device, out.dtype)
            wyx = wy[:, None] * wx[None, :]
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += tile_out.float() * wyx
            weight[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += wyx
    return (out / weight).to(img.dtype)


_TRANSFORMS = [(t, f) for t in (False, True) for f in ((), (-1, ), (-2, ), (-2, -1))]


@torch.no_grad()
def self_ensemble_forward(forward, img):
    """x8 self-ensemble: average ``forward`` over the 8 flips/transposes of ``img`` (undone on outputs)."""
    acc = None
    for transpose, flip in _TRANSFORMS:
        x = img.transpose(-1, -2) if transpose else img
        x = x.flip(flip) if flip else x
        y = forward(x)
        y = y.flip(flip) if flip else y
        y = y.transpose(-1, -2) if transpose else y
        acc = y.float() if acc is None else acc + y.float()
    return (acc / len(_TRANSFORMS)).to(img.dtype)


def sr_forward(net, img, scale, tile_size=None, tile_pad=16, self_ensemble=False):
    """Whole-image or tiled forward, optionally with the x8 self-ensemble."""

    def once(x):
        if tile_size:
            return tiled_forward(net, x, scale, tile_size, tile_pad)
        with torch.no_grad():
            return net(x)

    return self_ensemble_forward(once, img) if self_ensemble else once(img)

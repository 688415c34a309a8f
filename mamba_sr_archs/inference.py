"""Inference helpers shared by the BasicSR model classes and ``basicsr infer``.

* :func:`tiled_forward`: overlapping tiles, blended with linear ramps over the overlap, so peak
  memory is bounded by the tile size, not the image.
* :func:`self_ensemble_forward`: the x8 geometric self-ensemble (flips and transposes, averaged).
"""
import torch


def _axis_tiles(size, tile, pad):
    """(core_start, core_end, window_start, window_end) per tile along one axis: cores of ``tile``
    pixels at stride ``tile``, each widened by up to ``pad`` context pixels on both sides."""
    return [(s, min(size, s + tile), max(0, s - pad), min(size, s + tile + pad)) for s in range(0, size, tile)]


def _blend_weights(core0, core1, win0, win1, size, pad, scale, device):
    """1-D weights of one tile's output pixels (output resolution).

    Neighbouring tiles cross-fade linearly over the central half of their overlap, ``pad / 2`` on each
    side of the core boundary, so a tile only contributes at least ``pad / 2`` pixels away from its own
    window edge (where zero padding corrupts its output); the weights of all tiles sum to 1 everywhere.
    """
    half = pad / 2
    pos = (torch.arange(win0 * scale, win1 * scale, device=device, dtype=torch.float32) + 0.5) / scale
    w = torch.ones_like(pos)
    if half > 0:
        if core0 > 0:
            w = w * ((pos - (core0 - half)) / (2 * half)).clamp(0, 1)
        if core1 < size:
            w = w * (((core1 + half) - pos) / (2 * half)).clamp(0, 1)
    else:  # no overlap: hard cut at the core boundaries
        w = ((pos >= core0) & (pos < core1)).float()
    return w


@torch.no_grad()
def tiled_forward(net, img, scale, tile_size, tile_pad=16):
    """Run ``net`` on ``img`` (n, c, h, w) tile by tile and blend the overlaps.

    Each tile is a ``tile_size`` core plus ``tile_pad`` context pixels on every side; neighbouring
    outputs are cross-faded over the middle of their overlap (no hard seams).  The result equals the
    whole-image output wherever the network's receptive-field radius is at most ``tile_pad / 2``.
    Peak memory is bounded by the tile (plus the output image).  Returns (n, c_out, h*scale, w*scale).
    """
    if tile_size <= 0:
        raise ValueError(f'tile_size must be positive, got {tile_size}')
    if tile_pad < 0:
        raise ValueError(f'tile_pad must be >= 0, got {tile_pad}')
    n, _, h, w = img.shape
    if tile_size >= h and tile_size >= w:
        return net(img)
    out = None
    for cy0, cy1, y0, y1 in _axis_tiles(h, tile_size, tile_pad):
        wy = _blend_weights(cy0, cy1, y0, y1, h, tile_pad, scale, img.device)
        for cx0, cx1, x0, x1 in _axis_tiles(w, tile_size, tile_pad):
            tile_out = net(img[:, :, y0:y1, x0:x1])
            if out is None:
                out = img.new_zeros(n, tile_out.shape[1], h * scale, w * scale, dtype=torch.float32)
            wx = _blend_weights(cx0, cx1, x0, x1, w, tile_pad, scale, img.device)
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += tile_out.float() * (wy[:, None] * wx[None, :])
    return out.to(img.dtype)


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

"""``basicsr infer``: upscale images with a trained network, no ground truth needed.

Two ways to name the network::

    basicsr infer -opt TEST.yml -i INPUT -o OUTDIR
        network_g, path.pretrain_network_g / path.param_key_g / path.strict_load_g, scale and an
        optional ``tile: {tile_size, tile_pad}`` (top level or under ``val``) come from the file.
    basicsr infer --arch NAME --scale S --weights FILE.pth [--variant V] [--net-opt k=v ...] -i INPUT -o OUTDIR
        NAME is any network of BasicSR's ARCH_REGISTRY; ``--variant`` picks a published configuration
        of this package's networks (see ``PRESETS``), ``--net-opt`` overrides single constructor keys
        (values are parsed as YAML: ``depths=[2,2]``, ``img_range=1.``).

INPUT is one image or a folder (every image file in it, sorted by name, not recursive).  Output
names are ``<stem><suffix>.<ext>`` in OUTDIR; the default suffix is ``_x<scale>`` (``baby_x4.png``),
``--suffix ''`` keeps the input stem.  Image handling:

* 8-bit and 16-bit inputs (16-bit stays 16-bit where the output format allows it: png, tif);
* grayscale: run on the gray replicated to 3 channels for a 3-channel network, written back as one
  channel; a colour image through a 1-channel network runs on luma (Y), chroma is upscaled bicubically;
* RGBA: the alpha channel is upscaled bicubically and kept;
* a file that cannot be decoded (not an image, empty, truncated) is reported on stderr by name and
  skipped; the exit code is then 1.

Errors in the set-up (missing weights, unknown architecture, a checkpoint that does not fit, unsafe
output locations) are one line ``basicsr infer: error: ...`` on stderr and exit code 2.
"""
import argparse
import difflib
import inspect
import os
import resource
import sys
import time

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm', '.pnm', '.jp2')
OUTPUT_EXTS = ('png', 'jpg', 'jpeg', 'bmp', 'tif', 'tiff', 'webp')
HIGH_DEPTH_EXTS = ('png', 'tif', 'tiff')  # formats OpenCV writes at 16 bits per channel

# --------------------------------------------------------------------------------------------- presets
# Published configurations (official option files, without ``upscale``, which comes from --scale).
_MAMBAIRV2_LIGHT = dict(img_size=64, in_chans=3, img_range=1., embed_dim=48, d_state=8, depths=[5, 5, 5, 5],
                        num_heads=[4, 4, 4, 4], window_size=16, inner_rank=32, num_tokens=64, convffn_kernel_size=5,
                        mlp_ratio=1., upsampler='pixelshuffledirect', resi_connection='1conv')
_MAMBAIRV2_SR = dict(img_size=64, in_chans=3, img_range=1., d_state=16, window_size=16, inner_rank=64,
                     num_tokens=128, convffn_kernel_size=5, mlp_ratio=2., upsampler='pixelshuffle',
                     resi_connection='1conv')
_MMA = dict(num_in_ch=3, num_out_ch=3, img_range=1., rgb_mean=[0.4488, 0.4371, 0.4040])

PRESETS = {
    'MambaIRv2Light': {'light': _MAMBAIRV2_LIGHT},
    'MambaIRv2': {  # options/test/mambairv2/test_MambaIRv2_SR{Small,,Large}_x*.yml
        'S': dict(_MAMBAIRV2_SR, embed_dim=132, depths=[4] * 6, num_heads=[4] * 6),
        'B': dict(_MAMBAIRV2_SR, embed_dim=174, depths=[6] * 6, num_heads=[6] * 6),
        'L': dict(_MAMBAIRV2_SR, embed_dim=174, depths=[6] * 9, num_heads=[6] * 9),
    },
    'MMA': {
        'B': dict(_MMA, num_feat=192, num_block=24),  # options/test/MMA/test_MMA_x*.yml
        'T': dict(_MMA, num_feat=48, num_block=12),  # MMA-T (12 blocks: see options/test/MMA/test_MMA-T_x2.yml)
    },
    'MPSI': {  # options/Test/test_x*.yml
        'default': dict(img_size=64, in_chans=3, img_range=1., embed_dim=60, depth=[18], num_heads=[6],
                        expansion_factor=2, split_size=[8, 32], resi_connection='3conv',
                        upsampler='pixelshuffledirect'),
    },
}
# The variant used when --variant is not given; ``--variant none`` uses the constructor defaults.
DEFAULT_VARIANT = {'MambaIRv2Light': 'light', 'MambaIRv2': 'B', 'MMA': 'B', 'MPSI': 'default'}


class InferError(Exception):
    """A set-up problem: reported as one line, exit code 2."""


class ImageError(Exception):
    """One input that cannot be processed: reported by name, the run goes on, exit code 1."""


# --------------------------------------------------------------------------------------------- arguments
class _Parser(argparse.ArgumentParser):

    def error(self, message):
        raise InferError(f'{message} (see basicsr infer --help)')


def build_parser():
    p = _Parser(prog='basicsr infer', description='Upscale an image or a folder of images with a trained network.',
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog='Output names: <stem><suffix>.<ext>; default suffix _x<scale>. Exit codes: 0 all images '
                'written, 1 some inputs failed (named on stderr), 2 set-up error.')
    net = p.add_argument_group('network (either -opt or --arch)')
    net.add_argument('-opt', '--opt', dest='opt', metavar='TEST.yml',
                     help='BasicSR option file (network_g, path, scale, tile)')
    net.add_argument('--arch', help="network name in BasicSR's ARCH_REGISTRY (MambaIRv2Light, MMA, MPSI, MSRResNet...)")
    presets = '; '.join(f"{a}: {', '.join(v)} (default {DEFAULT_VARIANT[a]})" for a, v in PRESETS.items())
    net.add_argument('--variant', help=f"preset configuration: {presets}; 'none' = constructor defaults")
    net.add_argument('--net-opt', action='append', nargs='+', default=[], metavar='KEY=VALUE',
                     help='override a constructor argument (value parsed as YAML); repeatable')
    net.add_argument('--scale', type=int, help='upscale factor (required with --arch)')
    net.add_argument('--weights', metavar='FILE',
                     help='checkpoint (.pth/.safetensors); overrides path.pretrain_network_g')
    net.add_argument('--param-key', help="key of the weights in the checkpoint (default: path.param_key_g or 'params')")

    io = p.add_argument_group('input / output')
    io.add_argument('-i', '--input', required=True, help='an image file or a folder of images')
    io.add_argument('-o', '--output', required=True, help='output folder (created if missing; never the input folder)')
    io.add_argument('--suffix', default=None, help="appended to the input stem (default '_x<scale>')")
    io.add_argument('--ext', default='png', help=f"output format: {', '.join(OUTPUT_EXTS)} (default png)")
    io.add_argument('--overwrite', action='store_true', help='replace existing output files')
    io.add_argument('--compare', action='store_true',
                    help='also write <stem>_compare.png: bicubic | output (| ground truth with --gt)')
    io.add_argument('--gt', metavar='DIR', help='ground-truth folder for --compare (file with the same stem)')

    run = p.add_argument_group('inference')
    run.add_argument('--tile', type=int, default=None, metavar='SIZE', help='tiled inference with SIZE x SIZE tiles')
    run.add_argument('--tile-pad', type=int, default=None, metavar='P',
                     help='context pixels around each tile (default 16)')
    run.add_argument('--device', choices=('cpu', 'cuda'), default=None, help='default: cuda if available')
    prec = run.add_mutually_exclusive_group()
    prec.add_argument('--half', action='store_true', help='float16 (GPU only)')
    prec.add_argument('--bf16', action='store_true', help='bfloat16 (GPU only)')
    run.add_argument('--self-ensemble', action='store_true', help='x8 geometric self-ensemble (8x slower)')
    run.add_argument('--tf32', action='store_true',
                     help='TF32 tensor-core matmuls/convolutions (GPU only; outputs differ from fp32 by ~1e-3)')
    run.add_argument('--compile', action='store_true',
                     help='torch.compile the network: compiles once per input (or tile) size, which takes tens of '
                     'seconds to minutes, then runs faster (with --tf32 1.9-2.35x on an H100, docs/benchmarks.md); '
                     'pays off for folders of same-size images or with --tile')
    return p


def _parse_net_opts(pairs):
    import yaml

    out = {}
    for item in (x for group in pairs for x in group):
        if '=' not in item:
            raise InferError(f"--net-opt expects KEY=VALUE, got '{item}'")
        key, value = item.split('=', 1)
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


# --------------------------------------------------------------------------------------------- network
def _arch_class(name):
    from basicsr.utils.registry import ARCH_REGISTRY

    if name not in ARCH_REGISTRY:
        known = sorted(ARCH_REGISTRY._obj_map)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
        raise InferError(f"unknown architecture '{name}' ({hint})")
    return ARCH_REGISTRY.get(name)


def _scale_key(cls):
    params = inspect.signature(cls.__init__).parameters
    for key in ('upscale', 'scale'):
        if key in params:
            return key
    return 'upscale'


def _network_config(args):
    """-> (arch name, constructor kwargs, scale, weights path, param_key, strict, tile dict, self_ensemble)."""
    tile, self_ensemble, strict = {}, False, True
    if args.opt:
        if args.arch or args.variant:
            raise InferError('give either -opt or --arch/--variant, not both')
        opt = _load_yaml(args.opt)
        net_opt = dict(opt.get('network_g') or {})
        arch = net_opt.pop('type', None)
        if arch is None:
            raise InferError(f"{args.opt}: network_g: missing 'type'")
        path_opt = opt.get('path') or {}
        weights = args.weights or path_opt.get('pretrain_network_g')
        param_key = args.param_key or path_opt.get('param_key_g') or 'params'
        strict = bool(path_opt.get('strict_load_g', True))
        scale = args.scale or opt.get('scale') or net_opt.get('upscale') or net_opt.get('scale')
        tile = dict(opt.get('tile') or (opt.get('val') or {}).get('tile') or {})
        self_ensemble = bool((opt.get('val') or {}).get('self_ensemble', False))
        if weights is None:
            raise InferError(f'{args.opt}: no weights: set path.pretrain_network_g or pass --weights')
        where = f'{args.opt}: network_g'
    else:
        if not args.arch:
            raise InferError('name the network with -opt TEST.yml or --arch NAME')
        arch = args.arch
        base = arch.split('.')[-1]  # 'mamba_sr_archs.MMA' (alias when a fork owns the name) -> 'MMA'
        variant = args.variant or DEFAULT_VARIANT.get(base)
        if variant is None or variant.lower() == 'none':
            net_opt = {}
        else:
            presets = PRESETS.get(base, {})
            if variant not in presets:
                have = f"presets of {base}: {', '.join(presets)}" if presets else f'{base} has no presets'
                raise InferError(f"unknown --variant '{variant}' ({have}; 'none' = constructor defaults)")
            net_opt = dict(presets[variant])
        if args.scale is None:
            raise InferError('--scale is required with --arch')
        if args.weights is None:
            raise InferError('--weights FILE is required with --arch')
        scale, weights, param_key = args.scale, args.weights, args.param_key or 'params'
        where = f'--arch {arch}'
    if scale is None:
        raise InferError(f'{args.opt}: no scale: set scale (or network_g.upscale) or pass --scale')
    scale = int(scale)
    if scale < 1:
        raise InferError(f'scale must be >= 1, got {scale}')
    cls = _arch_class(arch)
    net_opt[_scale_key(cls)] = scale
    net_opt.update(_parse_net_opts(args.net_opt))
    from .cli import OptionError, _check_kwargs
    try:
        _check_kwargs(cls, net_opt, where)
    except OptionError as err:
        raise InferError(str(err)) from err
    if args.tile is not None:
        tile['tile_size'] = args.tile
    if args.tile_pad is not None:
        tile['tile_pad'] = args.tile_pad
    self_ensemble = self_ensemble or args.self_ensemble
    return arch, net_opt, scale, weights, param_key, strict, tile, self_ensemble


def _load_yaml(path):
    from .cli import OptionError, load_option_file

    try:
        opt = load_option_file(path)
    except OptionError as err:
        raise InferError(str(err)) from err
    if not isinstance(opt.get('network_g'), dict):
        raise InferError(f"{path}: expected a mapping with a 'network_g' section")
    return opt


def build_network(arch, net_opt, weights, param_key, strict, device, dtype):
    import torch

    from .checkpoint import CheckpointError, load_state_dict_into

    cls = _arch_class(arch)
    try:
        net = cls(**net_opt)
    except Exception as err:  # a bad value for a known key (e.g. depths/num_heads of different length)
        raise InferError(f'cannot build {arch}({", ".join(f"{k}={v!r}" for k, v in net_opt.items())}): '
                         f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}') from err
    try:
        load_state_dict_into(net, weights, strict=strict, param_key=param_key)
    except CheckpointError as err:
        # one line: the report's headline (names the file) and its first detail, first example only
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = lines[1].split('; ')[0] if len(lines) > 1 else ''
        raise InferError(f'{lines[0]} {detail}'.strip() if lines else str(err)) from err
    net.eval()
    net.to(device=device, dtype=dtype)
    for p in net.parameters():
        p.requires_grad_(False)
    in_ch = next((m.in_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)), 3)
    return net, in_ch


# --------------------------------------------------------------------------------------------- image I/O
def _quiet_opencv():
    import cv2
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass


def read_image(path):
    """Decode ``path`` -> (float32 array in [0, 1], HxW or HxWxC BGR(A), source dtype).  Raises ImageError."""
    import cv2
    import numpy as np

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageError(f'cannot read ({err.strerror})') from err
    if data.size == 0:
        raise ImageError('empty file')
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError('not a readable image (not an image, truncated or an unsupported format)')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha
        img = np.dstack([img[..., 0]] * 3 + [img[..., 1]])
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)) or min(img.shape[:2]) == 0:
        raise ImageError(f'unsupported image layout {img.shape}')
    if img.dtype == np.uint8:
        out = img.astype(np.float32) / 255.
    elif img.dtype == np.uint16:
        out = img.astype(np.float32) / 65535.
    elif img.dtype in (np.float32, np.float64):
        out = np.clip(np.nan_to_num(img.astype(np.float32)), 0, 1)
    else:
        raise ImageError(f'unsupported pixel type {img.dtype}')
    return out, img.dtype


def _to_dtype(img, dtype):
    import numpy as np
    peak = 65535. if dtype == np.uint16 else 255.
    return (np.clip(img, 0, 1) * peak).round().astype(dtype)


def write_image(path, img, dtype):
    """Encode ``img`` (float [0, 1]) as ``dtype`` to ``path`` atomically (temporary file + rename)."""
    import cv2

    ext = os.path.splitext(path)[1]
    ok, buf = cv2.imencode(ext, _to_dtype(img, dtype))
    if not ok:
        raise ImageError(f'OpenCV could not encode {os.path.basename(path)}')
    from .checkpoint import atomic_write

    atomic_write(path, lambda f: f.write(buf.tobytes()), durable=False)


def _resize(img, h, w):
    import cv2
    import numpy as np
    return np.clip(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def upscale_image(img, run, in_ch):
    """Upscale a float [0, 1] HxW / HxWx3 (BGR) / HxWx4 (BGRA) image with ``run`` (RGB HxWxC -> HxWxC).

    Gray images go through a 3-channel network replicated and come back as one channel (luma of the
    output); colour images through a 1-channel network run on Y with bicubic chroma; alpha is upscaled
    bicubically.
    """
    import cv2
    import numpy as np

    alpha = None
    if img.ndim == 3 and img.shape[2] == 4:
        img, alpha = img[..., :3], img[..., 3]
    if img.ndim == 2:
        if in_ch == 1:
            out = run(img[..., None])[..., 0]
        else:
            y = run(np.repeat(img[..., None], in_ch, axis=2))
            out = cv2.cvtColor(np.ascontiguousarray(y[..., :3]), cv2.COLOR_RGB2GRAY) if y.shape[2] >= 3 else y[..., 0]
    elif in_ch == 1:
        ycc = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)
        y = run(ycc[..., :1])[..., 0]
        crcb = _resize(ycc[..., 1:], *y.shape[:2])
        out = cv2.cvtColor(np.dstack([y, crcb]).astype(np.float32), cv2.COLOR_YCrCb2BGR)
    else:
        out = run(np.ascontiguousarray(img[..., ::-1]))[..., ::-1]
    out = np.clip(np.ascontiguousarray(out), 0, 1).astype(np.float32)
    if alpha is not None:
        a = _resize(alpha, *out.shape[:2])
        color = out if out.ndim == 3 else cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
        out = np.dstack([color, a])
    return out


def make_runner(net, scale, tile, self_ensemble, device, dtype):
    """HxWxC float32 numpy (RGB) -> network output as HxWxC float32 numpy."""
    import numpy as np
    import torch

    from .inference import sr_forward

    tile_size, tile_pad = tile.get('tile_size'), tile.get('tile_pad', 16)

    def run(x):
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).unsqueeze(0).to(device=device, dtype=dtype)
        with torch.no_grad():
            y = sr_forward(net, t, scale, tile_size, tile_pad, self_ensemble)
            return y[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()

    return run


def _panel(img, h, w, channels):
    """Crop/pad ``img`` to h x w and give it ``channels`` (1 or 3) colour channels (alpha dropped)."""
    import cv2
    import numpy as np

    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if channels == 3 and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif channels == 1 and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    img = img[:h, :w]
    if img.shape[0] < h or img.shape[1] < w:
        pad = ((0, h - img.shape[0]), (0, w - img.shape[1])) + (((0, 0), ) if img.ndim == 3 else ())
        img = np.pad(img, pad)
    return img


def compare_image(lr, sr, gt=None):
    """bicubic(lr) | sr (| gt) side by side, all at the output size, colour if any panel has colour."""
    h, w = sr.shape[:2]
    panels = [_resize(lr, h, w), sr] + ([gt] if gt is not None else [])
    channels = 3 if any(p.ndim == 3 for p in panels) else 1
    import numpy as np
    return np.concatenate([_panel(p, h, w, channels) for p in panels], axis=1)


# --------------------------------------------------------------------------------------------- planning
def list_inputs(path):
    """-> (sorted image files, number of other files skipped)."""
    if os.path.isfile(path):
        return [path], 0
    if not os.path.isdir(path):
        raise InferError(f'{path}: no such file or folder')
    files, skipped = [], 0
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith('.') or not os.path.isfile(full):
            continue
        if os.path.splitext(name)[1].lower() in IMAGE_EXTS:
            files.append(full)
        else:
            skipped += 1
    if not files:
        raise InferError(f'{path}: no image files ({", ".join(IMAGE_EXTS)})')
    return files, skipped


def _same(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def plan_outputs(inputs, in_path, out_dir, suffix, ext, compare, overwrite):
    """-> list of (input, output, compare output or None).  Refuses (InferError) unsafe or colliding plans."""
    if os.path.isdir(in_path) and os.path.isdir(out_dir) and _same(in_path, out_dir):
        raise InferError(f'output folder {out_dir} is the input folder; choose another -o')
    plan, owner = [], {}
    for f in inputs:
        stem = os.path.splitext(os.path.basename(f))[0]
        out = os.path.join(out_dir, f'{stem}{suffix}.{ext}')
        cmp = os.path.join(out_dir, f'{stem}_compare.png') if compare else None
        for target in filter(None, (out, cmp)):
            key = os.path.abspath(target)
            if key in owner:
                raise InferError(f'{os.path.basename(owner[key])} and {os.path.basename(f)} would both write '
                                 f'{target}; use --suffix or separate folders')
            owner[key] = f
            if os.path.exists(target) and any(_same(target, i) for i in inputs):
                raise InferError(f'output {target} would overwrite an input file; choose another -o or --suffix')
        plan.append((f, out, cmp))
    if not overwrite:
        existing = [t for _, o, c in plan for t in (o, c) if t and os.path.exists(t)]
        if existing:
            more = f' and {len(existing) - 1} more' if len(existing) > 1 else ''
            raise InferError(f'output file {existing[0]} already exists{more}; pass --overwrite to replace')
    return plan


def _find_gt(gt_dir, stem):
    if not gt_dir:
        return None
    for name in sorted(os.listdir(gt_dir)):
        if os.path.splitext(name)[0] == stem and os.path.splitext(name)[1].lower() in IMAGE_EXTS:
            return os.path.join(gt_dir, name)
    return None


def _peak_memory(device):
    import torch
    if device.type == 'cuda':
        return f'peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.1f} MiB'
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss = rss / 2**20 if sys.platform == 'darwin' else rss / 2**10  # bytes on macOS, KiB on Linux
    return f'peak RSS {rss:.1f} MiB'


# --------------------------------------------------------------------------------------------- main
def run(args):
    import torch

    from . import compat
    compat.apply()  # idempotent; ``import mamba_sr_archs`` normally did it already
    from . import archs  # noqa: F401  (registers this package's networks)
    from tqdm import tqdm

    _quiet_opencv()
    ext = args.ext.lower().lstrip('.')
    if ext not in OUTPUT_EXTS:
        raise InferError(f"--ext {args.ext}: unsupported output format (choose from {', '.join(OUTPUT_EXTS)})")
    if args.gt and not args.compare:
        raise InferError('--gt is only used with --compare')
    if args.gt and not os.path.isdir(args.gt):
        raise InferError(f'--gt {args.gt}: no such folder')
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise InferError('--device cuda: no CUDA device available')
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if (args.half or args.bf16) and device.type != 'cuda':
        raise InferError(f"--{'half' if args.half else 'bf16'} needs a GPU (--device cuda); on CPU run in float32")
    dtype = torch.float16 if args.half else torch.bfloat16 if args.bf16 else torch.float32
    if args.tf32 and device.type != 'cuda':
        raise InferError('--tf32 needs a GPU (--device cuda)')
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    arch, net_opt, scale, weights, param_key, strict, tile, self_ensemble = _network_config(args)
    if tile.get('tile_size') is not None and int(tile['tile_size']) <= 0:
        raise InferError(f"tile size must be positive, got {tile['tile_size']}")
    if int(tile.get('tile_pad', 16)) < 0:
        raise InferError(f"tile pad must be >= 0, got {tile['tile_pad']}")
    suffix = f'_x{scale}' if args.suffix is None else args.suffix
    inputs, skipped = list_inputs(args.input)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise InferError(f'-o {args.output} exists and is not a folder')
    plan = plan_outputs(inputs, args.input, args.output, suffix, ext, args.compare, args.overwrite)

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    net, in_ch = build_network(arch, net_opt, weights, param_key, strict, device, dtype)
    if args.compile:
        net = torch.compile(net)
    runner = make_runner(net, scale, tile, self_ensemble, device, dtype)
    os.makedirs(args.output, exist_ok=True)
    if skipped:
        print(f'basicsr infer: note: {skipped} file(s) without an image extension ignored in {args.input}',
              file=sys.stderr)

    import numpy as np
    ok, failed, start = 0, [], time.time()
    bar = tqdm(plan, desc=f'{arch} x{scale}', unit='img', file=sys.stderr, dynamic_ncols=True,
                disable=None)  # None: no bar when stderr is not a terminal (logs stay clean)
    for src, out_path, cmp_path in bar:
        name = os.path.basename(src)
        bar.set_postfix_str(name, refresh=False)
        try:
            img, src_dtype = read_image(src)
            try:
                sr = upscale_image(img, runner, in_ch)
            except RuntimeError as err:  # e.g. out of memory on a large image
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
                hint = '' if tile.get('tile_size') else ' (try --tile 256)'
                raise ImageError(f'inference failed: {str(err).splitlines()[0]}{hint}') from err
            high = src_dtype != np.uint8
            out_dtype = np.uint16 if high and ext in HIGH_DEPTH_EXTS else np.uint8
            write_image(out_path, sr, out_dtype)
            if cmp_path:
                gt_path = _find_gt(args.gt, os.path.splitext(name)[0])
                gt = None
                if gt_path:
                    try:
                        gt = read_image(gt_path)[0]
                    except ImageError as err:
                        tqdm.write(f'basicsr infer: {gt_path}: ground truth skipped: {err}', file=sys.stderr)
                write_image(cmp_path, compare_image(img, sr, gt), np.uint16 if high else np.uint8)
            ok += 1
        except (ImageError, OSError) as err:
            failed.append(src)
            msg = err.strerror if isinstance(err, OSError) and err.strerror else err
            tqdm.write(f'basicsr infer: {src}: skipped: {msg}', file=sys.stderr)
    bar.close()
    elapsed = time.time() - start
    print(f'basicsr infer: {ok} image(s) ok, {len(failed)} failed, {elapsed:.1f} s, {_peak_memory(device)}; '
          f'outputs in {args.output}')
    return 1 if failed else 0


def main(argv=None):
    """Entry point of ``basicsr infer``; returns the exit code (0 ok, 1 some inputs failed, 2 error)."""
    import torch

    argv = list(sys.argv[1:] if argv is None else argv)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except SystemExit as err:  # --help
        return err.code if isinstance(err.code, int) else 0
    except InferError as err:
        print(f'basicsr infer: error: {err}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('basicsr infer: interrupted', file=sys.stderr)
        return 130
    finally:  # --tf32 changes process-wide flags: give a calling program its own settings back
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


if __name__ == '__main__':
    sys.exit(main())

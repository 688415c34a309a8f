"""Dataset preparation: sub-image extraction, MATLAB-bicubic LR generation, LMDB creation, demo data.

Library half of ``scripts/extract_subimages.py``, ``scripts/generate_bicubic_lr.py``, ``scripts/create_lmdb.py``
and ``scripts/make_demo_data.py`` (the scripts are thin argparse wrappers, so tests call these functions directly).
It follows BasicSR 1.4.2's ``scripts/data_preparation`` pipeline (DF2K: bicubic LR, 480/240 sub-images, LMDB) and
uses BasicSR's library code for the parts it has: ``basicsr.utils.matlab_functions.imresize`` (MATLAB ``imresize``
bicubic with antialiasing), ``basicsr.data.transforms.mod_crop`` and ``basicsr.utils.lmdb_util.make_lmdb_from_imgs``.

Differences from BasicSR's scripts, all on purpose:

* Inputs are validated before anything is written; a problem raises :class:`DataPrepError` whose message names the
  offending path (the scripts print it on one line and exit with status 2).  An existing destination is never
  overwritten unless ``overwrite=True`` (then it is removed first).
* HR and LR sub-images are cut in one pass from the same HR crop positions (LR positions = HR positions / scale) and
  LR sub-images take the HR image's name, so the GT and LQ folders / LMDBs pair by name (``filename_tmpl: '{}'``).
* The LMDB map size is computed from every image's size (BasicSR extrapolates from the first image only), and can be
  given explicitly.

BasicSR is imported lazily (it pulls in torch), so ``--help`` and the argument checks stay fast.
"""
import math
import os
import os.path as osp
import shutil
import sys
import time
from functools import partial
from multiprocessing import get_context

import cv2
import numpy as np
from tqdm import tqdm

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')

# scikit-image sample images bundled inside the wheel (skimage/data), used by make_demo_data.  Natural RGB photos
# plus grey-scale textures (brick, grass, gravel) and scenes, which are converted to 3 channels.  Left out: tiny or
# synthetic images, RGBA logos, the motion-blurred clock, and the mostly black hubble/retina images.
DEMO_SOURCES = ('astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png', 'ihc.png',
                'brick.png', 'grass.png', 'gravel.png', 'camera.png', 'moon.png', 'coins.png', 'cell.png')


class DataPrepError(Exception):
    """An input or destination problem; the message names the path concerned."""


# ----------------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------------
def _basicsr():
    """Import BasicSR's helpers (after the torchvision shim that ``import basicsr`` needs on current torchvision)."""
    from mamba_sr_archs.compat import install_torchvision_shim
    install_torchvision_shim()
    from basicsr.data.transforms import mod_crop
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    from basicsr.utils.matlab_functions import imresize
    return mod_crop, imresize, make_lmdb_from_imgs


def _scandir(folder):
    """Non-hidden regular files directly in ``folder`` (what ``basicsr.utils.scandir(folder)`` yields; done with
    ``os.scandir`` so that listing inputs does not import BasicSR/torch)."""
    return [e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith('.')]


def list_images(folder):
    """Sorted image file names in ``folder``.

    Raises DataPrepError if the folder is missing, holds no image, or holds a file that is not an image
    (sub-folders and hidden files are ignored)."""
    folder = str(folder)
    if not osp.isdir(folder):
        raise DataPrepError(f'input folder does not exist: {folder}')
    names = sorted(_scandir(folder))
    bad = [n for n in names if not n.lower().endswith(IMG_EXTENSIONS)]
    if bad:
        more = f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''
        raise DataPrepError(f'non-image file in input folder: {osp.join(folder, bad[0])}{more}')
    if not names:
        raise DataPrepError(f'input folder holds no images: {folder}')
    return names


def stem(name):
    """File name without folder and extension."""
    return osp.splitext(osp.basename(name))[0]


def read_image(path, flag=cv2.IMREAD_UNCHANGED):
    """Read an image with OpenCV (BGR order, dtype kept); DataPrepError if it cannot be decoded."""
    img = cv2.imread(str(path), flag)
    if img is None:
        raise DataPrepError(f'cannot read image: {path}')
    return img


def image_size(path):
    """(height, width) of an image file, read from its header where possible (no full decode)."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            w, h = im.size
        return h, w
    except Exception:  # PIL missing or format it does not know: decode
        img = read_image(path)
        return img.shape[0], img.shape[1]


def write_image(img, path, compress_level=3):
    """Write a PNG, creating its folder: what ``basicsr.utils.img_util.imwrite`` does, done with OpenCV directly so
    that sub-image worker processes need not import BasicSR/torch."""
    path = str(path)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, compress_level]):
        raise DataPrepError(f'cannot write image: {path}')


def check_destination(path, overwrite=False, create=False):
    """Refuse an existing destination unless ``overwrite``; with ``overwrite`` remove it.

    An existing *empty* folder counts as free.  ``create`` makes the (now empty) folder."""
    path = str(path)
    if osp.lexists(path):
        occupied = not osp.isdir(path) or bool(os.listdir(path))
        if occupied and not overwrite:
            raise DataPrepError(f'destination already exists: {path} (use --overwrite to replace it)')
        if occupied:
            if osp.isdir(path) and not osp.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    if create:
        os.makedirs(path, exist_ok=True)


def _check_distinct(outputs, inputs):
    """Destinations must differ from each other and from the inputs (no output written into an input)."""
    outs = [osp.abspath(str(p)) for p in outputs]
    if len(set(outs)) != len(outs):
        dup = next(p for p in outs if outs.count(p) > 1)
        raise DataPrepError(f'the same destination is given twice: {dup}')
    for inp in inputs:
        inp = osp.abspath(str(inp))
        for out in outs:
            if out == inp or inp.startswith(out + os.sep) or out.startswith(inp + os.sep):
                raise DataPrepError(f'destination {out} overlaps the input folder {inp}')


def parse_size(text):
    """Byte count from ``'1073741824'``, ``'512M'``, ``'2G'``, ``'1T'`` (binary units)."""
    text = str(text).strip().upper().rstrip('B').rstrip('I')
    units = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}
    mult = units.get(text[-1:], 1) if text else 1
    number = text[:-1] if text[-1:] in units else text
    try:
        value = int(float(number) * mult)
    except ValueError:
        raise DataPrepError(f'cannot parse size {text!r}; use bytes or a K/M/G/T suffix') from None
    if value <= 0:
        raise DataPrepError(f'size must be positive, got {text!r}')
    return value


def _pool_map(fn, items, n_thread, desc, unit, progress):
    """Run ``fn`` over ``items`` in-process (n_thread <= 1) or in a spawn pool, with a tqdm bar; keeps order."""
    results = [None] * len(items)
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress)
    if n_thread <= 1 or len(items) <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            bar.update(1)
    else:
        # spawn, not fork: the workers use torch / OpenCV thread pools, which are not fork-safe
        with get_context('spawn').Pool(min(n_thread, len(items)), initializer=_worker_init) as pool:
            for i, res in pool.imap_unordered(partial(_indexed, fn), list(enumerate(items))):
                results[i] = res
                bar.update(1)
    bar.close()
    return results


def _indexed(fn, pair):
    i, item = pair
    return i, fn(item)


def _worker_init():
    cv2.setNumThreads(1)
    if 'torch' in sys.modules:
        sys.modules['torch'].set_num_threads(1)


# ----------------------------------------------------------------------------------------------------------------
# MATLAB bicubic
# ----------------------------------------------------------------------------------------------------------------
def bicubic_downscale(img, scale):
    """MATLAB ``imresize(mod_crop(img, scale), 1/scale, 'bicubic')`` (antialiased), rounded back to the input dtype.

    ``img`` is an integer (uint8/uint16) HxW or HxWxC array; the result is (H//scale, W//scale[, C])."""
    mod_crop, imresize, _ = _basicsr()
    if not np.issubdtype(img.dtype, np.integer):
        raise DataPrepError(f'bicubic_downscale expects an integer image, got {img.dtype}')
    max_val = float(np.iinfo(img.dtype).max)
    img = mod_crop(img, scale)
    out = imresize(img.astype(np.float64) / max_val, 1 / scale, antialiasing=True)
    expect = (img.shape[0] // scale, img.shape[1] // scale)
    assert out.shape[:2] == expect, (out.shape, expect)
    return np.clip(np.round(out * max_val), 0, max_val).astype(img.dtype)


def _lr_name(name, scale, tmpl):
    return tmpl.format(stem(name), scale=scale) + '.png'


def _generate_one(job):
    hr_path, outs = job  # outs: [(scale, out_path), ...]
    img = read_image(hr_path)
    for scale, out_path in outs:
        write_image(bicubic_downscale(img, scale), out_path)
    return img.shape[:2]


def generate_bicubic_lr(hr_dir, lr_dirs, name_tmpl='{}x{scale}', overwrite=False, n_thread=1, progress=True):
    """Write MATLAB-bicubic LR images of every HR image in ``hr_dir``.

    Args:
        hr_dir: folder of HR images.
        lr_dirs: {scale: output folder}, e.g. ``{2: '.../X2', 4: '.../X4'}``.
        name_tmpl: LR file name (without extension) from the HR stem, ``'{}x{scale}'`` gives ``0001x2.png``
            (DIV2K's naming); ``'{}'`` keeps the HR name.
    HR images are first cropped to a multiple of the scale (mod crop), so LR size = HR size // scale.
    Returns {'images': n, 'scales': [...], 'seconds': t}."""
    t0 = time.time()
    lr_dirs = {int(s): str(d) for s, d in dict(lr_dirs).items()}
    if not lr_dirs:
        raise DataPrepError('no scale requested')
    for s in lr_dirs:
        if s < 2:
            raise DataPrepError(f'scale must be an integer >= 2, got {s}')
    try:
        name_tmpl.format('x', scale=2)
    except (KeyError, IndexError, ValueError) as err:
        raise DataPrepError(f"bad name template {name_tmpl!r}: use '{{}}' for the name and '{{scale}}'") from err
    names = list_images(hr_dir)
    _check_distinct(lr_dirs.values(), [hr_dir])
    for s, d in sorted(lr_dirs.items()):
        lr_names = [_lr_name(n, s, name_tmpl) for n in names]
        if len(set(lr_names)) != len(lr_names):
            raise DataPrepError(f'two HR images in {hr_dir} give the same LR name; rename them')
        check_destination(d, overwrite)
    for d in lr_dirs.values():
        os.makedirs(d, exist_ok=True)
    jobs = [(osp.join(hr_dir, n), [(s, osp.join(d, _lr_name(n, s, name_tmpl))) for s, d in sorted(lr_dirs.items())])
            for n in names]
    _pool_map(_generate_one, jobs, n_thread, 'bicubic LR', 'img', progress)
    return {'images': len(names), 'scales': sorted(lr_dirs), 'seconds': time.time() - t0}


# ----------------------------------------------------------------------------------------------------------------
# sub-images
# ----------------------------------------------------------------------------------------------------------------
def crop_positions(length, crop_size, step, thresh_size=0):
    """Top-left crop offsets along one axis, as in BasicSR's extract_subimages.py.

    Offsets ``0, step, 2*step, ...`` while the crop fits; if the uncovered remainder is larger than ``thresh_size``
    one more crop flush with the end is added.  Empty if ``length < crop_size``."""
    if length < crop_size:
        return []
    pos = list(range(0, length - crop_size + 1, step))
    if length - (pos[-1] + crop_size) > thresh_size:
        pos.append(length - crop_size)
    return pos


def _find_lr_file(lr_dir, lr_index, hr_name, scale, tmpl):
    """LR file in ``lr_dir`` for HR ``hr_name``: ``tmpl`` if given, else ``<stem>x<scale>`` then ``<stem>``."""
    s = stem(hr_name)
    candidates = [tmpl.format(s, scale=scale)] if tmpl else [f'{s}x{scale}', s]
    for cand in candidates:
        if cand in lr_index:
            return osp.join(lr_dir, lr_index[cand])
    raise DataPrepError(f'LR folder {lr_dir} has no image for HR {hr_name} at x{scale} '
                        f'(looked for {", ".join(c + ".*" for c in candidates)})')


def _extract_one(job):
    hr_path, hr_out, lrs, hpos, wpos, crop_size, compress_level = job
    img = read_image(hr_path)
    name = stem(hr_path)
    items = [(img, hr_out, 1)] + [(read_image(lr_path), out, s) for s, lr_path, out in lrs]
    for src, out_dir, s in items:
        c = crop_size // s
        idx = 0
        for y in hpos:
            for x in wpos:
                idx += 1
                patch = np.ascontiguousarray(src[y // s:y // s + c, x // s:x // s + c, ...])
                write_image(patch, osp.join(out_dir, f'{name}_s{idx:03d}.png'), compress_level)
    return len(hpos) * len(wpos)


def extract_subimages(hr_dir,
                      hr_out,
                      lr_pairs=None,
                      crop_size=480,
                      step=240,
                      thresh_size=0,
                      lr_tmpl=None,
                      compress_level=3,
                      n_thread=1,
                      overwrite=False,
                      progress=True):
    """Crop HR images (and their LR counterparts) into overlapping sub-images ``<name>_s001.png`` ...

    Args:
        hr_dir, hr_out: HR input and output folders.
        lr_pairs: {scale: (lr_in_dir, lr_out_dir)}; LR sub-images are cut at HR offset / scale with size
            crop_size / scale and keep the HR name, so ``hr_out`` and every ``lr_out_dir`` pair by file name.
            An LR file is found as ``lr_tmpl.format(stem, scale=s)`` or, by default, ``<stem>x<s>`` or ``<stem>``,
            and must be (H // s, W // s) of its HR image.
        crop_size, step, thresh_size: as in BasicSR (DF2K: 480, 240, 0). With LR folders crop_size and step must be
            multiples of every scale, and offsets are taken on the HR image cropped to a multiple of the scales.
    Returns {'images': n_source_images, 'subimages': n_per_folder, 'skipped': [...], 'seconds': t}."""
    t0 = time.time()
    lr_pairs = {int(s): (str(a), str(b)) for s, (a, b) in dict(lr_pairs or {}).items()}
    if crop_size <= 0 or step <= 0 or thresh_size < 0:
        raise DataPrepError(f'need crop_size > 0, step > 0, thresh_size >= 0; got {crop_size}, {step}, {thresh_size}')
    for s in lr_pairs:
        if s < 2 or crop_size % s or step % s:
            raise DataPrepError(f'crop_size {crop_size} and step {step} must be multiples of the scale {s}')
    names = list_images(hr_dir)
    _check_distinct([hr_out] + [b for _, b in lr_pairs.values()], [hr_dir] + [a for a, _ in lr_pairs.values()])
    lcm = 1
    for s in lr_pairs:
        lcm = lcm * s // math.gcd(lcm, s)

    # validate every pair before writing anything
    lr_files = {}
    for s, (lr_in, _) in sorted(lr_pairs.items()):
        index = {stem(n): n for n in list_images(lr_in)}
        for n in names:
            lr_path = _find_lr_file(lr_in, index, n, s, lr_tmpl)
            lr_files[(n, s)] = lr_path
    jobs, skipped = [], []
    for n in tqdm(names, desc='check inputs', unit='img', disable=not progress or not lr_pairs):
        hr_path = osp.join(hr_dir, n)
        h, w = image_size(hr_path)
        for s in sorted(lr_pairs):
            lh, lw = image_size(lr_files[(n, s)])
            if (lh, lw) != (h // s, w // s):
                raise DataPrepError(f'LR image {lr_files[(n, s)]} is {lh}x{lw}, expected {h // s}x{w // s} '
                                    f'(HR {hr_path} is {h}x{w}, scale {s})')
        hpos = crop_positions(h - h % lcm, crop_size, step, thresh_size)
        wpos = crop_positions(w - w % lcm, crop_size, step, thresh_size)
        if not hpos or not wpos:
            skipped.append(n)
            continue
        lrs = [(s, lr_files[(n, s)], lr_pairs[s][1]) for s in sorted(lr_pairs)]
        jobs.append((hr_path, str(hr_out), lrs, hpos, wpos, crop_size, compress_level))
    if not jobs:
        raise DataPrepError(f'every image in {hr_dir} is smaller than crop_size {crop_size}')

    for d in [hr_out] + [b for _, b in lr_pairs.values()]:
        check_destination(d, overwrite)
    for d in [hr_out] + [b for _, b in lr_pairs.values()]:
        os.makedirs(d, exist_ok=True)
    if skipped and progress:
        print(f'skipped {len(skipped)} image(s) smaller than {crop_size}px: {", ".join(skipped[:5])}', file=sys.stderr)
    counts = _pool_map(_extract_one, jobs, n_thread, 'sub-images', 'img', progress)
    return {'images': len(jobs), 'subimages': int(sum(counts)), 'skipped': skipped, 'seconds': time.time() - t0}


# ----------------------------------------------------------------------------------------------------------------
# LMDB
# ----------------------------------------------------------------------------------------------------------------
def lmdb_keys(names):
    """LMDB keys = file names without extension; a key may not hold a dot (BasicSR's meta_info parser splits on
    the first '.'), nor a space (meta_info is space separated), and must be ASCII."""
    keys = []
    for n in names:
        k = stem(n)
        if '.' in k or ' ' in k or not k.isascii():
            raise DataPrepError(f'image name {n!r} cannot be an LMDB key (no dots, spaces or non-ASCII allowed)')
        keys.append(k)
    return keys


def estimate_map_size(paths):
    """LMDB map size for these images: 1.5x their raw pixel bytes plus page overhead (an upper bound for PNG at any
    compression level).  The map is reserved address space, not disk, so a generous bound costs nothing."""
    total = 0
    for p in paths:
        try:
            from PIL import Image
            with Image.open(p) as im:
                w, h = im.size
                depth = 2 if ('16' in im.mode or im.mode in ('I', 'F')) else 1
                chans = max(len(im.getbands()), 3)
        except Exception:
            img = read_image(p)
            h, w = img.shape[:2]
            depth, chans = img.dtype.itemsize, max(img.shape[2] if img.ndim == 3 else 1, 3)
        total += h * w * chans * depth + 16384
    return int(total * 1.5) + (64 << 20)


def create_lmdb(folder, lmdb_path, map_size=None, compress_level=1, batch=5000, n_thread=1, overwrite=False,
                names=None):
    """Pack every image of ``folder`` into ``lmdb_path`` (must end with ``.lmdb``) with BasicSR's
    make_lmdb_from_imgs: PNG-encoded values, keys = names without extension, ``meta_info.txt`` lines
    ``<key>.png (h,w,c) <compress_level>``.  ``map_size`` in bytes (None: estimated from all images).
    Returns the list of keys."""
    lmdb_path = str(lmdb_path)
    if not lmdb_path.endswith('.lmdb'):
        raise DataPrepError(f'LMDB path must end with .lmdb: {lmdb_path}')
    names = list_images(folder) if names is None else list(names)
    keys = lmdb_keys(names)
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise DataPrepError(f'two images in {folder} share the key {dup!r} (same name, different extension)')
    _check_distinct([lmdb_path], [folder])
    check_destination(lmdb_path, overwrite)
    if osp.isdir(lmdb_path):  # an empty folder: make_lmdb_from_imgs refuses any existing path
        os.rmdir(lmdb_path)
    if map_size is None:
        map_size = estimate_map_size([osp.join(folder, n) for n in names])
    _, _, make_lmdb_from_imgs = _basicsr()
    make_lmdb_from_imgs(str(folder), lmdb_path, names, keys, batch=batch, compress_level=compress_level,
                        multiprocessing_read=n_thread > 1, n_thread=max(1, n_thread), map_size=int(map_size))
    return keys


def create_paired_lmdb(gt_dir, lq_dir, gt_lmdb, lq_lmdb, scale=None, map_size=None, compress_level=1, batch=5000,
                       n_thread=1, overwrite=False, progress=True):
    """GT and LQ LMDBs for a paired dataset (BasicSR's PairedImageDataset, ``io_backend: lmdb``).

    Both folders must hold the same keys (names without extension), and every LQ image must be GT size / scale
    (``scale`` None: inferred from the first pair, then required of all).  Returns (keys, scale)."""
    gt_names, lq_names = list_images(gt_dir), list_images(lq_dir)
    gt_keys, lq_keys = lmdb_keys(gt_names), lmdb_keys(lq_names)
    for (a_dir, a_names, a_keys, a_tag), (b_dir, b_keys, b_tag) in (
            ((gt_dir, gt_names, gt_keys, 'GT'), (lq_dir, lq_keys, 'LQ')),
            ((lq_dir, lq_names, lq_keys, 'LQ'), (gt_dir, gt_keys, 'GT'))):
        missing = sorted(set(a_keys) - set(b_keys))
        if missing:
            first = osp.join(a_dir, a_names[a_keys.index(missing[0])])
            more = f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''
            raise DataPrepError(f'{b_tag} folder {b_dir} has no image for {a_tag} {first}{more}')
    lq_by_key = dict(zip(lq_keys, lq_names))
    lq_names = [lq_by_key[k] for k in gt_keys]  # same order as GT
    for gn, ln in tqdm(list(zip(gt_names, lq_names)), desc='check pairs', unit='img', disable=not progress):
        gh, gw = image_size(osp.join(gt_dir, gn))
        lh, lw = image_size(osp.join(lq_dir, ln))
        if scale is None:
            if lh == 0 or gh % lh or gw % lw or gh // lh != gw // lw:
                raise DataPrepError(f'LQ {osp.join(lq_dir, ln)} ({lh}x{lw}) is not GT {osp.join(gt_dir, gn)} '
                                    f'({gh}x{gw}) divided by an integer scale')
            scale = gh // lh
        if (lh * scale, lw * scale) != (gh, gw):
            raise DataPrepError(f'LQ {osp.join(lq_dir, ln)} is {lh}x{lw}, expected {gh // scale}x{gw // scale} '
                                f'(GT {osp.join(gt_dir, gn)} is {gh}x{gw}, scale {scale})')
    _check_distinct([gt_lmdb, lq_lmdb], [gt_dir, lq_dir])
    for p in (gt_lmdb, lq_lmdb):
        if not str(p).endswith('.lmdb'):
            raise DataPrepError(f'LMDB path must end with .lmdb: {p}')
        check_destination(p, overwrite)
    kw = dict(map_size=map_size, compress_level=compress_level, batch=batch, n_thread=n_thread, overwrite=overwrite)
    create_lmdb(gt_dir, gt_lmdb, names=gt_names, **kw)
    create_lmdb(lq_dir, lq_lmdb, names=lq_names, **kw)
    return gt_keys, scale


def write_meta_info(folder, out_file):
    """``meta_info`` for a folder dataset, in LMDB meta_info format (``name.png (h,w,c) 1``), sorted by name;
    BasicSR's ``meta_info_file`` option reads the first field of each line."""
    lines = []
    for n in list_images(folder):
        img = read_image(osp.join(folder, n))
        c = 1 if img.ndim == 2 else img.shape[2]
        lines.append(f'{n} ({img.shape[0]},{img.shape[1]},{c}) 1\n')
    with open(out_file, 'w') as f:
        f.writelines(lines)
    return len(lines)


# ----------------------------------------------------------------------------------------------------------------
# demo data
# ----------------------------------------------------------------------------------------------------------------
def skimage_data_dir():
    """Folder of scikit-image's bundled sample images (no download involved)."""
    try:
        import skimage
    except ImportError as err:
        raise DataPrepError('make_demo_data needs scikit-image (pip install scikit-image)') from err
    return osp.join(osp.dirname(skimage.__file__), 'data')


def make_demo_data(out_dir='datasets/demo',
                   sources=DEMO_SOURCES,
                   crop_size=192,
                   step=96,
                   scales=(2, 3, 4),
                   half_scale_sources=True,
                   lmdb=True,
                   overwrite=False,
                   progress=True):
    """Build a small paired SR training set from scikit-image's bundled sample images.

    Pipeline (the DF2K recipe in miniature, through this module's functions)::

        <out>/full/HR                   source images (grey ones made 3-channel), each also at half size
                                        ('<name>_half') when half_scale_sources, all mod-cropped to lcm(scales)
        <out>/full/LR_bicubic/X{s}      MATLAB-bicubic LR of those, '<name>x{s}.png'
        <out>/HR_sub                    crop_size sub-images '<name>_s001.png' (step ``step``)
        <out>/LR_bicubic_sub/X{s}       matching LR sub-images, same names, crop_size/s pixels
        <out>/HR_sub.lmdb, <out>/LR_bicubic_sub_X{s}.lmdb   LMDB forms (with meta_info.txt)
        <out>/meta_info_HR_sub.txt      sub-image list for folder datasets

    The default 192px sub-images (96/64/48 px LR) leave room for random 96px GT crops at x2 (48px LR patches).
    Returns a summary dict."""
    t0 = time.time()
    out_dir = str(out_dir)
    scales = sorted({int(s) for s in scales})
    lcm = 1
    for s in scales:
        lcm = lcm * s // math.gcd(lcm, s)
    if crop_size % lcm or step % lcm:
        raise DataPrepError(f'crop_size {crop_size} and step {step} must be multiples of {lcm} for scales {scales}')
    check_destination(out_dir, overwrite)
    data_dir = skimage_data_dir()
    paths = [osp.join(data_dir, n) for n in sources]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise DataPrepError(f'scikit-image sample image not found: {missing[0]}')

    mod_crop, imresize, _ = _basicsr()
    full_hr = osp.join(out_dir, 'full', 'HR')
    os.makedirs(full_hr)
    n_sources = 0
    for p in tqdm(paths, desc='source images', unit='img', disable=not progress):
        img = read_image(p, cv2.IMREAD_COLOR)  # grey -> 3 equal channels, BGR
        variants = [(stem(p), img)]
        if half_scale_sources:
            variants.append((stem(p) + '_half', bicubic_downscale(img, 2)))
        for name, im in variants:
            write_image(mod_crop(im, lcm), osp.join(full_hr, name + '.png'))
            n_sources += 1

    full_lr = {s: osp.join(out_dir, 'full', 'LR_bicubic', f'X{s}') for s in scales}
    generate_bicubic_lr(full_hr, full_lr, name_tmpl='{}x{scale}', progress=progress)

    hr_sub = osp.join(out_dir, 'HR_sub')
    lr_sub = {s: osp.join(out_dir, 'LR_bicubic_sub', f'X{s}') for s in scales}
    res = extract_subimages(full_hr, hr_sub, {s: (full_lr[s], lr_sub[s]) for s in scales}, crop_size=crop_size,
                            step=step, thresh_size=0, progress=progress)
    write_meta_info(hr_sub, osp.join(out_dir, 'meta_info_HR_sub.txt'))

    lmdbs = {}
    if lmdb:
        for s in scales:
            gt_lmdb = osp.join(out_dir, 'HR_sub.lmdb')
            lq_lmdb = osp.join(out_dir, f'LR_bicubic_sub_X{s}.lmdb')
            if s == scales[0]:
                create_paired_lmdb(hr_sub, lr_sub[s], gt_lmdb, lq_lmdb, scale=s, progress=progress)
                lmdbs['HR'] = gt_lmdb
            else:
                create_lmdb(lr_sub[s], lq_lmdb)
            lmdbs[f'X{s}'] = lq_lmdb

    sizes = {'HR': crop_size, **{f'X{s}': crop_size // s for s in scales}}
    nbytes = sum(osp.getsize(osp.join(r, f)) for r, _, fs in os.walk(out_dir) for f in fs)
    return {
        'out_dir': out_dir,
        'source_images': n_sources,
        'subimages': res['subimages'],
        'sizes': sizes,
        'folders': {'HR': hr_sub, **{f'X{s}': lr_sub[s] for s in scales}},
        'lmdb': lmdbs,
        'skipped': res['skipped'],
        'bytes': nbytes,
        'seconds': time.time() - t0,
    }


# ----------------------------------------------------------------------------------------------------------------
# CLI helper
# ----------------------------------------------------------------------------------------------------------------
def run_cli(parser, body, argv=None):
    """Parse ``argv`` and run ``body(args)``; a DataPrepError becomes one ``prog: error: ...`` line and exit code 2."""
    args = parser.parse_args(argv)
    try:
        body(args)
    except DataPrepError as err:
        print(f'{parser.prog}: error: {err}', file=sys.stderr)
        return 2
    return 0

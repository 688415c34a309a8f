"""HR-only dataset for MMA's ImageNet pre-training stage (the paper's recipe 2, "pre-training on a larger
and broader dataset"): LR patches are made on the fly with MATLAB-style bicubic downsampling.

Registered as ``ImageNetSRDataset`` (the official repository calls its version ``ImageNetPairedDataset``).
"""
import logging
import os
import os.path as osp
import random

import cv2
import numpy as np

from .._registry import register_dataset  # before basicsr: installs the torchvision shim

from torch.utils import data as data  # noqa: E402
from torchvision.transforms.functional import normalize  # noqa: E402

from basicsr.data.transforms import augment  # noqa: E402
from basicsr.utils import FileClient, bgr2ycbcr, imfrombytes, img2tensor  # noqa: E402
from basicsr.utils.matlab_functions import imresize  # noqa: E402

logger = logging.getLogger('mamba_sr_archs')

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
SMALL_IMAGE_RULES = ('resize', 'skip', 'error')


def scan_images(root):
    """All image files under ``root`` (any depth, e.g. ImageNet's ``train/<wnid>/*.JPEG``), sorted."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        paths += [osp.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMG_EXTENSIONS)]
    return paths


def lmdb_keys(lmdb_root):
    """Keys and (h, w, c) shapes from ``meta_info.txt`` of an LMDB made by basicsr's ``make_lmdb_from_imgs``.

    Each line is ``<key>.<ext> (h,w,c) <compress_level>``; the key is the name without its last extension, so keys
    may hold '/' (class folders) and dots.
    """
    if not lmdb_root.endswith('.lmdb'):
        raise ValueError(f"dataroot_gt must be an '.lmdb' folder for io_backend lmdb, got {lmdb_root}")
    keys, shapes = [], []
    with open(osp.join(lmdb_root, 'meta_info.txt')) as fin:
        for line in fin:
            line = line.strip()
            if not line:
                continue
            name, shape = line.split(' ')[:2]
            keys.append(osp.splitext(name)[0])
            shapes.append(tuple(int(v) for v in shape.strip('()').split(',')))
    return keys, shapes


@register_dataset
class ImageNetSRDataset(data.Dataset):
    """Single-image SR pairs from a folder (or LMDB) of HR images; LR = MATLAB bicubic of the HR patch.

    Training (``phase: train``): random ``gt_size`` crop of the HR image, flips / 90-degree rotations, then
    ``lq = imresize(gt_patch, 1 / scale)`` (``basicsr.utils.matlab_functions.imresize``, antialiased bicubic, the
    same kernel as MATLAB's ``imresize`` used to make DIV2K/DF2K's bicubic LR).  The output dict matches
    ``PairedImageDataset``: ``{'lq', 'gt', 'lq_path', 'gt_path'}`` (``lq_path`` = ``gt_path``; the LR is generated).
    Validation/test phases use the whole image (mod-cropped to a multiple of scale).

    Options (besides BasicSR's usual ``scale``, ``phase``, ``io_backend``, ``mean``/``std``, ``color``):
        dataroot_gt: root of the HR tree, scanned recursively (class folders at any depth), or an ``.lmdb`` folder
            (``io_backend: {type: lmdb}``) whose ``meta_info.txt`` lists the keys.
        meta_info_file: optional list of image paths relative to dataroot_gt (first field of each line; disk only).
        gt_size: HR patch size (a multiple of scale; MMA uses 64 * scale, i.e. 64x64 LR patches).
        use_hflip, use_rot: augmentations, as in PairedImageDataset.
        small_image: what to do with an image whose height or width is below gt_size (ImageNet has a few):
            ``'resize'`` (default, the official rule): stretch the short side(s) up to gt_size with cv2 bilinear
            resize (no aspect preservation) before cropping; ``'skip'``: draw another random image instead (a
            warning is logged the first time); ``'error'``: raise ValueError naming the image.
            With LMDB, images known from meta_info.txt to be too small are dropped up front under ``'skip'``.
        lr_from_full_image: False (default) downsamples only the HR patch (cheap); True follows the official order
            (modcrop, downsample the whole image, then crop the LR/HR pair); both give the same LR except within
            a few pixels of the patch border, where the bicubic support crosses it.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.file_client = None
        self.io_backend_opt = dict(opt['io_backend'])
        self.mean = opt.get('mean')
        self.std = opt.get('std')
        self.scale = int(opt['scale'])
        self.gt_folder = opt['dataroot_gt']
        self.small_image = opt.get('small_image', 'resize')
        if self.small_image not in SMALL_IMAGE_RULES:
            raise ValueError(f'small_image must be one of {SMALL_IMAGE_RULES}, got {self.small_image!r}')
        self.lr_from_full_image = bool(opt.get('lr_from_full_image', False))
        self._warned_skip = False
        if opt.get('phase') == 'train':
            gt_size = int(opt['gt_size'])
            if gt_size % self.scale:
                raise ValueError(f'gt_size {gt_size} must be a multiple of scale {self.scale}')

        if self.io_backend_opt['type'] == 'lmdb':
            self.io_backend_opt['db_paths'] = [self.gt_folder]
            self.io_backend_opt['client_keys'] = ['gt']
            self.paths, shapes = lmdb_keys(self.gt_folder)
            if self.small_image == 'skip' and opt.get('phase') == 'train':
                keep = [min(s[0], s[1]) >= int(opt['gt_size']) for s in shapes]
                dropped = len(keep) - sum(keep)
                if dropped:
                    logger.warning(f'ImageNetSRDataset: {dropped} LMDB images smaller than gt_size are skipped.')
                self.paths = [p for p, k in zip(self.paths, keep) if k]
        elif 'meta_info_file' in opt:
            with open(opt['meta_info_file']) as fin:
                self.paths = [osp.join(self.gt_folder, line.split(' ')[0].strip()) for line in fin if line.strip()]
        else:
            self.paths = scan_images(self.gt_folder)
        if not self.paths:
            raise FileNotFoundError(f'ImageNetSRDataset: no images found in {self.gt_folder}')

    def __len__(self):
        return len(self.paths)

    def _load(self, index):
        if self.file_client is None:
            opt = dict(self.io_backend_opt)
            self.file_client = FileClient(opt.pop('type'), **opt)
        gt_path = self.paths[index]
        img = imfrombytes(self.file_client.get(gt_path, 'gt'), float32=True)  # HWC, BGR, [0, 1]
        if img.ndim == 2:
            img = img[..., None]
        return gt_path, img

    def _fit_small(self, img, gt_path, gt_size):
        """Apply the ``small_image`` rule; returns the image, or None to ask for another one."""
        h, w = img.shape[:2]
        if h >= gt_size and w >= gt_size:
            return img
        if self.small_image == 'error':
            raise ValueError(f'ImageNetSRDataset: {gt_path} is {h}x{w}, smaller than gt_size {gt_size} '
                             "(set small_image: resize or skip to allow such images)")
        if self.small_image == 'skip':
            if not self._warned_skip:
                logger.warning(f'ImageNetSRDataset: skipping images smaller than gt_size {gt_size} '
                               f'(first: {gt_path}, {h}x{w}).')
                self._warned_skip = True
            return None
        c = img.shape[2]
        img = cv2.resize(img, (max(w, gt_size), max(h, gt_size)))  # official rule: bilinear stretch
        return img.reshape(img.shape[0], img.shape[1], c)

    def _downsample(self, img_gt):
        img_lq = imresize(img_gt, 1 / self.scale)
        return np.ascontiguousarray(img_lq.reshape(img_gt.shape[0] // self.scale, img_gt.shape[1] // self.scale,
                                                   img_gt.shape[2]), dtype=np.float32)

    def __getitem__(self, index):
        scale = self.scale
        train = self.opt.get('phase') == 'train'
        for _ in range(100):
            gt_path, img_gt = self._load(index)
            if not train:
                break
            gt_size = int(self.opt['gt_size'])
            img_gt = self._fit_small(img_gt, gt_path, gt_size)
            if img_gt is not None:
                break
            index = random.randrange(len(self.paths))
        else:
            raise RuntimeError('ImageNetSRDataset: 100 images in a row were smaller than gt_size')

        h, w = img_gt.shape[:2]
        img_gt = img_gt[:h - h % scale, :w - w % scale]  # modcrop
        if train:
            h, w = img_gt.shape[:2]
            lq_size = gt_size // scale
            top, left = random.randint(0, h // scale - lq_size), random.randint(0, w // scale - lq_size)
            if self.lr_from_full_image:
                img_lq = self._downsample(np.ascontiguousarray(img_gt))[top:top + lq_size, left:left + lq_size]
            top, left = top * scale, left * scale
            img_gt = np.ascontiguousarray(img_gt[top:top + gt_size, left:left + gt_size])
            if not self.lr_from_full_image:
                img_lq = self._downsample(img_gt)
            img_gt, img_lq = augment([img_gt, np.ascontiguousarray(img_lq)], self.opt.get('use_hflip', True),
                                     self.opt.get('use_rot', True))
        else:
            img_gt = np.ascontiguousarray(img_gt)
            img_lq = self._downsample(img_gt)

        if self.opt.get('color') == 'y':
            img_gt = bgr2ycbcr(img_gt, y_only=True)[..., None]
            img_lq = bgr2ycbcr(img_lq, y_only=True)[..., None]

        # BGR -> RGB, HWC -> CHW.  The LR is not clamped or quantised (as in the official dataset).
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=True, float32=True)
        if self.mean is not None or self.std is not None:
            normalize(img_lq, self.mean, self.std, inplace=True)
            normalize(img_gt, self.mean, self.std, inplace=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': gt_path, 'gt_path': gt_path}

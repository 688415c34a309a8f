"""Shared test fixtures: where ../shared lives, and a small thread count for the 2-core CI machine."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('MAMBA_SR_SHARED', REPO.parent / 'shared'))
GOLDEN = SHARED / 'golden'
DATASETS = SHARED / 'datasets'


def load_golden(name):
    """Load ``../shared/golden/<name>`` (tensors only, weights_only=True)."""
    path = GOLDEN / name
    if not path.is_file():
        pytest.fail(f'golden file missing: {path} (the tests need ../shared beside the repository)')
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture(scope='session')
def golden_dir():
    return GOLDEN


@pytest.fixture(scope='session')
def datasets_dir():
    return DATASETS


def make_paired_images(root, n=8, size=32, scale=2, seed=0):
    """Write ``n`` smooth random HR images and their bicubic LR into ``root/hr`` and ``root/lr``."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    (root / 'hr').mkdir(parents=True, exist_ok=True)
    (root / 'lr').mkdir(parents=True, exist_ok=True)
    for i in range(n):
        hr = cv2.GaussianBlur((rng.random((size, size, 3)) * 255).astype(np.uint8), (5, 5), 2)
        cv2.imwrite(str(root / 'hr' / f'{i:03d}.png'), hr)
        lr = cv2.resize(hr, (size // scale, size // scale), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / 'lr' / f'{i:03d}.png'), lr)


TINY_NET = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}


def write_tiny_options(root, name='tiny', network_g=None, total_iter=6, ckpt_freq=3, val_freq=3, extra_train=None,
                       model_type='MambaIRv2Model'):
    """A complete CPU training option file on the images of :func:`make_paired_images`."""
    import yaml

    opt = {
        'name': name, 'model_type': model_type, 'scale': 2, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'train', 'type': 'PairedImageDataset', 'dataroot_gt': str(root / 'hr'),
                      'dataroot_lq': str(root / 'lr'), 'io_backend': {'type': 'disk'}, 'gt_size': 32,
                      'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2,
                      'dataset_enlarge_ratio': 1, 'prefetch_mode': None},
            'val': {'name': 'val', 'type': 'PairedImageDataset', 'dataroot_gt': str(root / 'hr'),
                    'dataroot_lq': str(root / 'lr'), 'io_backend': {'type': 'disk'}},
        },
        'network_g': dict(network_g or TINY_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0.999, 'optim_g': {'type': 'Adam', 'lr': 2e-4},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [1000], 'gamma': 0.5},
                  'total_iter': total_iter, 'warmup_iter': -1,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}, **(extra_train or {})},
        'val': {'val_freq': val_freq, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': ckpt_freq, 'use_tb_logger': False},
    }
    path = root / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path

"""MMA (arXiv 2403.08330): state-dict layout, golden parity with the official code, behaviour, options, dataset."""
import gc
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import DATASETS, GOLDEN, REPO, load_golden

from mamba_sr_archs.archs.mma_arch import MMA

OPTIONS = REPO / 'options'
MMA_KEYS = json.loads((GOLDEN / 'mma_keys.json').read_text())['variants']
# MMA-T parameter counts published in the paper (thousands), x2 / x3 / x4.
PAPER_MMA_T_K = {2: 796, 3: 899, 4: 879}


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _golden_model(name, dtype=torch.float32):
    d = load_golden(name)
    model = MMA(**d['config'])
    model.load_state_dict(d['state_dict'], strict=True)
    return d, model.eval().to(dtype)


# --------------------------------------------------------------------------- layout

@pytest.mark.parametrize('variant', sorted(MMA_KEYS))
def test_state_dict_matches_official(variant):
    ref = MMA_KEYS[variant]
    with torch.device('meta'):
        model = MMA(**ref['config'])
    sd = model.state_dict()
    assert list(sd) == list(ref['state_dict'])  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == ref['state_dict']
    assert _n_params(model) == ref['num_params']
    assert len(list(model.buffers(recurse=True))) == 1 and 'mean' not in sd  # rgb mean: non-persistent only
    assert ref['num_buffer_entries'] == 0


def test_full_size_x2_count():
    with torch.device('meta'):
        model = MMA(3, 3, num_feat=192, num_block=24, upscale=2, img_range=1.)
    assert _n_params(model) == 19_824_627


# --------------------------------------------------------------------------- golden parity

@pytest.mark.parametrize('name', ['mma_reduced_x2_golden.pt', 'mma_reduced_x3_golden.pt'])
def test_golden_parity_float32(name):
    d, model = _golden_model(name)
    assert _n_params(model) == sum(v.numel() for v in d['state_dict'].values())
    with torch.no_grad():
        for inp, ref in ((d['input'], d['output']), (d['input_batch2'], d['output_batch2'])):
            out = model(inp)
            assert out.shape == ref.shape
            err = (out - ref).abs().max().item()
            assert err <= d['atol_hint'], err
            assert err / ref.abs().max().item() < 1e-4


@pytest.mark.parametrize('name', ['mma_reduced_x2_golden.pt', 'mma_reduced_x3_golden.pt'])
def test_golden_parity_float64(name):
    d, model = _golden_model(name, torch.float64)
    with torch.no_grad():
        for inp, ref in ((d['input'], d['output_f64']), (d['input_batch2'], d['output_batch2_f64'])):
            out = model(inp.double())
            assert out.dtype == torch.float64
            torch.testing.assert_close(out, ref, atol=1e-9, rtol=0)


# --------------------------------------------------------------------------- behaviour

def _perturbed_output(model, inp, select):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if select(name):
                p.add_(torch.randn(p.shape, generator=gen) * 0.5 * (p.abs().mean() + 0.1))
        return model(inp)


@pytest.mark.parametrize('direction', ['backward', 'forward'])
def test_both_scan_directions_contribute(direction):
    d, model = _golden_model('mma_reduced_x2_golden.pt')
    inp = d['input'][..., :9, :11]
    with torch.no_grad():
        base = model(inp)
    forward = {'A_log', 'D', 'conv1d.weight', 'conv1d.bias', 'x_proj.weight', 'dt_proj.weight', 'dt_proj.bias'}
    backward = {'A_b_log', 'D_b', 'conv1d_b.weight', 'conv1d_b.bias', 'x_proj_b.weight', 'dt_proj_b.weight',
                'dt_proj_b.bias'}
    keys = backward if direction == 'backward' else forward
    touched = [n for n, _ in model.named_parameters() if n.partition('.mamba.mamba.')[2] in keys]
    assert len(touched) == 2 * 7  # 2 blocks x (A, D, conv w/b, x_proj, dt_proj w/b) of this direction
    out = _perturbed_output(model, inp, lambda n: n in touched)
    assert (out - base).abs().max() > 1e-2


def test_backward_direction_sees_future_tokens():
    """With only the backward scan, the first token depends on the last pixel (bidirectional receptive field)."""
    d, model = _golden_model('mma_reduced_x2_golden.pt')
    mixer = model.body[0].attn.mamba
    x = torch.randn(1, 32, 5, 6, dtype=torch.float32)
    x2 = x.clone()
    x2[..., -1, -1] += 1.0
    with torch.no_grad():
        delta = (mixer(x2) - mixer(x))[..., 0, 0].abs().max()
    assert delta > 1e-4


@pytest.mark.parametrize('scale,size', [(2, (7, 11)), (3, (5, 9)), (4, (6, 5))])
def test_odd_sizes_and_batch(scale, size):
    torch.manual_seed(0)
    model = MMA(3, 3, num_feat=32, num_block=1, upscale=scale, img_range=1.).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = model(x)
        y0 = model(x[:1])
        y1 = model(x[1:])
    assert y.shape == (2, 3, size[0] * scale, size[1] * scale)
    torch.testing.assert_close(torch.cat([y0, y1]), y, atol=1e-5, rtol=0)


def test_one_training_step_updates_every_parameter():
    d, model = _golden_model('mma_reduced_x2_golden.pt')
    model.train()
    x = d['input_batch2'][..., :10, :12]
    target = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = torch.nn.functional.l1_loss(model(x), target)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, no_grad
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert not unchanged, unchanged


# --------------------------------------------------------------------------- constructor / options

def test_official_res_scale_key_warns_and_unknown_key_raises(caplog):
    from basicsr.archs import build_network

    cfg = dict(MMA_KEYS['test_MMA_x3']['config'], num_feat=32, num_block=1)
    with caplog.at_level(logging.WARNING, logger='mamba_sr_archs'):
        net = build_network({'type': 'MMA', 'res_scale': 0.1, **cfg})  # as in the official test_MMA_x3.yml
    assert isinstance(net, MMA)
    assert any('res_scale' in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    with pytest.raises(TypeError, match='not_a_key'):
        MMA(**cfg, not_a_key=1)


def _option_files():
    files = sorted((OPTIONS / 'train' / 'MMA').glob('*.yml')) + sorted((OPTIONS / 'test' / 'MMA').glob('*.yml'))
    return files


def test_option_file_set_is_complete():
    names = {p.name for p in _option_files()}
    for s in (2, 3, 4):
        assert {f'train_MMA_x{s}_pretrain.yml', f'train_MMA_x{s}_finetune.yml', f'train_MMA-T_x{s}.yml',
                f'test_MMA_x{s}.yml', f'test_MMA-T_x{s}.yml'} <= names


@pytest.mark.parametrize('path', _option_files(), ids=lambda p: p.name)
def test_option_files(path):
    opt = yaml.safe_load(path.read_text())
    scale = opt['scale']
    assert opt['model_type'] == 'MMAModel'
    net = dict(opt['network_g'])
    assert net.pop('type') == 'MMA' and net['upscale'] == scale
    with torch.device('meta'):
        n = _n_params(MMA(**net))
    if 'MMA-T' in path.name:
        assert net['num_feat'] == 48
        assert abs(n - PAPER_MMA_T_K[scale] * 1000) < 1000, n  # paper's table, rounded to thousands
    else:
        assert n == MMA_KEYS[f'test_MMA_x{scale}']['num_params']
    metrics = opt['val']['metrics']
    for m in ('psnr', 'ssim'):
        assert metrics[m]['crop_border'] == scale and metrics[m]['test_y_channel'] is True
    for ds in opt['datasets'].values():
        if ds['type'] == 'PairedImageDataset' and ds['dataroot_gt'].startswith('../shared'):
            assert (REPO / ds['dataroot_gt']).is_dir() and (REPO / ds['dataroot_lq']).is_dir()
            assert ds['filename_tmpl'] == f'{{}}x{scale}'
    if path.parent.parent.name == 'test':
        assert [d['name'] for d in opt['datasets'].values()] == ['Set5', 'Set14']
        return
    train, data = opt['train'], opt['datasets']['train']
    assert data['gt_size'] == 64 * scale  # 64x64 LR patches
    assert train['ema_decay'] == 0.999 and train['optim_g']['type'] == 'Adam'
    assert train['pixel_opt']['type'] == 'L1Loss'
    if path.name.endswith('_pretrain.yml'):
        assert data['type'] == 'ImageNetSRDataset'
        assert float(train['optim_g']['lr']) == 2e-4 and train['total_iter'] == 800_000
        assert train['scheduler']['milestones'] == [300_000, 500_000, 650_000, 700_000, 750_000]
    elif path.name.endswith('_finetune.yml'):
        assert float(train['optim_g']['lr']) == 1e-5 and train['total_iter'] == 250_000
        assert train['scheduler']['milestones'] == [125_000, 200_000, 225_000, 240_000]
        assert f'MMA_x{scale}_pretrain' in opt['path']['pretrain_network_g']


# --------------------------------------------------------------------------- ImageNet pre-training dataset

def _write_tree(root):
    """class-folder tree: two classes, one nested subfolder, png + jpg, one image smaller than gt_size."""
    rng = np.random.default_rng(0)
    images = {'n001/a.png': (40, 36), 'n001/b.JPEG': (30, 50), 'n002/deep/c.png': (37, 41), 'n002/small.png': (20, 30)}
    for rel, (h, w) in images.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(p), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (root / 'n002' / 'notes.txt').write_text('not an image')
    return images


def _opt(root, backend='disk', scale=2, phase='train', **kw):
    opt = {'name': 'tiny', 'type': 'ImageNetSRDataset', 'dataroot_gt': str(root), 'io_backend': {'type': backend},
           'scale': scale, 'phase': phase, 'gt_size': 24, 'use_hflip': True, 'use_rot': True}
    opt.update(kw)
    return opt


def test_dataset_disk_tree(tmp_path):
    from basicsr.data import build_dataset
    from basicsr.utils.matlab_functions import imresize

    import mamba_sr_archs.data  # noqa: F401  (registers ImageNetSRDataset)

    images = _write_tree(tmp_path)
    for scale in (2, 3):
        ds = build_dataset(_opt(tmp_path, scale=scale))
        assert len(ds) == 4
        assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in ds.paths) == sorted(images)
        for i in range(len(ds)):  # includes the 20x30 image: official 'resize' rule
            item = ds[i]
            assert set(item) == {'lq', 'gt', 'lq_path', 'gt_path'}
            assert item['gt'].shape == (3, 24, 24) and item['lq'].shape == (3, 24 // scale, 24 // scale)
            assert item['gt'].dtype == torch.float32 and item['lq_path'] == item['gt_path'] == ds.paths[i]
    # without augmentation the LR is exactly MATLAB-bicubic of the HR patch
    ds = build_dataset(_opt(tmp_path, use_hflip=False, use_rot=False))
    item = ds[0]
    lq_ref = imresize(item['gt'].numpy().transpose(1, 2, 0), 0.5).transpose(2, 0, 1)
    np.testing.assert_allclose(item['lq'].numpy(), lq_ref, atol=1e-6)
    # validation phase: whole (mod-cropped) image
    ds = build_dataset(_opt(tmp_path, phase='val'))
    item = ds[0]  # n001/a.png, 40x36
    assert item['gt'].shape == (3, 40, 36) and item['lq'].shape == (3, 20, 18)


def test_dataset_small_image_rules(tmp_path):
    from mamba_sr_archs.data.imagenet_sr_dataset import ImageNetSRDataset

    _write_tree(tmp_path)
    small = [i for i, p in enumerate(ImageNetSRDataset(_opt(tmp_path)).paths) if p.endswith('small.png')][0]
    with pytest.raises(ValueError, match='small.png'):
        ImageNetSRDataset(_opt(tmp_path, small_image='error'))[small]
    item = ImageNetSRDataset(_opt(tmp_path, small_image='skip'))[small]
    assert not item['gt_path'].endswith('small.png') and item['gt'].shape == (3, 24, 24)
    ds = ImageNetSRDataset(_opt(tmp_path, lr_from_full_image=True))
    assert ds[small]['lq'].shape == (3, 12, 12)
    with pytest.raises(ValueError):
        ImageNetSRDataset(_opt(tmp_path, small_image='crop'))


def test_dataset_lmdb(tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    from mamba_sr_archs.data.imagenet_sr_dataset import ImageNetSRDataset

    root = tmp_path / 'hr'
    images = _write_tree(root)
    rel = sorted(images)
    lmdb_path = str(tmp_path / 'hr.lmdb')
    make_lmdb_from_imgs(str(root), lmdb_path, rel, [r.rsplit('.', 1)[0] for r in rel], multiprocessing_read=False)
    ds = ImageNetSRDataset(_opt(lmdb_path, backend='lmdb', scale=3))
    assert sorted(ds.paths) == sorted(r.rsplit('.', 1)[0] for r in rel)
    for i in range(len(ds)):
        item = ds[i]
        assert item['gt'].shape == (3, 24, 24) and item['lq'].shape == (3, 8, 8)
        assert item['gt_path'] == ds.paths[i]
    del ds, item  # py-lmdb allows one open environment per path and process
    gc.collect()
    # same pixels as the disk tree (validation phase is deterministic)
    disk = ImageNetSRDataset(_opt(root, phase='val'))
    db = ImageNetSRDataset(_opt(lmdb_path, backend='lmdb', phase='val'))
    a = disk[[Path(p).relative_to(root).as_posix() for p in disk.paths].index('n001/b.JPEG')]
    b = db[db.paths.index('n001/b')]
    torch.testing.assert_close(a['gt'], b['gt'], atol=0, rtol=0)
    torch.testing.assert_close(a['lq'], b['lq'], atol=0, rtol=0)
    # 'skip' drops too-small images up front from the meta_info shapes
    assert 'n002/small' not in ImageNetSRDataset(_opt(lmdb_path, backend='lmdb', small_image='skip')).paths

"""Data tooling (mamba_sr_archs.data_prep and scripts/): sub-images, MATLAB bicubic LR, LMDB, demo data.

Everything runs on tiny synthetic images in tmp_path, except the demo-data test, which uses two of scikit-image's
bundled sample images."""
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

from mamba_sr_archs import data_prep as dp
from mamba_sr_archs.compat import install_torchvision_shim
from mamba_sr_archs.data_prep import DataPrepError

install_torchvision_shim()  # before any basicsr import (torchvision >= 0.17)

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ['extract_subimages.py', 'generate_bicubic_lr.py', 'create_lmdb.py', 'make_demo_data.py']


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def smooth_image(h, w, c=3, seed=0):
    """Smooth random uint8 image (blurred noise plus gradients): bicubic rounding differences stay at <= 1."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 255, (h, w, c)).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 2.0).reshape(h, w, c)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 0.5 * img + 0.5 * (127 + 100 * np.sin(xx / 7.0 + yy / 11.0))[..., None]
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return img if c > 1 else img[..., 0]


def write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def imread(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def matlab_imresize_reference(img, scale):
    """Independent float64 re-statement of MATLAB's imresize(img, scale, 'bicubic') with antialiasing
    (Keys cubic a=-0.5, kernel stretched by 1/scale when shrinking, symmetric border), as dense matrices."""

    def weights(in_len):
        out_len = math.ceil(in_len * scale)
        width = 4.0 / scale if scale < 1 else 4.0
        mat = np.zeros((out_len, in_len))
        for i in range(1, out_len + 1):
            u = i / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of output pixel i
            left = math.floor(u - width / 2)
            for idx in range(left, left + math.ceil(width) + 2):
                x = abs(u - idx) * (scale if scale < 1 else 1)
                k = (1.5 * x**3 - 2.5 * x**2 + 1) if x <= 1 else (-0.5 * x**3 + 2.5 * x**2 - 4 * x + 2) if x <= 2 else 0
                k *= scale if scale < 1 else 1
                j = idx
                while j < 1 or j > in_len:  # MATLAB's symmetric padding: ... 2 1 | 1 2 ... n | n n-1 ...
                    j = 1 - j if j < 1 else 2 * in_len + 1 - j
                mat[i - 1, j - 1] += k
        return mat / mat.sum(1, keepdims=True)

    wh, ww = weights(img.shape[0]), weights(img.shape[1])
    return np.einsum('oh,hwc,pw->opc', wh, img, ww)


def read_lmdb(path):
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
    with env.begin() as txn:
        items = {k.decode('ascii'): bytes(v) for k, v in txn.cursor()}
    env.close()
    return items


def run_script(name, *args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / 'scripts' / name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def hr_folder(tmp_path):
    """Two HR images: 60x84 (a multiple of 12) and 75x100 (not a multiple of 2, 3 or 4 in both directions)."""
    d = tmp_path / 'HR'
    write(d / 'a.png', smooth_image(60, 84, seed=1))
    write(d / 'b.png', smooth_image(75, 100, seed=2))
    return d


# ---------------------------------------------------------------------------------------------------------------
# MATLAB bicubic
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_matches_matlab_reference_and_basicsr(scale):
    from basicsr.utils.matlab_functions import imresize
    img = smooth_image(36, 48, seed=scale)
    ref = matlab_imresize_reference(img.astype(np.float64) / 255, 1 / scale)
    basic = imresize(img.astype(np.float64) / 255, 1 / scale)
    assert basic.shape == ref.shape == (36 // scale, 48 // scale, 3)
    np.testing.assert_allclose(basic, ref, atol=2e-6)
    ours = dp.bicubic_downscale(img, scale)
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, np.clip(np.round(basic * 255), 0, 255).astype(np.uint8))
    assert np.abs(ours.astype(np.float64) - ref * 255).max() <= 0.5 + 1e-3


def test_bicubic_known_values():
    # MATLAB maps output pixel i (1-based) to input coordinate 2i - 0.5 at x2; the antialiased cubic kernel is
    # symmetric and sums to one, so a linear ramp is reproduced exactly away from the borders.
    ramp = np.tile(np.arange(64, dtype=np.uint16)[None, :] * 1000, (8, 1))
    out = dp.bicubic_downscale(ramp, 2)
    assert out.dtype == np.uint16 and out.shape == (4, 32)
    i = np.arange(1, 33)
    np.testing.assert_array_equal(out[:, 4:-4], np.tile(((2 * i - 1.5) * 1000)[4:-4], (4, 1)))
    const = np.full((9, 10, 3), 77, np.uint8)
    np.testing.assert_array_equal(dp.bicubic_downscale(const, 3), np.full((3, 3, 3), 77, np.uint8))
    # mod crop first: a 13x14 image at x4 is the 12x12 top-left crop resized
    img = smooth_image(13, 14)
    np.testing.assert_array_equal(dp.bicubic_downscale(img, 4), dp.bicubic_downscale(img[:12, :12], 4))


def test_generate_bicubic_lr(hr_folder, tmp_path):
    out = {s: tmp_path / 'LR' / f'X{s}' for s in (2, 3, 4)}
    res = dp.generate_bicubic_lr(hr_folder, out, progress=False)
    assert res['images'] == 2 and res['scales'] == [2, 3, 4]
    for s, d in out.items():
        assert sorted(os.listdir(d)) == [f'ax{s}.png', f'bx{s}.png']
        for name in 'ab':
            hr = imread(hr_folder / f'{name}.png')
            lr = imread(d / f'{name}x{s}.png')
            assert lr.shape == (hr.shape[0] // s, hr.shape[1] // s, 3)
            np.testing.assert_array_equal(lr, dp.bicubic_downscale(hr, s))
    # grey images stay grey; '{}' keeps the HR name
    write(tmp_path / 'G' / 'g.png', smooth_image(20, 24, c=1))
    dp.generate_bicubic_lr(tmp_path / 'G', {2: tmp_path / 'G2'}, name_tmpl='{}', progress=False)
    assert imread(tmp_path / 'G2' / 'g.png').shape == (10, 12)


# ---------------------------------------------------------------------------------------------------------------
# sub-images
# ---------------------------------------------------------------------------------------------------------------
def test_crop_positions_like_basicsr():
    assert dp.crop_positions(60, 24, 12) == [0, 12, 24, 36]  # fits exactly
    assert dp.crop_positions(70, 24, 12) == [0, 12, 24, 36, 46]  # remainder 10 > 0: crop flush with the end
    assert dp.crop_positions(70, 24, 12, thresh_size=10) == [0, 12, 24, 36]
    assert dp.crop_positions(2040, 480, 240) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert dp.crop_positions(23, 24, 12) == []


def test_extract_subimages_counts_sizes_alignment(hr_folder, tmp_path):
    lr_full = {s: tmp_path / 'LR' / f'X{s}' for s in (2, 3, 4)}
    dp.generate_bicubic_lr(hr_folder, lr_full, progress=False)
    lr_pairs = {s: (lr_full[s], tmp_path / 'sub' / f'X{s}') for s in (2, 3, 4)}
    res = dp.extract_subimages(hr_folder, tmp_path / 'sub' / 'HR', lr_pairs, crop_size=24, step=12, progress=False)
    # a: 60x84 -> 4 x 6 offsets; b: 75x100 is cut on its 72x96 part (multiple of lcm 12) -> 5 x 7
    assert res['subimages'] == 24 + 35 and res['images'] == 2
    hr_names = sorted(os.listdir(tmp_path / 'sub' / 'HR'))
    assert hr_names == sorted([f'a_s{i:03d}.png' for i in range(1, 25)] + [f'b_s{i:03d}.png' for i in range(1, 36)])
    for s in (2, 3, 4):
        assert sorted(os.listdir(tmp_path / 'sub' / f'X{s}')) == hr_names  # pair by name

    for name, (h, w) in (('a', (60, 84)), ('b', (72, 96))):
        hr = imread(hr_folder / f'{name}.png')
        offsets = [(y, x) for y in dp.crop_positions(h, 24, 12) for x in dp.crop_positions(w, 24, 12)]
        for idx, (y, x) in enumerate(offsets, 1):
            fname = f'{name}_s{idx:03d}.png'
            hr_sub = imread(tmp_path / 'sub' / 'HR' / fname)
            np.testing.assert_array_equal(hr_sub, hr[y:y + 24, x:x + 24])
            for s in (2, 3, 4):
                lr_sub = imread(tmp_path / 'sub' / f'X{s}' / fname)
                c = 24 // s
                assert lr_sub.shape == (c, c, 3)
                lr = imread(lr_full[s] / f'{name}x{s}.png')
                np.testing.assert_array_equal(lr_sub, lr[y // s:y // s + c, x // s:x // s + c])
                # aligned: away from the crop border (2 LR px, the antialiased kernel's reach) the LR sub-image is
                # the bicubic downscale of the HR sub-image
                own = dp.bicubic_downscale(hr_sub, s).astype(int)
                assert np.abs(lr_sub[2:-2, 2:-2].astype(int) - own[2:-2, 2:-2]).max() <= 1


def test_extract_hr_only_thresh_and_parallel(tmp_path):
    write(tmp_path / 'HR' / 'img.png', smooth_image(70, 58, seed=3))
    r = dp.extract_subimages(tmp_path / 'HR', tmp_path / 'o1', crop_size=24, step=12, progress=False)
    assert r['subimages'] == 5 * 4  # rows [0,12,24,36,46], cols [0,12,24,34]
    assert imread(tmp_path / 'o1' / 'img_s020.png').shape == (24, 24, 3)
    r = dp.extract_subimages(tmp_path / 'HR', tmp_path / 'o2', crop_size=24, step=12, thresh_size=10, progress=False)
    assert r['subimages'] == 4 * 3
    write(tmp_path / 'HR' / 'img2.png', smooth_image(30, 40, seed=4))
    dp.extract_subimages(tmp_path / 'HR', tmp_path / 'seq', crop_size=24, step=12, progress=False)
    dp.extract_subimages(tmp_path / 'HR', tmp_path / 'par', crop_size=24, step=12, n_thread=2, progress=False)
    names = sorted(os.listdir(tmp_path / 'seq'))
    assert names == sorted(os.listdir(tmp_path / 'par')) and len(names) == 20 + 2 * 3
    for n in names:
        np.testing.assert_array_equal(imread(tmp_path / 'seq' / n), imread(tmp_path / 'par' / n))


# ---------------------------------------------------------------------------------------------------------------
# LMDB
# ---------------------------------------------------------------------------------------------------------------
def test_lmdb_round_trip(tmp_path):
    imgs = {'img_001': smooth_image(20, 24, seed=5), 'img_002': smooth_image(12, 16, seed=6),
            'grey': smooth_image(10, 14, c=1, seed=7)}
    for k, v in imgs.items():
        write(tmp_path / 'src' / f'{k}.png', v)
    keys = dp.create_lmdb(tmp_path / 'src', tmp_path / 'db.lmdb')
    assert keys == sorted(imgs)
    stored = read_lmdb(tmp_path / 'db.lmdb')
    assert sorted(stored) == sorted(imgs) and not any('.' in k for k in stored)
    for k, v in stored.items():
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(v, np.uint8), cv2.IMREAD_UNCHANGED), imgs[k])
    meta = (tmp_path / 'db.lmdb' / 'meta_info.txt').read_text().splitlines()
    assert meta == ['grey.png (10,14,1) 1', 'img_001.png (20,24,3) 1', 'img_002.png (12,16,3) 1']
    # the estimate bounds the stored bytes; an explicit map size is used as given (too small -> LMDB is full)
    assert dp.estimate_map_size(sorted((tmp_path / 'src').iterdir())) > sum(len(v) for v in stored.values())
    with pytest.raises(lmdb.MapFullError):
        dp.create_lmdb(tmp_path / 'src', tmp_path / 'small.lmdb', map_size=8192, compress_level=0)
    assert dp.parse_size('64G') == 64 << 30 and dp.parse_size('512M') == 512 << 20 and dp.parse_size('1000') == 1000


def test_paired_lmdb_and_basicsr_reads_it(tmp_path):
    for i in range(3):
        hr = smooth_image(24, 36, seed=10 + i)
        write(tmp_path / 'GT' / f'p{i}.png', hr)
        write(tmp_path / 'LQ' / f'p{i}.png', dp.bicubic_downscale(hr, 3))
    keys, scale = dp.create_paired_lmdb(tmp_path / 'GT', tmp_path / 'LQ', tmp_path / 'gt.lmdb', tmp_path / 'lq.lmdb',
                                        progress=False)
    assert keys == ['p0', 'p1', 'p2'] and scale == 3
    assert sorted(read_lmdb(tmp_path / 'gt.lmdb')) == sorted(read_lmdb(tmp_path / 'lq.lmdb')) == keys
    from basicsr.data.paired_image_dataset import PairedImageDataset
    ds = PairedImageDataset(dict(phase='val', scale=3, io_backend=dict(type='lmdb'), filename_tmpl='{}',
                                 dataroot_gt=str(tmp_path / 'gt.lmdb'), dataroot_lq=str(tmp_path / 'lq.lmdb')))
    assert len(ds) == 3 and tuple(ds[1]['gt'].shape) == (3, 24, 36) and tuple(ds[1]['lq'].shape) == (3, 8, 12)


# ---------------------------------------------------------------------------------------------------------------
# refusals and mismatches
# ---------------------------------------------------------------------------------------------------------------
def test_refuses_existing_destination(hr_folder, tmp_path):
    dest = tmp_path / 'out'
    write(dest / 'old.png', smooth_image(4, 4))
    with pytest.raises(DataPrepError, match='already exists') as e:
        dp.generate_bicubic_lr(hr_folder, {2: dest}, progress=False)
    assert str(dest) in str(e.value)
    with pytest.raises(DataPrepError) as e:
        dp.extract_subimages(hr_folder, dest, crop_size=24, step=12, progress=False)
    assert str(dest) in str(e.value)
    assert os.listdir(dest) == ['old.png']  # untouched
    dp.extract_subimages(hr_folder, dest, crop_size=24, step=12, overwrite=True, progress=False)
    assert 'old.png' not in os.listdir(dest) and len(os.listdir(dest)) == 24 + 6 * 8
    dp.create_lmdb(hr_folder, tmp_path / 'x.lmdb')
    with pytest.raises(DataPrepError) as e:
        dp.create_lmdb(hr_folder, tmp_path / 'x.lmdb')
    assert str(tmp_path / 'x.lmdb') in str(e.value)
    dp.create_lmdb(hr_folder, tmp_path / 'x.lmdb', overwrite=True)
    with pytest.raises(DataPrepError) as e:
        dp.make_demo_data(dest, progress=False)
    assert str(dest) in str(e.value)
    with pytest.raises(DataPrepError, match='overlaps'):  # never write into an input folder
        dp.extract_subimages(hr_folder, hr_folder / 'sub', crop_size=24, step=12, progress=False)


def test_input_mismatch_errors(hr_folder, tmp_path):
    lr = tmp_path / 'LR2'
    dp.generate_bicubic_lr(hr_folder, {2: lr}, progress=False)
    out = tmp_path / 'o'
    # LR folder missing an image of the HR folder
    os.remove(lr / 'bx2.png')
    with pytest.raises(DataPrepError, match='no image for HR b.png') as e:
        dp.extract_subimages(hr_folder, out / 'HR', {2: (lr, out / 'X2')}, crop_size=24, step=12, progress=False)
    assert str(lr) in str(e.value)
    assert not out.exists()  # checked before writing anything
    # LR of the wrong size
    write(lr / 'bx2.png', smooth_image(36, 50))
    with pytest.raises(DataPrepError, match='expected 37x50') as e:
        dp.extract_subimages(hr_folder, out / 'HR', {2: (lr, out / 'X2')}, crop_size=24, step=12, progress=False)
    assert str(lr / 'bx2.png') in str(e.value)
    # crop size not a multiple of the scale
    with pytest.raises(DataPrepError, match='multiples of the scale 3'):
        dp.extract_subimages(hr_folder, out / 'HR', {3: (lr, out / 'X3')}, crop_size=20, step=12, progress=False)
    # non-image file, empty folder, missing folder, unreadable image
    (hr_folder / 'notes.txt').write_text('x')
    with pytest.raises(DataPrepError, match='non-image file') as e:
        dp.generate_bicubic_lr(hr_folder, {2: out / 'X2'}, progress=False)
    assert str(hr_folder / 'notes.txt') in str(e.value)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataPrepError, match='no images') as e:
        dp.create_lmdb(tmp_path / 'empty', tmp_path / 'e.lmdb')
    assert str(tmp_path / 'empty') in str(e.value)
    with pytest.raises(DataPrepError, match='does not exist'):
        dp.generate_bicubic_lr(tmp_path / 'nope', {2: out / 'X2'}, progress=False)
    (tmp_path / 'bad').mkdir()
    (tmp_path / 'bad' / 'broken.png').write_bytes(b'not a png')
    with pytest.raises(DataPrepError, match='cannot read image') as e:
        dp.generate_bicubic_lr(tmp_path / 'bad', {2: out / 'B2'}, progress=False)
    assert str(tmp_path / 'bad' / 'broken.png') in str(e.value)


def test_lmdb_mismatch_errors(tmp_path):
    write(tmp_path / 'GT' / 'a.png', smooth_image(16, 16))
    write(tmp_path / 'GT' / 'b.png', smooth_image(16, 16))
    write(tmp_path / 'LQ' / 'a.png', smooth_image(8, 8))
    with pytest.raises(DataPrepError, match='no image for GT') as e:
        dp.create_paired_lmdb(tmp_path / 'GT', tmp_path / 'LQ', tmp_path / 'g.lmdb', tmp_path / 'l.lmdb')
    assert str(tmp_path / 'GT' / 'b.png') in str(e.value)
    write(tmp_path / 'LQ' / 'b.png', smooth_image(8, 8))
    write(tmp_path / 'LQ' / 'c.png', smooth_image(8, 8))
    with pytest.raises(DataPrepError, match='GT folder .* has no image for LQ') as e:
        dp.create_paired_lmdb(tmp_path / 'GT', tmp_path / 'LQ', tmp_path / 'g.lmdb', tmp_path / 'l.lmdb')
    assert str(tmp_path / 'LQ' / 'c.png') in str(e.value)
    os.remove(tmp_path / 'LQ' / 'c.png')
    write(tmp_path / 'LQ' / 'b.png', smooth_image(8, 7))
    with pytest.raises(DataPrepError, match='expected 8x8') as e:
        dp.create_paired_lmdb(tmp_path / 'GT', tmp_path / 'LQ', tmp_path / 'g.lmdb', tmp_path / 'l.lmdb')
    assert str(tmp_path / 'LQ' / 'b.png') in str(e.value)
    assert not (tmp_path / 'g.lmdb').exists()
    write(tmp_path / 'dots' / 'x.y.png', smooth_image(4, 4))
    with pytest.raises(DataPrepError, match='cannot be an LMDB key'):
        dp.create_lmdb(tmp_path / 'dots', tmp_path / 'd.lmdb')
    with pytest.raises(DataPrepError, match='must end with .lmdb'):
        dp.create_lmdb(tmp_path / 'GT', tmp_path / 'g.db')


# ---------------------------------------------------------------------------------------------------------------
# scripts
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('script', SCRIPTS)
def test_script_help(script):
    r = run_script(script, '--help')
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('usage: ' + script) and '--overwrite' in r.stdout


def test_script_errors_are_one_line_exit_2(hr_folder, tmp_path):
    (tmp_path / 'db.lmdb').mkdir()
    (tmp_path / 'db.lmdb' / 'data.mdb').write_bytes(b'')
    r = run_script('create_lmdb.py', '--folder', hr_folder, '--lmdb', tmp_path / 'db.lmdb')
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('create_lmdb.py: error:') and str(tmp_path / 'db.lmdb') in lines[0]
    r = run_script('extract_subimages.py', '--hr', hr_folder, '--hr-out', tmp_path / 'o', '--lr', '2',
                   tmp_path / 'missing', tmp_path / 'o2')
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(tmp_path / 'missing') in r.stderr


def test_scripts_main_in_process(hr_folder, tmp_path, capsys):
    sys.path.insert(0, str(REPO / 'scripts'))
    try:
        import create_lmdb
        import extract_subimages
        import generate_bicubic_lr
    finally:
        sys.path.remove(str(REPO / 'scripts'))
    assert generate_bicubic_lr.main(['--hr', str(hr_folder), '--out', str(tmp_path / 'LR'), '--scales', '2']) == 0
    assert extract_subimages.main(['--hr', str(hr_folder), '--hr-out', str(tmp_path / 'HRs'), '--crop-size', '24',
                                   '--step', '24', '--lr', '2', str(tmp_path / 'LR' / 'X2'),
                                   str(tmp_path / 'X2s')]) == 0
    assert create_lmdb.main(['--gt', str(tmp_path / 'HRs'), '--lq', str(tmp_path / 'X2s'), '--gt-lmdb',
                             str(tmp_path / 'g.lmdb'), '--lq-lmdb', str(tmp_path / 'l.lmdb'), '--map-size', '16M']) == 0
    assert '(x2)' in capsys.readouterr().out
    gt, lq = read_lmdb(tmp_path / 'g.lmdb'), read_lmdb(tmp_path / 'l.lmdb')
    assert sorted(gt) == sorted(lq) and len(gt) == 3 * 4 + 4 * 5
    # running again refuses (exit 2) and leaves the LMDB intact
    assert create_lmdb.main(['--folder', str(tmp_path / 'HRs'), '--lmdb', str(tmp_path / 'g.lmdb')]) == 2
    assert str(tmp_path / 'g.lmdb') in capsys.readouterr().err
    assert read_lmdb(tmp_path / 'g.lmdb') == gt


# ---------------------------------------------------------------------------------------------------------------
# demo data
# ---------------------------------------------------------------------------------------------------------------
def test_demo_sources_are_bundled():
    data = Path(dp.skimage_data_dir())
    for name in dp.DEMO_SOURCES:
        img = cv2.imread(str(data / name), cv2.IMREAD_COLOR)
        assert img is not None and min(img.shape[:2]) >= 192, name


def test_make_demo_data_small(tmp_path):
    out = tmp_path / 'demo'
    r = dp.make_demo_data(out, sources=('chelsea.png', 'coins.png'), crop_size=96, step=96, progress=False)
    # chelsea 300x451 -> 300x444, coins 303x384 -> 300x384; halves 150x225 -> 144x216 and 151x192 -> 144x192
    assert r['source_images'] == 4 and r['skipped'] == []
    assert r['subimages'] == 4 * 5 + 4 * 4 + 2 * 3 + 2 * 2
    hr_names = sorted(os.listdir(out / 'HR_sub'))
    assert len(hr_names) == r['subimages']
    assert sorted(read_lmdb(out / 'HR_sub.lmdb')) == sorted(n[:-4] for n in hr_names)
    for s in (2, 3, 4):
        assert sorted(os.listdir(out / 'LR_bicubic_sub' / f'X{s}')) == hr_names
        for n in hr_names[::5]:
            hr = imread(out / 'HR_sub' / n)
            lr = imread(out / 'LR_bicubic_sub' / f'X{s}' / n)
            assert hr.shape == (96, 96, 3) and lr.shape == (96 // s, 96 // s, 3)
            assert np.abs(lr[2:-2, 2:-2].astype(int) - dp.bicubic_downscale(hr, s)[2:-2, 2:-2]).max() <= 1
        meta = (out / f'LR_bicubic_sub_X{s}.lmdb' / 'meta_info.txt').read_text().splitlines()
        assert meta[0] == f'{hr_names[0][:-4]}.png ({96 // s},{96 // s},3) 1' and len(meta) == len(hr_names)
    assert (out / 'meta_info_HR_sub.txt').read_text().splitlines()[0] == f'{hr_names[0]} (96,96,3) 1'
    # grey coins became 3 equal channels
    coins = imread(out / 'HR_sub' / 'coins_s001.png')
    assert np.array_equal(coins[..., 0], coins[..., 1]) and np.array_equal(coins[..., 1], coins[..., 2])

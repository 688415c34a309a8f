"""``basicsr infer`` (mamba_sr_archs/infer.py): end-to-end runs of ``main([...])`` on tiny networks.

Reference outputs are computed here by running the same network directly on the decoded pixels
(RGB order, [0, 1] scaling), so the tests check colour order, bit depth, channel handling, tiling and
the error paths against independent computations.
"""
import json
import os

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import GOLDEN

from mamba_sr_archs import compat

compat.apply()

from basicsr.archs.srresnet_arch import MSRResNet  # noqa: E402

from mamba_sr_archs.infer import PRESETS, main  # noqa: E402

NET = ['--arch', 'MSRResNet', '--scale', '2', '--net-opt', 'num_feat=8', 'num_block=1', '--device', 'cpu']


@pytest.fixture
def net_and_weights(tmp_path):
    torch.manual_seed(0)
    net = MSRResNet(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2).eval()
    path = tmp_path / 'msrresnet_f8.pth'
    torch.save({'params': net.state_dict()}, path)  # BasicSR's save_network layout
    return net, str(path)


def reference(net, rgb):
    """net applied to an HxWx3 float RGB image -> HxWx3 float RGB clipped to [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()[None]
    with torch.no_grad():
        return net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()


def rand_img(rng, shape, dtype=np.uint8):
    peak = np.iinfo(dtype).max
    # smooth-ish content so bicubic/conv outputs are not all clipped
    return (rng.random(shape) * 0.8 * peak + 0.1 * peak).astype(dtype)


def write(path, img):
    assert cv2.imwrite(str(path), img)


def read(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_presets_match_official_configs():
    """--variant presets equal the official option files' network_g (golden key lists), minus upscale."""
    v2 = json.loads((GOLDEN / 'mambairv2_keys.json').read_text())['variants']
    mma = json.loads((GOLDEN / 'mma_keys.json').read_text())['variants']
    mpsi = json.loads((GOLDEN / 'mpsi_keys.json').read_text())['variants']

    def cfg(v):
        return {k: v for k, v in v['config'].items() if k != 'upscale'}

    assert PRESETS['MambaIRv2Light']['light'] == cfg(v2['test_MambaIRv2_lightSR_x4'])
    assert PRESETS['MambaIRv2']['S'] == cfg(v2['test_MambaIRv2_SRSmall_x4'])
    assert PRESETS['MambaIRv2']['B'] == cfg(v2['test_MambaIRv2_SR_x4'])
    assert PRESETS['MambaIRv2']['L'] == cfg(v2['test_MambaIRv2_SRLarge_x4'])
    assert PRESETS['MMA']['B'] == cfg(mma['test_MMA_x4'])
    assert PRESETS['MPSI']['default'] == cfg(mpsi['test_x4'])
    assert PRESETS['MMA']['T'] == dict(cfg(mma['test_MMA_x4']), num_feat=48, num_block=12)
    import yaml  # and the same network as our own MMA-T option file
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ours = yaml.safe_load(open(os.path.join(root, 'options', 'test', 'MMA', 'test_MMA-T_x4.yml')))['network_g']
    assert PRESETS['MMA']['T'] == {k: v for k, v in ours.items() if k not in ('type', 'upscale')}


def test_folder_of_mixed_inputs(tmp_path, net_and_weights, capsys):
    net, weights = net_and_weights
    rng = np.random.default_rng(0)
    src = tmp_path / 'in'
    src.mkdir()
    rgb8 = rand_img(rng, (12, 10, 3))
    rgb16 = rand_img(rng, (9, 11, 3), np.uint16)
    gray = rand_img(rng, (8, 13))
    rgba = rand_img(rng, (10, 9, 4))
    tiny = rand_img(rng, (5, 7, 3))
    write(src / 'a_rgb8.png', rgb8)
    write(src / 'b_rgb16.png', rgb16)
    write(src / 'c_gray.png', gray)
    write(src / 'd_rgba.png', rgba)
    write(src / 'e_tiny.bmp', tiny)
    (src / 'f_text.png').write_text('this is not a picture\n')
    (src / 'g_empty.png').write_bytes(b'')
    good = cv2.imencode('.png', rgb8)[1].tobytes()
    (src / 'h_truncated.png').write_bytes(good[:len(good) // 2])
    (src / 'notes.txt').write_text('ignored: no image extension')
    dst = tmp_path / 'out'

    rc, out, err = run(NET + ['--weights', weights, '-i', src, '-o', dst], capsys)
    assert rc == 1
    for bad in ('f_text.png', 'g_empty.png', 'h_truncated.png'):
        lines = [ln for ln in err.splitlines() if bad in ln and ln.startswith('basicsr infer:')]
        assert len(lines) == 1 and 'skipped' in lines[0], err
    assert 'Traceback' not in err
    assert '5 image(s) ok, 3 failed' in out
    assert sorted(os.listdir(dst)) == ['a_rgb8_x2.png', 'b_rgb16_x2.png', 'c_gray_x2.png', 'd_rgba_x2.png',
                                       'e_tiny_x2.png']

    # 8-bit colour: the network sees RGB in [0, 1]; output written back as BGR uint8.
    o = read(dst / 'a_rgb8_x2.png')
    assert o.shape == (24, 20, 3) and o.dtype == np.uint8
    ref = reference(net, rgb8[..., ::-1] / 255.)[..., ::-1]
    assert np.abs(o.astype(np.float64) - ref * 255).max() <= 0.51

    # 16-bit stays 16-bit, scaled by 65535.
    o = read(dst / 'b_rgb16_x2.png')
    assert o.shape == (18, 22, 3) and o.dtype == np.uint16
    ref = reference(net, rgb16[..., ::-1] / 65535.)[..., ::-1]
    assert np.abs(o.astype(np.float64) - ref * 65535).max() <= 1.0
    assert len(np.unique(o)) > 256  # really uses the 16-bit range

    # Gray: replicated to 3 channels, written back as one channel (luma of the output).
    o = read(dst / 'c_gray_x2.png')
    assert o.shape == (16, 26) and o.dtype == np.uint8
    y = reference(net, np.repeat(gray[..., None] / 255., 3, axis=2).astype(np.float32))
    ref = cv2.cvtColor(y, cv2.COLOR_RGB2GRAY)
    assert np.abs(o.astype(np.float64) - ref * 255).max() <= 0.51

    # RGBA: colour through the network, alpha bicubic (cv2.INTER_CUBIC, clipped) and kept.
    o = read(dst / 'd_rgba_x2.png')
    assert o.shape == (20, 18, 4) and o.dtype == np.uint8
    ref = reference(net, rgba[..., 2::-1] / 255.)[..., ::-1]
    assert np.abs(o[..., :3].astype(np.float64) - ref * 255).max() <= 0.51
    a = np.clip(cv2.resize(rgba[..., 3].astype(np.float32) / 255., (18, 20), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.abs(o[..., 3].astype(np.float64) - a * 255).max() <= 0.51

    # Tiny image (smaller than any attention window / tile).
    o = read(dst / 'e_tiny_x2.png')
    assert o.shape == (10, 14, 3)


def test_single_file_and_tiny_mamba_network(tmp_path, capsys):
    """Our own MambaIRv2Light (a preset with --net-opt overrides) through the CLI on a 5x7 image."""
    from mamba_sr_archs.archs.mambairv2_arch import MambaIRv2Light

    cfg = dict(PRESETS['MambaIRv2Light']['light'], embed_dim=8, d_state=4, depths=[1], num_heads=[2],
               window_size=4, inner_rank=4, num_tokens=4, upscale=2)
    torch.manual_seed(0)
    net = MambaIRv2Light(**cfg).eval()
    weights = tmp_path / 'light.pth'
    torch.save({'params': net.state_dict()}, weights)
    rng = np.random.default_rng(1)
    img = rand_img(rng, (5, 7, 3))
    write(tmp_path / 'small.png', img)
    argv = ['--arch', 'MambaIRv2Light', '--variant', 'light', '--scale', '2', '--weights', weights, '--device', 'cpu',
            '--net-opt', 'embed_dim=8', 'd_state=4', 'depths=[1]', 'num_heads=[2]', '--net-opt', 'window_size=4',
            'inner_rank=4', 'num_tokens=4', '-i', tmp_path / 'small.png', '-o', tmp_path / 'out', '--suffix', '_sr']
    rc, out, err = run(argv, capsys)
    assert rc == 0, err
    o = read(tmp_path / 'out' / 'small_sr.png')
    ref = reference(net, img[..., ::-1] / 255.)[..., ::-1]
    assert o.shape == (10, 14, 3)
    assert np.abs(o.astype(np.float64) - ref * 255).max() <= 0.51


def test_output_folder_equal_to_input_refused(tmp_path, net_and_weights, capsys):
    _, weights = net_and_weights
    src = tmp_path / 'in'
    src.mkdir()
    img = rand_img(np.random.default_rng(2), (6, 6, 3))
    write(src / 'x.png', img)
    before = (src / 'x.png').read_bytes()
    rc, _, err = run(NET + ['--weights', weights, '-i', src, '-o', src], capsys)
    assert rc == 2 and 'basicsr infer: error:' in err and 'input folder' in err
    # a single file into its own folder is refused when the output name is the input's, even with --overwrite
    rc, _, err = run(NET + ['--weights', weights, '-i', src / 'x.png', '-o', src, '--suffix', '', '--overwrite'],
                     capsys)
    assert rc == 2 and 'overwrite an input' in err
    assert (src / 'x.png').read_bytes() == before
    # ... and allowed when the names differ
    rc, _, err = run(NET + ['--weights', weights, '-i', src / 'x.png', '-o', src], capsys)
    assert rc == 0, err
    assert read(src / 'x_x2.png').shape == (12, 12, 3)
    assert (src / 'x.png').read_bytes() == before


def test_existing_output_needs_overwrite(tmp_path, net_and_weights, capsys):
    _, weights = net_and_weights
    src, dst = tmp_path / 'in', tmp_path / 'out'
    src.mkdir()
    write(src / 'x.png', rand_img(np.random.default_rng(3), (6, 6, 3)))
    argv = NET + ['--weights', weights, '-i', src, '-o', dst]
    assert run(argv, capsys)[0] == 0
    (dst / 'x_x2.png').write_bytes(b'old')
    rc, _, err = run(argv, capsys)
    assert rc == 2 and 'already exists' in err and '--overwrite' in err
    assert (dst / 'x_x2.png').read_bytes() == b'old'
    rc, _, err = run(argv + ['--overwrite'], capsys)
    assert rc == 0, err
    assert read(dst / 'x_x2.png').shape == (12, 12, 3)


def test_tiled_equals_whole_image(tmp_path, net_and_weights, capsys):
    """MSRResNet(num_block 1) sees ~6 LR pixels around each output pixel; tile_pad 12 covers that, so the
    blended tiles reproduce the whole-image output; a tile_pad of 0 visibly does not."""
    net, weights = net_and_weights
    rng = np.random.default_rng(4)
    img = rand_img(rng, (40, 37, 3), np.uint16)
    write(tmp_path / 'big.png', img)
    outs = {}
    for name, extra in (('whole', []), ('tiled', ['--tile', '12', '--tile-pad', '12']),
                        ('nopad', ['--tile', '12', '--tile-pad', '0'])):
        rc, _, err = run(NET + ['--weights', weights, '-i', tmp_path / 'big.png', '-o', tmp_path / name] + extra,
                         capsys)
        assert rc == 0, err
        outs[name] = read(tmp_path / name / 'big_x2.png').astype(np.float64) / 65535.
    assert outs['whole'].shape == (80, 74, 3)
    assert np.abs(outs['tiled'] - outs['whole']).max() <= 1.5 / 65535  # 16-bit rounding only
    assert np.abs(outs['nopad'] - outs['whole']).max() > 1e-2


def test_compare_picture(tmp_path, net_and_weights, capsys):
    _, weights = net_and_weights
    rng = np.random.default_rng(5)
    src, gt, dst = tmp_path / 'in', tmp_path / 'gt', tmp_path / 'out'
    src.mkdir()
    gt.mkdir()
    img = rand_img(rng, (7, 9, 3))
    hr = rand_img(rng, (14, 18, 3))
    write(src / 'p.png', img)
    write(src / 'q.png', img)
    write(gt / 'p.png', hr)  # no ground truth for q
    rc, _, err = run(NET + ['--weights', weights, '-i', src, '-o', dst, '--compare', '--gt', gt], capsys)
    assert rc == 0, err
    sr = read(dst / 'p_x2.png')
    cmp_p, cmp_q = read(dst / 'p_compare.png'), read(dst / 'q_compare.png')
    assert cmp_p.shape == (14, 3 * 18, 3) and cmp_q.shape == (14, 2 * 18, 3)
    bic = np.clip(cv2.resize(img.astype(np.float32) / 255., (18, 14), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.abs(cmp_p[:, :18].astype(np.float64) - bic * 255).max() <= 0.51
    assert np.array_equal(cmp_p[:, 18:36], sr)
    assert np.array_equal(cmp_p[:, 36:], hr)


def test_checkpoint_that_does_not_fit(tmp_path, capsys):
    torch.manual_seed(0)
    other = MSRResNet(num_feat=16, num_block=1, upscale=2)
    path = tmp_path / 'wide.pth'
    torch.save({'params': other.state_dict()}, path)
    write(tmp_path / 'x.png', rand_img(np.random.default_rng(6), (6, 6, 3)))
    rc, out, err = run(NET + ['--weights', path, '-i', tmp_path / 'x.png', '-o', tmp_path / 'out'], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('basicsr infer: error:'), err
    assert 'wide.pth' in lines[0] and 'does not fit' in lines[0] and len(lines[0]) < 500
    assert not (tmp_path / 'out').exists()

    # missing weights, unknown architecture, unknown variant, fp16 on CPU: one line each, exit 2
    for argv, words in (
        (NET + ['--weights', tmp_path / 'nope.pth'], 'nope.pth: no such file'),
        (['--arch', 'MSRResNett', '--scale', '2', '--weights', path], "did you mean MSRResNet"),
        (['--arch', 'MMA', '--variant', 'XL', '--scale', '2', '--weights', path], "unknown --variant 'XL'"),
        (NET + ['--weights', path, '--net-opt', 'num_featz=3'], "unknown argument 'num_featz'"),
        (NET + ['--weights', path, '--half'], '--half needs a GPU'),
        (NET + ['--weights', path, '--tf32', '--device', 'cpu'], '--tf32 needs a GPU'),
    ):
        rc, _, err = run(argv + ['-i', tmp_path / 'x.png', '-o', tmp_path / 'out'], capsys)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith('basicsr infer: error:'), err
        assert words in lines[0], lines[0]


def test_yaml_option_file(tmp_path, net_and_weights, capsys):
    """-opt TEST.yml: network_g, path.pretrain_network_g, scale and tile come from the file; the result
    equals the --arch form with the same tiling."""
    _, weights = net_and_weights
    write(tmp_path / 'x.png', rand_img(np.random.default_rng(7), (20, 17, 3)))
    opt = {
        'name': 'infer_test', 'model_type': 'SRModel', 'scale': 2, 'num_gpu': 0,
        'network_g': {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1,
                      'upscale': 2},
        'path': {'pretrain_network_g': weights, 'param_key_g': 'params', 'strict_load_g': True},
        'tile': {'tile_size': 8, 'tile_pad': 0},
    }
    yml = tmp_path / 'test.yml'
    yml.write_text(yaml.safe_dump(opt))
    rc, out, err = run(['-opt', yml, '-i', tmp_path / 'x.png', '-o', tmp_path / 'a', '--device', 'cpu'], capsys)
    assert rc == 0, err
    rc, _, err = run(NET + ['--weights', weights, '-i', tmp_path / 'x.png', '-o', tmp_path / 'b', '--tile', '8',
                            '--tile-pad', '0'], capsys)
    assert rc == 0, err
    rc, _, err = run(NET + ['--weights', weights, '-i', tmp_path / 'x.png', '-o', tmp_path / 'c'], capsys)
    a, b, c = (read(tmp_path / d / 'x_x2.png') for d in 'abc')
    assert a.shape == (40, 34, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # the YAML's tile (pad 0 < receptive field) was really used

    opt['path']['pretrain_network_g'] = str(tmp_path / 'missing.pth')
    yml.write_text(yaml.safe_dump(opt))
    rc, _, err = run(['-opt', yml, '-i', tmp_path / 'x.png', '-o', tmp_path / 'd'], capsys)
    assert rc == 2 and 'missing.pth' in err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_compile_and_tf32_on_gpu_match_plain_fp32(tmp_path, capsys):
    from mamba_sr_archs.archs.mma_arch import MMA
    torch.manual_seed(0)
    net = MMA(3, 3, num_feat=32, num_block=2, upscale=2, img_range=1.)
    path = tmp_path / 'mma.pth'
    torch.save({'params': net.state_dict()}, path)
    write(tmp_path / 'x.png', rand_img(np.random.default_rng(8), (24, 20, 3)))
    base = ['--arch', 'MMA', '--scale', '2', '--variant', 'none', '--net-opt', 'num_in_ch=3', 'num_out_ch=3',
            'num_feat=32', 'num_block=2', 'img_range=1.', '--weights', path, '-i', tmp_path / 'x.png',
            '--device', 'cuda']
    rc, _, err = run(base + ['-o', tmp_path / 'a'], capsys)
    assert rc == 0, err
    rc, _, err = run(base + ['-o', tmp_path / 'b', '--compile', '--tf32'], capsys)
    assert rc == 0, err
    a = cv2.imread(str(tmp_path / 'a' / 'x_x2.png')).astype(int)
    b = cv2.imread(str(tmp_path / 'b' / 'x_x2.png')).astype(int)
    assert a.shape == b.shape == (48, 40, 3) and np.abs(a - b).max() <= 1   # 8-bit outputs within one level

"""Tiled inference, self-ensemble, checkpoint mismatch reports and the model classes' guards."""
import logging
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mamba_sr_archs  # noqa: F401
from mamba_sr_archs.checkpoint import CheckpointError, describe_state_dict, load_state_dict_into
from mamba_sr_archs.inference import self_ensemble_forward, sr_forward, tiled_forward


class TinySR(nn.Module):
    """Two 3x3 convs + pixel shuffle: receptive field 5x5 (2 pixels of context)."""

    def __init__(self, scale=2):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 3 * scale * scale, 3, padding=1)
        self.up = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.up(self.c2(torch.relu(self.c1(x))))


@pytest.mark.parametrize('size', [(37, 50), (64, 64), (20, 9)])
def test_tiled_equals_whole_image_when_pad_covers_receptive_field(size):
    torch.manual_seed(0)
    net = TinySR().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        whole = net(x)
    # zero padding at tile borders differs from the whole image only within 2 px; pad 4 covers it
    tiled = tiled_forward(net, x, 2, tile_size=16, tile_pad=4)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_tiles_are_blended_not_cut():
    net = TinySR().eval()
    x = torch.rand(1, 3, 40, 40)
    calls = []

    def counting(inp):
        calls.append(tuple(inp.shape[-2:]))
        return net(inp)

    tiled_forward(counting, x, 2, tile_size=16, tile_pad=4)
    assert len(calls) == 9 and max(calls) == (24, 24)  # memory bounded by the tile, not the image
    # without enough context the seams show up, but blending keeps them small and finite
    rough = tiled_forward(net, x, 2, tile_size=16, tile_pad=0)
    assert torch.isfinite(rough).all()


def test_tiled_rejects_bad_sizes():
    with pytest.raises(ValueError, match='tile_size'):
        tiled_forward(TinySR(), torch.rand(1, 3, 8, 8), 2, tile_size=0)
    with pytest.raises(ValueError, match='tile_pad'):
        tiled_forward(TinySR(), torch.rand(1, 3, 8, 8), 2, tile_size=4, tile_pad=-1)


def test_self_ensemble_is_exact_for_an_equivariant_net_and_averages_otherwise():
    x = torch.rand(1, 3, 9, 13)
    up = lambda t: F.interpolate(t, scale_factor=2, mode='nearest')  # noqa: E731  (flip/transpose equivariant)
    torch.testing.assert_close(self_ensemble_forward(up, x), up(x))
    net = TinySR().eval()
    ens = sr_forward(net, x, 2, self_ensemble=True)
    assert ens.shape == (1, 3, 18, 26)
    with torch.no_grad():
        assert not torch.allclose(ens, net(x))


def test_wrong_checkpoint_gives_short_report(tmp_path):
    net = TinySR()
    other = nn.Sequential(nn.Conv2d(3, 4, 3))
    path = tmp_path / 'other.pth'
    torch.save({'params': {'module.' + k: v for k, v in other.state_dict().items()}}, path)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_into(net, path)
    msg = str(err.value)
    assert str(path) in msg and 'missing' in msg and 'unexpected' in msg
    assert len(msg.splitlines()) <= 4
    good = tmp_path / 'good.pth'
    torch.save({'params_ema': net.state_dict(), 'params': TinySR().state_dict()}, good)
    net2 = TinySR()
    load_state_dict_into(net2, good, param_key='params_ema')
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


def test_describe_names_variant_and_scale_on_shape_mismatch(tmp_path):
    from mamba_sr_archs.archs.mma_arch import MMA
    a, b = MMA(3, 3, 32, 2, 2), MMA(3, 3, 32, 2, 3)
    assert describe_state_dict(b.state_dict()) == 'MMA (num_feat 32, num_block 2, x3)'
    path = tmp_path / 'x3.pth'
    torch.save({'params': b.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r'(?s)looks like MMA \(num_feat 32, num_block 2, x3\).*shape mismatch'):
        load_state_dict_into(a, path)
    load_state_dict_into(a, path, strict=False)  # BasicSR's strict_load_g: false skips the mismatched upsampler


def test_safetensors_weights_load(tmp_path):
    from safetensors.torch import save_file
    net = TinySR()
    save_file(net.state_dict(), str(tmp_path / 'w.safetensors'))
    net2 = TinySR()
    load_state_dict_into(net2, tmp_path / 'w.safetensors')
    assert torch.equal(net.c1.weight, net2.c1.weight)


def _model_opt(tmp_path, **train):
    """A training opt dict for build_model: the tiny MambaIRv2 of conftest on CPU, ``train`` keys added."""
    from conftest import TINY_NET
    return {'name': 't', 'model_type': 'MambaIRv2Model', 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
            'rank': 0, 'world_size': 1, 'network_g': dict(TINY_NET), 'path': {'models': str(tmp_path)},
            'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3},
                      'scheduler': {'type': 'MultiStepLR', 'milestones': [10], 'gamma': 0.5},
                      'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, **train},
            'val': {}}


def test_nonfinite_loss_steps_are_skipped_then_training_stops(tmp_path):
    from basicsr.models import build_model

    from mamba_sr_archs.models import NonFiniteLossError
    model = build_model(_model_opt(tmp_path, max_nonfinite_steps=3))
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    lq, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16)
    gt_bad = gt.clone()
    gt_bad[0, 0, 0, 0] = math.nan
    for it in (1, 2):
        model.feed_data({'lq': lq, 'gt': gt_bad})
        model.optimize_parameters(it)
    assert all(torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())  # nothing applied
    model.feed_data({'lq': lq, 'gt': gt})
    model.optimize_parameters(3)  # a good step resets the counter and updates
    assert not torch.equal(before['conv_first.weight'], model.net_g.state_dict()['conv_first.weight'])
    model.feed_data({'lq': lq, 'gt': gt_bad})
    model.optimize_parameters(4)
    model.optimize_parameters(5)
    with pytest.raises(NonFiniteLossError, match='3 consecutive non-finite losses'):
        model.optimize_parameters(6)


def test_bf16_autocast_option_trains_in_bf16_with_fp32_loss(tmp_path, monkeypatch):
    from basicsr.models import build_model
    model = build_model(_model_opt(tmp_path, autocast='bf16'))
    seen = []
    model.net_g.conv_first.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    lq, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16)
    before = model.net_g.conv_first.weight.detach().clone()
    model.feed_data({'lq': lq, 'gt': gt})
    model.optimize_parameters(1)
    assert seen == [torch.bfloat16]                      # the forward ran under bf16 autocast
    assert model.output.dtype == torch.float32           # the loss sees fp32
    assert model.net_g.conv_first.weight.dtype == torch.float32 and math.isfinite(model.log_dict['l_pix'])
    assert not torch.equal(before, model.net_g.conv_first.weight)


def test_speed_options_reject_bad_values_and_fall_back_on_cpu(tmp_path):
    from basicsr.models import build_model
    with pytest.raises(ValueError, match="autocast must be 'bf16'"):
        build_model(_model_opt(tmp_path, autocast='int8'))
    with pytest.raises(ValueError, match='GradScaler'):
        build_model(_model_opt(tmp_path, autocast='fp16'))
    model = build_model(_model_opt(tmp_path, cuda_graph=True, tf32=True))   # CPU: warned, eager training
    assert model._use_graph is False
    model.feed_data({'lq': torch.rand(1, 3, 8, 8), 'gt': torch.rand(1, 3, 16, 16)})
    model.optimize_parameters(1)
    assert math.isfinite(model.log_dict['l_pix'])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_graph_training_matches_eager(tmp_path):
    """cuda_graph: true gives the same weights as eager training over several steps and a changed batch shape."""
    from basicsr.models import build_model
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    net = dict(type='MMA', num_in_ch=3, num_out_ch=3, num_feat=32, num_block=2, upscale=2, img_range=1.)
    models = []
    for graph in (False, True):
        torch.manual_seed(0)
        opt = _model_opt(tmp_path, cuda_graph=graph)
        opt.update(num_gpu=1, network_g=net, model_type='MMAModel')
        opt['train']['optim_g'] = {'type': 'Adam', 'lr': 1e-3, 'fused': True}
        models.append(build_model(opt))
    assert models[1]._use_graph
    g = torch.Generator().manual_seed(1)
    for it, size in enumerate((16, 16, 16, 24, 24), 1):
        lq, gt = torch.rand(2, 3, size, size, generator=g), torch.rand(2, 3, 2 * size, 2 * size, generator=g)
        for m in models:
            m.feed_data({'lq': lq, 'gt': gt})
            m.optimize_parameters(it)
        assert models[0].log_dict['l_pix'] == pytest.approx(models[1].log_dict['l_pix'], rel=1e-4)
    for (k, a), b in zip(models[0].net_g.state_dict().items(), models[1].net_g.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)


def test_compile_option_trains_like_eager(tmp_path):
    """train: {compile: <backend>} runs the training forward through torch.compile; same losses and weights as eager
    (aot_eager: AOT autograd without a C++ compile); the checkpoint keys stay net_g's own."""
    from basicsr.models import build_model
    models = []
    for backend in (None, 'aot_eager'):
        torch.manual_seed(0)
        opt = _model_opt(tmp_path, compile=backend)
        opt['network_g'] = dict(type='MMA', num_in_ch=3, num_out_ch=3, num_feat=32, num_block=1, upscale=2,
                                img_range=1.)
        opt['model_type'] = 'MMAModel'
        models.append(build_model(opt))
    g = torch.Generator().manual_seed(1)
    for it in (1, 2, 3):
        lq, gt = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 16, 16, generator=g)
        for m in models:
            m.feed_data({'lq': lq, 'gt': gt})
            m.optimize_parameters(it)
        assert models[0].log_dict['l_pix'] == pytest.approx(models[1].log_dict['l_pix'], rel=1e-5)
    sd0, sd1 = models[0].net_g.state_dict(), models[1].net_g.state_dict()
    assert sd0.keys() == sd1.keys() and not any(k.startswith('_orig_mod') for k in sd1)
    for k in sd0:
        torch.testing.assert_close(sd1[k], sd0[k], rtol=1e-5, atol=1e-6, msg=k)
    with pytest.raises(ValueError, match='compile must be'):
        build_model(_model_opt(tmp_path, compile=3))


def test_lean_memory_option_marks_the_mamba_layers(tmp_path, caplog):
    from basicsr.models import build_model

    from mamba_sr_archs.archs.mamba_layer import Mamba
    opt = _model_opt(tmp_path, lean_memory=True)
    opt.update(model_type='MMAModel',
               network_g=dict(type='MMA', num_in_ch=3, num_out_ch=3, num_feat=32, num_block=1, upscale=2))
    model = build_model(opt)
    layers = [m for m in model.net_g.modules() if isinstance(m, Mamba)]
    assert layers and all(m.lean_memory == 2 for m in layers)       # true means level 2
    model.feed_data({'lq': torch.rand(1, 3, 8, 8), 'gt': torch.rand(1, 3, 16, 16)})
    model.optimize_parameters(1)            # CPU: the plain layer runs (no kernel scan backend here)
    assert math.isfinite(model.log_dict['l_pix'])
    # MambaIRv2 has no Mamba (S6) layer: a warning on BasicSR's root logger (which may not propagate to the root
    # logger caplog listens on, depending on which test set it up first)
    basicsr_logger = logging.getLogger('basicsr')
    basicsr_logger.addHandler(caplog.handler)
    try:
        build_model(_model_opt(tmp_path, lean_memory=True))
    finally:
        basicsr_logger.removeHandler(caplog.handler)
    assert 'lean_memory applies to Mamba (S6) layers' in caplog.text
    opt['train']['lean_memory'] = 1
    assert all(m.lean_memory == 1 and m.lean_memory is not True
               for m in build_model(opt).net_g.modules() if isinstance(m, Mamba))
    for bad in (3, 'yes', 1.5):
        opt['train']['lean_memory'] = bad
        with pytest.raises(ValueError, match='lean_memory must be'):
            build_model(opt)

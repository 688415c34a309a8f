"""MambaIRv2 / MambaIRv2Light against the official model (golden files in ../shared/golden).

Checks: state-dict keys/shapes/buffers and parameter counts of all 16 published variants, numerical
parity (float32 and float64, batch 1 and 2, per-layer routes), padding of odd and tiny sizes, batch
independence, one training step, deterministic vs. Gumbel eval routing, and the option files.
"""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import GOLDEN, REPO, load_golden
from mamba_sr_archs.archs.mambairv2_arch import (ASSM, MambaIRv2, MambaIRv2Light, index_reverse, pad_by_flip,
                                                 semantic_neighbor, shifted_window_mask)

CLASSES = {'MambaIRv2': MambaIRv2, 'MambaIRv2Light': MambaIRv2Light}
KEYS = json.loads((GOLDEN / 'mambairv2_keys.json').read_text())['variants']
GOLDEN_FILES = ['mambairv2_reduced_x2_golden.pt', 'mambairv2_light_x2_golden.pt']

# small configs for behaviour tests (random weights)
SMALL = dict(embed_dim=12, d_state=4, depths=[2], num_heads=[2], window_size=8, inner_rank=8, num_tokens=8,
             mlp_ratio=1.0, img_range=1.0)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def _randomize(model, seed=0):
    """Overwrite every parameter with O(1) values so that no init constant hides a difference."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(('scale1', 'scale2')):  # layer scales: keep the residual stream bounded
                p.copy_(torch.rand(p.shape, generator=g) * 0.09 + 0.01)
            elif p.dim() == 1 and name.endswith(('weight', 'Ds')):  # norms, D
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif p.dim() == 1:  # biases
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
    return model


# ------------------------------------------------------------------------------------------------
# structure
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('variant', sorted(KEYS))
def test_state_dict_matches_official(variant):
    ref = KEYS[variant]
    with torch.device('meta'):  # 34M-parameter variants: shapes only, no memory, no init cost
        model = CLASSES[ref['class_name']](**ref['config'])
    sd = model.state_dict()
    assert list(sd) == list(ref['state_dict'])  # same keys in the same order
    assert {k: list(v.shape) for k, v in sd.items()} == ref['state_dict']
    assert sum(p.numel() for p in model.parameters()) == ref['num_params']
    buffers = {k: list(v.shape) for k, v in model.named_buffers() if k in sd}
    assert buffers == ref['buffers']
    assert {k: str(sd[k].dtype).replace('torch.', '') for k in buffers} == ref['non_float32_dtypes']
    assert all(v.dtype == torch.float32 for k, v in sd.items() if k not in buffers)


def test_relative_position_index_and_mask_match_swin_construction():
    ws, shift, h, w = 8, 4, 16, 24
    model = MambaIRv2(**SMALL)
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing='ij')).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + ws - 1
    assert torch.equal(model.relative_position_index_SA, rel[0] * (2 * ws - 1) + rel[1])
    # reference mask built with the slice assignments of Swin / the official calculate_mask
    img = torch.zeros(h, w)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[hs, wsl] = cnt
            cnt += 1
    win = img.view(h // ws, ws, w // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    diff = win[:, None, :] - win[:, :, None]
    ref = torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))
    assert torch.equal(shifted_window_mask(h, w, ws, shift), ref)


def test_semantic_neighbour_permutation_is_stable_and_inverted():
    g = torch.Generator().manual_seed(1)
    route = torch.randint(0, 4, (3, 50), generator=g)  # many ties
    order = torch.sort(route, dim=-1, stable=True)[1]
    for b in range(3):  # stable: equal routes keep raster order
        ref = sorted(range(50), key=lambda i: (route[b, i].item(), i))
        assert order[b].tolist() == ref
    inv = index_reverse(order)
    assert torch.equal(inv, torch.argsort(order, dim=-1))
    x = torch.randn(3, 50, 5, generator=g)
    assert torch.equal(semantic_neighbor(semantic_neighbor(x, order), inv), x)
    assert torch.equal(semantic_neighbor(x, order)[:, :, 0].gather(1, inv), x[:, :, 0])


# ------------------------------------------------------------------------------------------------
# golden parity
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module', params=GOLDEN_FILES)
def golden(request):
    d = load_golden(request.param)
    model = CLASSES[d['class_name']](**d['config'])
    model.load_state_dict(d['state_dict'], strict=True)
    return d, model.eval()


def _run_recording_routes(model, x):
    routes = []
    hooks = [m.route.register_forward_hook(lambda mod, inp, out: routes.append(out.argmax(-1)))
             for m in model.modules() if isinstance(m, ASSM)]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return y, torch.stack(routes).to(torch.int16)


@pytest.mark.parametrize('suffix', ['', '_batch2'])
def test_golden_parity_float32(golden, suffix):
    d, model = golden
    model.float()
    y, routes = _run_recording_routes(model, d['input' + suffix])
    assert torch.equal(routes, d['route_index' + suffix]), 'route argmax differs from the official model'
    assert y.shape == d['output' + suffix].shape
    torch.testing.assert_close(y, d['output' + suffix], atol=d['atol_hint'], rtol=0)


@pytest.mark.parametrize('suffix', ['', '_batch2'])
def test_golden_parity_float64(golden, suffix):
    d, model = golden
    model.double()
    try:
        y, routes = _run_recording_routes(model, d['input' + suffix].double())
    finally:
        model.float()
    assert torch.equal(routes, d['route_index' + suffix])
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, d['output' + suffix + '_f64'], atol=1e-9, rtol=0)


# ------------------------------------------------------------------------------------------------
# sizes, batches, determinism
# ------------------------------------------------------------------------------------------------
def test_flip_padding_equals_official_and_extends_tiny_images():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    # normal case (pad <= size): the official cat-with-flip-then-crop
    ref = torch.cat([x, x.flip(2)], 2)[:, :, :8]
    ref = torch.cat([ref, ref.flip(3)], 3)[:, :, :, :8]
    assert torch.equal(pad_by_flip(x, 8, 8), ref)
    # tiny case (pad > size): periodic mirror extension, rows 0..4,4..0,0..4,4
    out = pad_by_flip(x, 16, 16)
    rows = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 4]
    cols = [0, 1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1, 0, 0, 1]
    assert torch.equal(out, x[:, :, rows][:, :, :, cols])


@pytest.mark.parametrize('cls,upsampler,scale,in_chans,size', [
    (MambaIRv2Light, 'pixelshuffledirect', 2, 3, (5, 7)),   # smaller than half a window
    (MambaIRv2Light, 'pixelshuffledirect', 3, 3, (1, 1)),
    (MambaIRv2, 'pixelshuffle', 4, 3, (11, 3)),
    (MambaIRv2, 'pixelshuffle', 3, 3, (17, 9)),             # more than one window, odd
    (MambaIRv2, 'nearest+conv', 4, 3, (6, 5)),
    (MambaIRv2, '', 1, 1, (5, 7)),                           # CAR / denoising head, gray
])
def test_any_input_size_gives_exact_output_shape(cls, upsampler, scale, in_chans, size):
    model = cls(**SMALL, upscale=scale, upsampler=upsampler, in_chans=in_chans).eval()
    x = torch.rand(2, in_chans, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, in_chans, size[0] * scale, size[1] * scale)
    assert torch.isfinite(y).all()


def test_window16_tiny_image_5x7():
    model = MambaIRv2Light(embed_dim=12, d_state=4, depths=[2], num_heads=[2], window_size=16, inner_rank=8,
                           num_tokens=8, mlp_ratio=1.0, upscale=2, upsampler='pixelshuffledirect').eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 5, 7))
    assert y.shape == (1, 3, 10, 14)


def test_batch_equals_single_runs():
    model = _randomize(MambaIRv2(**SMALL, upscale=2, upsampler='pixelshuffle')).eval()
    x = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        yb = model(x)
        ys = torch.cat([model(x[:1]), model(x[1:])])
    torch.testing.assert_close(yb, ys, atol=1e-5, rtol=0)


def test_eval_is_deterministic_and_gumbel_option_keeps_state_dict():
    d = load_golden('mambairv2_reduced_x2_golden.pt')
    model = MambaIRv2(**d['config'])
    model.load_state_dict(d['state_dict'], strict=True)
    model.eval()
    x = d['input']
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    assert torch.equal(y1, y2)

    gumbel = MambaIRv2(**d['config'], eval_routing='gumbel')
    sd_g, sd_a = gumbel.state_dict(), model.state_dict()
    assert list(sd_g) == list(sd_a) and all(sd_g[k].shape == sd_a[k].shape for k in sd_a)
    gumbel.load_state_dict(d['state_dict'], strict=True)
    gumbel.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        yg = gumbel(x)
    assert (yg - y1).abs().max() > 1e-3  # Gumbel noise changes the routes, hence the output
    gumbel.set_eval_routing('argmax')
    with torch.no_grad():
        assert torch.equal(gumbel(x), y1)
    with pytest.raises(ValueError):
        MambaIRv2(**SMALL, eval_routing='softmax')


def test_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    model = MambaIRv2Light(**SMALL, upscale=2, upsampler='pixelshuffledirect').train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lq, gt = torch.rand(2, 3, 8, 12), torch.rand(2, 3, 16, 24)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = F.l1_loss(model(lq), gt)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f'no gradient reaches {name}'
    opt.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(list(model.parameters()))


# ------------------------------------------------------------------------------------------------
# option files
# ------------------------------------------------------------------------------------------------
# the published variants only (other files in these folders, e.g. demos, are not official configs)
OPTION_FILES = sorted((REPO / 'options').glob('*/MambaIRv2/t*_MambaIRv2_*_x[234].yml'))


def test_option_files_exist():
    names = {p.name for p in OPTION_FILES}
    for kind in ('train', 'test'):
        for var in ('lightSR', 'SRSmall', 'SR', 'SRLarge'):
            for s in (2, 3, 4):
                assert f'{kind}_MambaIRv2_{var}_x{s}.yml' in names


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda p: f'{p.parent.parent.name}/{p.name}')
def test_option_file_builds_official_variant(path):
    yaml = pytest.importorskip('yaml')
    opt = yaml.safe_load(path.read_text())
    net = dict(opt['network_g'])
    cls = CLASSES[net.pop('type')]
    with torch.device('meta'):
        model = cls(**net)
    ref = KEYS['test_' + path.stem.split('_', 1)[1]]
    assert ref['class_name'] == cls.__name__
    assert sum(p.numel() for p in model.parameters()) == ref['num_params']
    assert opt['scale'] == net['upscale']
    assert opt['model_type'] == ('MambaIRv2LightModel' if cls is MambaIRv2Light else 'MambaIRv2Model')


def test_checkpointed_training_gives_the_same_gradients():
    torch.manual_seed(0)
    ref = MambaIRv2(**SMALL, upscale=2, upsampler='pixelshuffle').train()
    ckpt = MambaIRv2(**SMALL, upscale=2, upsampler='pixelshuffle', use_checkpoint=True).train()
    ckpt.load_state_dict(ref.state_dict(), strict=True)
    lq, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16)
    for model in (ref, ckpt):
        torch.manual_seed(1)  # same Gumbel draws; checkpointing replays them in the recomputation
        F.l1_loss(model(lq), gt).backward()
    for (name, p), q in zip(ref.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)

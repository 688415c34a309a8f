"""MPSI against the official network: keys, strict loading, golden outputs, training, MCRM gating.

Reference data: ../shared/golden/mpsi_keys.json (official state-dict layout of the published x2/x3/x4
configs) and mpsi_reduced_x2_golden.pt (official outputs of a depth-4 model, float32 and float64).
"""
import copy
import json

import pytest
import torch

from conftest import GOLDEN, load_golden
from mamba_sr_archs.archs.mpsi_arch import MPSI, RECOMPUTED_BUFFERS, is_recomputed_key, shift_window_mask

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope='module')
def golden():
    return load_golden('mpsi_reduced_x2_golden.pt')


@pytest.fixture(scope='module')
def key_ref():
    path = GOLDEN / 'mpsi_keys.json'
    if not path.is_file():
        pytest.fail(f'golden file missing: {path}')
    return json.loads(path.read_text())


def build(golden, **overrides):
    model = MPSI(**{**golden['config'], **overrides})
    result = model.load_state_dict(golden['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model.eval()


@pytest.fixture(scope='module')
def model(golden):
    return build(golden)


def official_like_state_dict(variant, golden):
    """A state dict with the official key set/shapes/dtypes of a published variant: random values,
    except the window position tables (equal to the golden file's, same windows) and zero masks."""
    gen = torch.Generator().manual_seed(0)
    sd = {}
    int_keys = variant['non_float32_dtypes']
    for key, shape in variant['state_dict'].items():
        name = key.rsplit('.', 1)[-1]
        if name in ('rpe_biases', 'relative_position_index'):
            sd[key] = golden['state_dict'][f'layers.layer_0.blocks.0.attn.{key.split(".attn.", 1)[1]}'].clone()
        elif key in int_keys:
            sd[key] = torch.zeros(shape, dtype=getattr(torch, int_keys[key].replace('torch.', '')))
        elif name.startswith('attn_mask'):
            sd[key] = torch.zeros(shape)
        else:
            sd[key] = torch.randn(shape, generator=gen)
    return sd


# --------------------------------------------------------------------------------------------- registry
def test_registered_in_basicsr():
    registry = pytest.importorskip('basicsr.utils.registry')
    assert registry.ARCH_REGISTRY.get('MPSI') is MPSI


# --------------------------------------------------------------------------------------------- keys
@pytest.mark.parametrize('variant', ['test_x2', 'test_x3', 'test_x4'])
def test_published_config_keys_shapes_and_counts(variant, key_ref, golden):
    ref = key_ref['variants'][variant]
    net = MPSI(**ref['config'])
    assert sum(p.numel() for p in net.parameters()) == ref['num_params']

    sd = net.state_dict()
    kept = [k for k in ref['state_dict'] if not is_recomputed_key(k)]
    dropped = [k for k in ref['state_dict'] if is_recomputed_key(k)]
    # 18 attention branches x 2 position tables + 4 shifted blocks x 2 masks
    assert len(dropped) == 44 and {k.rsplit('.', 1)[-1] for k in dropped} == set(RECOMPUTED_BUFFERS)
    assert list(sd) == kept  # same names, same order
    assert {k: list(v.shape) for k, v in sd.items()} == {k: ref['state_dict'][k] for k in kept}
    for key, dtype in ref['non_float32_dtypes'].items():
        if key in sd:
            assert str(sd[key].dtype).replace('torch.', '') == dtype.replace('torch.', '')
    assert len(sd) == ref['num_state_dict_entries'] - len(dropped)
    persistent_buffers = [k for k in sd if k not in dict(net.named_parameters())]
    assert persistent_buffers == [k for k in ref['buffers'] if not is_recomputed_key(k)]

    # an official-layout checkpoint loads strictly, ours round-trips strictly
    net.load_state_dict(official_like_state_dict(ref, golden), strict=True)
    net.load_state_dict(copy.deepcopy(net.state_dict()), strict=True)


def test_golden_state_dict_loads_strictly(model, golden):
    sd = model.state_dict()
    for key, value in golden['state_dict'].items():
        if not is_recomputed_key(key):
            assert torch.equal(sd[key], value), key
    # our own state dict round-trips
    MPSI(**golden['config']).load_state_dict(sd, strict=True)


def test_recomputed_tables_equal_official_buffers(model, golden):
    sd = golden['state_dict']
    for i in (0, 2):
        for j in (0, 1):
            attn = model.layers['layer_0'].blocks[i].attn.attns[j]
            prefix = f'layers.layer_0.blocks.{i}.attn.attns.{j}.'
            assert torch.equal(attn.rpe_biases, sd[prefix + 'rpe_biases'])
            assert torch.equal(attn.relative_position_index, sd[prefix + 'relative_position_index'])
    # official masks were built for img_size 32 (the reduced config)
    assert torch.equal(shift_window_mask(32, 32, (8, 32), (4, 16)), sd['layers.layer_0.blocks.2.attn.attn_mask_0'])
    assert torch.equal(shift_window_mask(32, 32, (32, 8), (16, 4)), sd['layers.layer_0.blocks.2.attn.attn_mask_1'])


def test_strict_load_still_catches_mismatches(golden):
    net = MPSI(**golden['config'])
    sd = golden['state_dict']
    bad = dict(sd, **{'layers.layer_0.blocks.0.attn.attn_mask_0': torch.zeros(4, 256, 256)})  # unshifted block
    with pytest.raises(RuntimeError, match='Unexpected key'):
        net.load_state_dict(bad, strict=True)
    bad = dict(sd)
    key = 'layers.layer_0.blocks.0.attn.attns.1.relative_position_index'
    bad[key] = sd[key].flip(0)
    with pytest.raises(RuntimeError, match='value mismatch'):
        net.load_state_dict(bad, strict=True)
    bad = dict(sd)
    bad['layers.layer_0.blocks.2.attn.attn_mask_1'] = torch.zeros(4, 64, 64)
    with pytest.raises(RuntimeError, match='size mismatch'):
        net.load_state_dict(bad, strict=True)
    bad = {k: v for k, v in sd.items() if not k.endswith('blocks.1.attn.temperature')}
    with pytest.raises(RuntimeError, match='Missing key'):
        net.load_state_dict(bad, strict=True)


# --------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize('which', ['', '_batch2'])
def test_golden_parity_float32(model, golden, which):
    x, ref = golden['input' + which], golden['output' + which]
    with torch.no_grad():
        y = model(x)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, atol=golden['atol_hint'], rtol=0)
    assert ((y - ref).norm() / ref.norm()).item() < 1e-4


def test_golden_parity_float64(golden):
    net = build(golden).double()
    with torch.no_grad():
        for which in ('', '_batch2'):
            y = net(golden['input' + which].double())
            assert y.dtype == torch.float64
            torch.testing.assert_close(y, golden[f'output{which}_f64'], atol=1e-9, rtol=0)


def test_masks_follow_input_size(model):
    cache = model.layers['layer_0'].blocks[2].attn.mask_cache
    assert cache is model.layers['layer_0'].blocks[0].attn.mask_cache  # shared by the group
    with torch.no_grad():
        model(torch.rand(1, 3, 33, 9))  # pads to 64 x 32
    masks = cache.get(64, 32, (8, 32), (4, 16), torch.device('cpu'), torch.float32)
    assert masks[0].shape == (8, 256, 256) and masks[1].shape == (8, 256, 256)
    assert masks is cache.get(64, 32, (8, 32), (4, 16), torch.device('cpu'), torch.float32)  # cached
    assert torch.equal(masks[0], shift_window_mask(64, 32, (8, 32), (4, 16)))


@pytest.mark.parametrize('size', [(1, 1), (5, 7), (33, 9)])
def test_odd_sizes_and_batch_independence(model, size):
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
        y0 = model(x[:1])
    assert y.shape == (2, 3, 2 * size[0], 2 * size[1])
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[:1], y0, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------- training
def test_one_training_step_updates_every_used_parameter(golden):
    net = build(golden, drop_path_rate=0.).train()
    unused = {name for name, _ in golden['params_without_effect_on_output']}
    params = dict(net.named_parameters())
    assert unused <= set(params)
    before = {k: p.detach().clone() for k, p in params.items()}
    gen = torch.Generator().manual_seed(2)
    x, target = torch.rand(2, 3, 12, 10, generator=gen), torch.rand(2, 3, 24, 20, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss = torch.nn.functional.l1_loss(net(x), target)
    loss.backward()
    for name, p in params.items():
        if name in unused:  # unreachable, or reachable with only rounding-level gradient (degenerate DPB)
            assert p.grad is None or p.grad.abs().max() < 1e-6, name
        else:
            assert p.grad is not None and p.grad.abs().max() > 0, name
    opt.step()
    for name, p in params.items():
        if name not in unused:
            assert not torch.equal(p.detach(), before[name]), name


# --------------------------------------------------------------------------------------------- MCRM
def test_mcrm_gates_the_group_output(golden):
    net = build(golden)
    group = net.layers['layer_0']
    seen = []
    group.mamba.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    x = torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = net(x)
        assert seen == [torch.Size([1, len(group.blocks) + 1, 60])]  # a token before every block + after the last

        gated = copy.deepcopy(net)
        gated.layers['layer_0'].mlp1.fc2.bias.add_(2.0)
        assert (gated(x) - y).abs().max() > 1e-3

        # gate closed: the blocks no longer reach the output
        closed = copy.deepcopy(net)
        closed.layers['layer_0'].mlp1.fc2.weight.zero_()
        closed.layers['layer_0'].mlp1.fc2.bias.fill_(-60.0)
        y_closed = closed(x)
        assert (y_closed - y).abs().max() > 1e-3
        closed.layers['layer_0'].blocks[0].ffn.fc2.weight.mul_(1.5)
        assert (closed(x) - y_closed).abs().max() < 1e-6

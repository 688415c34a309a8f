"""Every option file in options/ parses, passes the CLI's checks and builds its network."""
from pathlib import Path

import pytest
import torch

import mamba_sr_archs  # noqa: F401
from mamba_sr_archs.cli import validate_options

REPO = Path(__file__).resolve().parents[1]
FILES = sorted((REPO / 'options').rglob('*.yml'))


def test_every_network_has_train_and_test_files():
    names = {p.relative_to(REPO / 'options').parts[:2] for p in FILES}
    for net in ('MambaIRv2', 'MMA', 'MPSI'):
        assert ('train', net) in names and ('test', net) in names
    assert len(FILES) >= 46


@pytest.mark.parametrize('path', FILES, ids=[str(p.relative_to(REPO / 'options')) for p in FILES])
def test_option_file_builds(path):
    from basicsr.archs import build_network

    opt = validate_options(str(path), is_train=path.parts[-3] == 'train')
    try:
        with torch.device('meta'):  # shapes only: no memory, no init time for the 20-34M parameter variants
            net = build_network(dict(opt['network_g']))
    except NotImplementedError:  # an __init__ that computes tables from data (MPSI, 1.4M parameters)
        net = build_network(dict(opt['network_g']))
    assert sum(p.numel() for p in net.parameters()) > 0
    scale = opt.get('scale', 1)
    assert net.upscale == scale if hasattr(net, 'upscale') else True
    for phase, ds in opt['datasets'].items():
        if phase.startswith(('val', 'test')) and 'shared/datasets' in str(ds.get('dataroot_gt', '')):
            gt = (REPO / ds['dataroot_gt']).resolve()
            assert gt.is_dir(), f'{path.name}: {phase} dataroot_gt {gt} does not exist'
    for metric in (opt.get('val') or {}).get('metrics', {}).values():
        assert metric.get('crop_border') == scale and metric.get('test_y_channel') is True

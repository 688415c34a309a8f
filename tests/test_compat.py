"""Each BasicSR work-around in mamba_sr_archs.compat, with a check that fails without it."""
import os
import pickle
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

import mamba_sr_archs  # noqa: F401  (applies compat)
from mamba_sr_archs import compat
from mamba_sr_archs.checkpoint import CheckpointError, atomic_torch_save, load_checkpoint


# Loads compat.py on its own (not through the package, whose import applies every patch) and installs only the
# torchvision shim, so that a subprocess sees BasicSR's original behaviour.
SHIM_ONLY = f"""
import importlib.util
_spec = importlib.util.spec_from_file_location('standalone_compat', {str(compat.__file__)!r})
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
_mod.install_torchvision_shim()
"""


def _run_py(code, env=None, cwd=None):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=120)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_torchvision_shim_lets_basicsr_registry_import():
    without = _run_py('from basicsr.utils.registry import ARCH_REGISTRY')
    assert without.returncode != 0 and 'functional_tensor' in without.stderr
    with_shim = _run_py(SHIM_ONLY + '''
from basicsr.utils.registry import ARCH_REGISTRY
from basicsr.data.degradations import rgb_to_grayscale
import sys
assert 'mamba_sr_archs' not in sys.modules
print('ok')''')
    assert with_shim.returncode == 0, with_shim.stderr
    assert 'ok' in with_shim.stdout


def test_local_rank_hyphen_is_normalised_and_basicsr_rejects_it_otherwise(tmp_path):
    from basicsr.utils import options
    argv = ['-opt', 'x.yml', '--local-rank=1']
    old = sys.argv
    try:
        sys.argv = ['prog'] + argv
        with pytest.raises(SystemExit):
            options.parse_options(str(tmp_path))  # BasicSR's argparse knows only --local_rank
    finally:
        sys.argv = old
    assert compat.normalize_argv(argv, environ={}) == ['-opt', 'x.yml', '--local_rank=1']
    assert compat.normalize_argv(['--local-rank', '0'], environ={}) == ['--local_rank', '0']


def test_torchrun_environment_selects_pytorch_launcher():
    env = {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '2'}
    assert compat.normalize_argv(['-opt', 'a.yml'], environ=env)[-2:] == ['--launcher', 'pytorch']
    assert compat.normalize_argv(['-opt', 'a.yml', '--launcher', 'none'], environ=env) == [
        '-opt', 'a.yml', '--launcher', 'none'
    ]
    assert '--launcher' not in compat.normalize_argv(['-opt', 'a.yml'], environ={})


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU (gloo) path')
def test_init_dist_uses_gloo_on_cpu_and_basicsr_original_fails():
    env = {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1',
           'MASTER_PORT': str(_free_port())}
    original = _run_py(SHIM_ONLY + '''
from basicsr.utils.dist_util import init_dist
init_dist('pytorch')''', env=env)
    assert original.returncode != 0  # hard-coded NCCL / torch.cuda.set_device on a CPU machine
    ours = _run_py('''
        import mamba_sr_archs
        import torch.distributed as dist
        from basicsr.utils import options
        options.init_dist('pytorch')
        print(dist.get_backend(), dist.get_world_size())''', env=env)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.split() == ['gloo', '1']


def _opt(name, auto_resume=True):
    return {'name': name, 'auto_resume': auto_resume, 'path': {}, 'num_gpu': 0}


def _state(it):
    return {'epoch': 0, 'iter': it, 'optimizers': [], 'schedulers': []}


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU path')
def test_resume_on_cpu_and_corrupt_newest_state_falls_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    states = tmp_path / 'experiments' / 'run' / 'training_states'
    states.mkdir(parents=True)
    atomic_torch_save(_state(3), states / '3.state')
    atomic_torch_save(_state(6), states / '6.state')

    import basicsr.train
    original = compat.ORIGINALS['basicsr.train.load_resume_state']
    with pytest.raises((RuntimeError, AssertionError)):
        original(_opt('run'))  # calls torch.cuda.current_device()

    opt = _opt('run')
    assert basicsr.train.load_resume_state(opt)['iter'] == 6
    assert opt['path']['resume_state'].endswith('6.state')

    (states / '9.state').write_bytes((states / '6.state').read_bytes()[:100])  # killed mid-write (no atomic save)
    opt = _opt('run')
    assert basicsr.train.load_resume_state(opt)['iter'] == 6


def test_atomic_save_leaves_old_file_intact_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / 'net_g_latest.pth'
    atomic_torch_save({'params': {'w': torch.ones(2)}}, target)

    def exploding_save(obj, f):
        f.write(b'partial')
        raise KeyboardInterrupt('killed')

    monkeypatch.setattr(torch, 'save', exploding_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({'params': {'w': torch.zeros(2)}}, target)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(target)['params']['w'], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['net_g_latest.pth']  # no temp file left behind


class _Evil:

    def __reduce__(self):
        return (os.system, ('touch PWNED',))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        torch.save({'params': {'w': torch.ones(1)}, 'x': _Evil()}, f)
    with pytest.raises(CheckpointError, match='refused'):
        load_checkpoint(path)
    assert not (tmp_path / 'PWNED').exists()
    # a raw pickle (not a torch zip file) is refused too
    raw = tmp_path / 'raw.pth'
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not (tmp_path / 'PWNED').exists()


def test_registration_is_idempotent_and_collisions_are_aliased():
    from basicsr.utils.registry import ARCH_REGISTRY

    from mamba_sr_archs._registry import register_arch

    class MMA(torch.nn.Module):  # a fork's class already owning the name
        pass

    ours = ARCH_REGISTRY.get('MMA')
    assert register_arch(ours) is ours  # re-registering the same class is a no-op
    saved = ARCH_REGISTRY._obj_map.pop('MMA')
    try:
        ARCH_REGISTRY._do_register('MMA', MMA)
        register_arch(ours)  # must not hit BasicSR's duplicate assertion
        assert ARCH_REGISTRY.get('MMA') is MMA
        assert ARCH_REGISTRY.get('mamba_sr_archs.MMA') is ours
    finally:
        ARCH_REGISTRY._obj_map['MMA'] = saved
        ARCH_REGISTRY._obj_map.pop('mamba_sr_archs.MMA', None)


def test_our_names_do_not_collide_with_basicsr_and_import_twice_is_safe():
    out = _run_py(SHIM_ONLY + '''
from basicsr.utils import registry as r
before = {n: set(getattr(r, n)._obj_map) for n in ('ARCH_REGISTRY', 'MODEL_REGISTRY', 'DATASET_REGISTRY')}
import mamba_sr_archs, importlib
import mamba_sr_archs  # a second import is a no-op
importlib.reload(mamba_sr_archs.archs.mma_arch)  # re-executing a module re-registers its class, no assertion
assert r.ARCH_REGISTRY.get('MMA') is mamba_sr_archs.archs.mma_arch.MMA
added = {n: sorted(set(getattr(r, n)._obj_map) - before[n]) for n in before}
print(added)''')
    assert out.returncode == 0, out.stderr
    added = eval(out.stdout.strip().splitlines()[-1])
    for name in ('MambaIRv2', 'MambaIRv2Light', 'MMA', 'MPSI'):
        assert name in added['ARCH_REGISTRY']
    for name in ('MambaIRv2Model', 'MambaIRv2LightModel', 'MMAModel', 'MPSIModel'):
        assert name in added['MODEL_REGISTRY']
    assert not any(n.startswith('mamba_sr_archs.') for names in added.values() for n in names)


def test_arch_modules_need_no_basicsr():
    """A BasicSR fork (or none at all) can use the networks as plain nn.Modules."""
    out = _run_py('''
        import sys
        sys.modules['basicsr'] = None  # as if BasicSR were not installed
        import torch
        from mamba_sr_archs.archs.mambairv2_arch import MambaIRv2Light
        from mamba_sr_archs.archs.mma_arch import MMA
        from mamba_sr_archs.archs.mpsi_arch import MPSI
        net = MambaIRv2Light(upscale=2, embed_dim=16, depths=[1], num_heads=[2], window_size=4, inner_rank=4,
                             num_tokens=8, d_state=4, mlp_ratio=1.0, upsampler='pixelshuffledirect')
        assert net(torch.rand(1, 3, 6, 7)).shape == (1, 3, 12, 14)
        assert isinstance(MMA(3, 3, 32, 1, 2), torch.nn.Module)
        print('ok')''')
    assert out.returncode == 0, out.stderr

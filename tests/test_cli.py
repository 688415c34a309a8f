"""The ``basicsr`` command: option-file errors, CPU training + auto-resume, torchrun with 2 CPU processes."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import make_paired_images, write_tiny_options

BASICSR = [sys.executable, '-m', 'mamba_sr_archs.cli']


def run_cli(args, cwd, timeout=300, env=None):
    return subprocess.run(BASICSR + args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture()
def workdir(tmp_path):
    make_paired_images(tmp_path)
    return tmp_path


def test_help_and_unknown_command(tmp_path):
    out = run_cli(['--help'], tmp_path)
    assert out.returncode == 0 and 'basicsr train -opt' in out.stdout
    out = run_cli(['frobnicate'], tmp_path)
    assert out.returncode == 2 and "unknown command 'frobnicate'" in out.stderr


@pytest.mark.parametrize('mutate, message', [
    (None, 'option file not found'),
    (lambda o: o['network_g'].update(type='NoSuchNet'), "network_g: type: unknown architecture 'NoSuchNet'"),
    (lambda o: o['network_g'].update(num_blocks=2), "network_g: unknown argument 'num_blocks' for MSRResNet"),
    (lambda o: o.update(model_type='NoSuchModel'), "model_type: unknown model 'NoSuchModel'"),
    (lambda o: o['datasets']['train'].update(type='NoSuchDataset'), "datasets:train: type: unknown dataset"),
])
def test_bad_option_file_gives_one_line_error(workdir, mutate, message):
    path = write_tiny_options(workdir)
    if mutate is None:
        path = workdir / 'missing.yml'
    else:
        opt = yaml.safe_load(path.read_text())
        mutate(opt)
        path.write_text(yaml.safe_dump(opt))
    out = run_cli(['train', '-opt', str(path)], workdir)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(path) in lines[0] and message in lines[0]


def _iters_logged(log_text):
    return [int(m) for m in re.findall(r'iter:\s+(\d+),', log_text)]


def test_train_on_cpu_then_auto_resume(workdir):
    opt = write_tiny_options(workdir, total_iter=4, ckpt_freq=2, val_freq=2)
    out = run_cli(['train', '-opt', str(opt)], workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    exp = workdir / 'experiments' / 'tiny'
    assert sorted(p.name for p in (exp / 'training_states').iterdir()) == ['2.state', '4.state']
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
    out = run_cli(['train', '-opt', str(opt), '--auto_resume', '--force_yml', 'train:total_iter=6'], workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    log = max((exp).glob('train_*.log'), key=os.path.getmtime).read_text()
    assert 'Resuming training from epoch' in log and 'iter: 4' in log
    assert min(_iters_logged(log)) == 5 and max(_iters_logged(log)) == 6
    assert (exp / 'training_states' / '6.state').is_file()


def test_test_pipeline_writes_results(workdir):
    opt_path = write_tiny_options(workdir, total_iter=2, ckpt_freq=2, val_freq=2)
    assert run_cli(['train', '-opt', str(opt_path)], workdir).returncode == 0
    opt = yaml.safe_load(opt_path.read_text())
    opt['name'] = 'tiny_test'
    opt['path']['pretrain_network_g'] = str(workdir / 'experiments' / 'tiny' / 'models' / 'net_g_latest.pth')
    opt['datasets'] = {'test_1': opt['datasets']['val']}
    opt['val'].update(save_img=True, suffix=None)  # BasicSR's test pipeline reads val.suffix when saving
    del opt['train']
    test_yml = workdir / 'test.yml'
    test_yml.write_text(yaml.safe_dump(opt))
    out = run_cli(['test', '-opt', str(test_yml)], workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list((workdir / 'results' / 'tiny_test' / 'visualization' / 'val').glob('*.png'))) == 8


def _console_script():
    exe = Path(sys.executable).parent / 'basicsr'
    return str(exe) if exe.exists() else shutil.which('basicsr')


@pytest.mark.skipif(_console_script() is None, reason='the basicsr console script is not installed')
def test_torchrun_two_cpu_processes_gloo(workdir):
    opt = write_tiny_options(workdir, total_iter=4, ckpt_freq=2, val_freq=2)
    # --standalone: torchrun picks its own free port (no race with a port chosen here and bound later)
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                '--no-python', _console_script()]
    out = subprocess.run(torchrun + ['train', '-opt', str(opt)], cwd=workdir, capture_output=True, text=True,
                         timeout=240, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    exp = workdir / 'experiments' / 'tiny'
    log = next(exp.glob('train_*.log')).read_text()
    assert 'world_size: 2' in log and 'dist: True' in log
    # 8 images, batch 2: one process needs 4 iterations per epoch, each of 2 ranks only 2 (DistributedSampler),
    # so iteration 4 is already in epoch 1: both ranks consumed their shards in lock-step (DDP all-reduce).
    assert re.search(r'epoch:\s+1, iter:\s+4,', log), log[-2000:]
    assert sorted(p.name for p in (exp / 'training_states').iterdir()) == ['2.state', '4.state']
    assert sorted(p.name for p in (exp / 'models').iterdir()) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth']
    assert len(list(exp.glob('train_*.log'))) == 1  # only rank 0 logs to file
    sd = torch.load(exp / 'models' / 'net_g_latest.pth', weights_only=True)['params']
    assert not any(k.startswith('module.') for k in sd)

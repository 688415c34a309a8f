"""kill -9 during training, then ``basicsr train --auto_resume``: the run finishes and ends with exactly the weights
of an uninterrupted run (same seed, deterministic data order: resumed epochs skip the batches already trained)."""
import os
import signal
import subprocess
import sys
import time

import torch
import yaml

from conftest import make_paired_images, write_tiny_options

NET = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 32, 'num_block': 4, 'upscale': 2}
TOTAL = 40  # 8 images, batch 2: 4 iterations per epoch, 10 epochs


def _options(root, name):
    path = write_tiny_options(root, name=name, network_g=NET, total_iter=TOTAL, ckpt_freq=4, val_freq=10**9)
    opt = yaml.safe_load(path.read_text())
    opt['datasets']['train'].update(use_hflip=False, use_rot=False)  # no random augmentation
    del opt['datasets']['val'], opt['val']
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def _train(opt, cwd, *extra):
    return subprocess.Popen([sys.executable, '-m', 'mamba_sr_archs.cli', 'train', '-opt', str(opt), *extra], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'))


def _weights(root, name):
    return torch.load(root / 'experiments' / name / 'models' / 'net_g_latest.pth', weights_only=True)


def test_kill_mid_run_then_auto_resume_matches_uninterrupted_run(tmp_path):
    make_paired_images(tmp_path)
    ref = _train(_options(tmp_path, 'ref'), tmp_path)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()[-3000:]

    opt = _options(tmp_path, 'crash')
    states = tmp_path / 'experiments' / 'crash' / 'training_states'
    proc = _train(opt, tmp_path)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(states.glob('*.state')):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, 'training finished before it could be killed'
    saved = sorted(int(p.stem) for p in states.glob('*.state'))
    assert saved and saved[-1] < TOTAL  # killed mid-run

    resumed = _train(opt, tmp_path, '--auto_resume')
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    log = max((tmp_path / 'experiments' / 'crash').glob('train_*.log'), key=os.path.getmtime).read_text()
    assert f'iter: {saved[-1]}.' in log  # resumed from the newest complete state
    assert (states / f'{TOTAL}.state').is_file()

    a, b = _weights(tmp_path, 'ref'), _weights(tmp_path, 'crash')
    for key in ('params', 'params_ema'):
        for k in a[key]:
            torch.testing.assert_close(b[key][k], a[key][k], rtol=0, atol=1e-6, msg=f'{key}.{k} differs')

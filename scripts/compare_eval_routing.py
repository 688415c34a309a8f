#!/usr/bin/env python
"""Set5/Set14 PSNR of a trained MambaIRv2 model with deterministic (argmax) vs. official (Gumbel) eval routing.

The official MambaIRv2 samples Gumbel noise in its routing even at test time, so the same image gives a
different output on every run. This script measures what that costs (or not) on a trained model:

    python scripts/compare_eval_routing.py -opt options/train/MambaIRv2/demo_MambaIRv2Light_x2_cpu.yml \
        --weights experiments/demo_MambaIRv2Light_x2_cpu/models/net_g_latest.pth --runs 3
"""
import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('-opt', required=True, help='option file whose network_g builds the model')
    p.add_argument('--weights', required=True, help='trained weights (.pth, BasicSR params/params_ema)')
    p.add_argument('--dataset', default='../shared/datasets/Set5', help='folder with HR/ and LR_bicubic/X<s>/')
    p.add_argument('--runs', type=int, default=3, help='Gumbel runs (different noise each)')
    p.add_argument('--param-key', default='params_ema')
    args = p.parse_args(argv)

    import yaml

    import mamba_sr_archs  # noqa: F401  (first: applies the BasicSR compat layer)
    from basicsr.archs import build_network
    from basicsr.metrics import calculate_psnr
    from mamba_sr_archs.checkpoint import load_state_dict_into

    opt = yaml.safe_load(Path(args.opt).read_text())
    scale = opt['scale']
    net = build_network(dict(opt['network_g']))
    load_state_dict_into(net, args.weights, param_key=args.param_key)
    net.eval()
    root = Path(args.dataset)
    pairs = []
    for hr_path in sorted((root / 'HR').glob('*.png')):
        lr = cv2.imread(str(root / 'LR_bicubic' / f'X{scale}' / f'{hr_path.stem}x{scale}.png'))
        hr = cv2.imread(str(hr_path))
        if lr is None:
            sys.exit(f'missing LR image for {hr_path}')
        pairs.append((lr, hr[:lr.shape[0] * scale, :lr.shape[1] * scale]))

    def psnr_of(mode, seed):
        net.set_eval_routing(mode)
        torch.manual_seed(seed)
        vals = []
        for lr, hr in pairs:
            x = torch.from_numpy(lr[:, :, ::-1].transpose(2, 0, 1).copy()).float()[None] / 255
            with torch.no_grad():
                y = net(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)[:, :, ::-1]
            vals.append(calculate_psnr((y * 255).round().astype(np.uint8), hr, crop_border=scale, test_y_channel=True))
        return float(np.mean(vals))

    t = time.time()
    det = [psnr_of('argmax', s) for s in range(2)]
    gum = [psnr_of('gumbel', s) for s in range(args.runs)]
    print(f'{root.name} x{scale}, {len(pairs)} images, weights {args.weights}')
    print(f'  argmax routing (ours, default): {det[0]:.4f} dB (second run identical: {det[0] == det[1]})')
    print('  gumbel routing (official eval): ' + ', '.join(f'{v:.4f}' for v in gum) +
          f' dB (mean {np.mean(gum):.4f}, spread {max(gum) - min(gum):.4f})')
    print(f'  argmax - mean(gumbel) = {det[0] - np.mean(gum):+.4f} dB   ({time.time() - t:.0f} s)')


if __name__ == '__main__':
    main()

"""Benchmark tiled inference (``mamba_sr_archs.inference.tiled_forward``): memory, time and accuracy.

1. Memory/time: MambaIRv2Light (published 'light' config) x``--scale`` on a random ``--size`` x ``--size``
   image on CPU, tile ``--tile`` / pad ``--tile-pad``, run in a child process so that its peak resident
   memory (``ru_maxrss``) belongs to this run alone.  ``--whole`` also runs the whole image at once in a
   second child (only sensible for small sizes: whole-image MambaIRv2 memory grows with the image area).
2. Accuracy (needs ``--weights`` and ``--datasets``): Set5/Set14 Y-channel PSNR (crop_border = scale, the
   papers' convention, BasicSR's ``calculate_psnr``) of tiled vs whole-image inference, and their difference.

Examples::

    python scripts/bench_tiled_inference.py                       # 2048x2048, tile 64 pad 16 (slow on few cores)
    python scripts/bench_tiled_inference.py --size 256 --whole    # quick check
    python scripts/bench_tiled_inference.py --skip-memory --weights MambaIRv2Light_x4.pth \\
        --datasets ../shared/datasets --sets Set5 Set14
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def _rss_mib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == 'darwin' else rss / 2**10


def build_net(arch, variant, scale, weights=None, opt_file=None):
    import torch

    from mamba_sr_archs import archs  # noqa: F401  (plain nn.Modules; BasicSR not needed)
    from mamba_sr_archs.archs.mambairv2_arch import MambaIRv2, MambaIRv2Light
    from mamba_sr_archs.checkpoint import load_state_dict_into
    from mamba_sr_archs.infer import PRESETS

    classes = {'MambaIRv2Light': MambaIRv2Light, 'MambaIRv2': MambaIRv2}
    if arch not in classes:
        raise SystemExit(f'--arch must be one of {sorted(classes)}')
    torch.manual_seed(0)
    if opt_file:  # network_g of an option file (e.g. the CPU demo's reduced MambaIRv2Light)
        import yaml
        net_opt = dict(yaml.safe_load(open(opt_file))['network_g'])
        arch = net_opt.pop('type')
        if arch not in classes:
            raise SystemExit(f'{opt_file}: network_g type must be one of {sorted(classes)}')
        net = classes[arch](**dict(net_opt, upscale=scale))
    else:
        net = classes[arch](**dict(PRESETS[arch][variant], upscale=scale))
    if weights:
        load_state_dict_into(net, weights, strict=True)
    return net.eval()


def child(args):
    """One timed forward in this (fresh) process; prints one JSON line."""
    import torch

    from mamba_sr_archs.inference import sr_forward

    torch.set_num_threads(args.threads)
    net = build_net(args.arch, args.variant, args.scale, args.weights, args.opt)
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    rss_before = _rss_mib()
    tile = None if args.mode == 'whole' else args.tile
    t0 = time.perf_counter()
    with torch.no_grad():
        y = sr_forward(net, x, args.scale, tile, args.tile_pad)
    elapsed = time.perf_counter() - t0
    print(json.dumps({'mode': args.mode, 'size': args.size, 'tile': tile, 'tile_pad': args.tile_pad,
                      'out_shape': list(y.shape), 'seconds': round(elapsed, 2), 'threads': args.threads,
                      'rss_before_forward_mib': round(rss_before, 1), 'peak_rss_mib': round(_rss_mib(), 1)}))


def run_child(args, mode):
    cmd = [sys.executable, os.path.abspath(__file__), '--_child', '--mode', mode, '--arch', args.arch, '--variant',
           args.variant, '--scale', str(args.scale), '--size', str(args.size), '--tile', str(args.tile),
           '--tile-pad', str(args.tile_pad), '--threads', str(args.threads)]
    if args.weights:
        cmd += ['--weights', args.weights]
    if args.opt:
        cmd += ['--opt', args.opt]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        raise SystemExit(f'{mode} run failed (exit {res.returncode}; killed for memory if -9)')
    result = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{mode:>5}: {args.arch} x{args.scale} on {args.size}x{args.size} "
          f"({'tile %d pad %d' % (args.tile, args.tile_pad) if mode == 'tiled' else 'whole image'}), "
          f"{result['threads']} threads: {result['seconds']:.1f} s, peak RSS {result['peak_rss_mib']:.0f} MiB "
          f"(after model+input {result['rss_before_forward_mib']:.0f} MiB)")
    return result


def psnr_tiled_vs_whole(args):
    """Mean Y-PSNR over each set, whole vs tiled; returns {set: (whole, tiled, max per-image |diff|)}."""
    import cv2
    import numpy as np
    import torch

    from mamba_sr_archs import compat
    compat.install_torchvision_shim()
    from basicsr.metrics.psnr_ssim import calculate_psnr

    from mamba_sr_archs.inference import sr_forward

    torch.set_num_threads(args.threads)
    net = build_net(args.arch, args.variant, args.scale, args.weights, args.opt)
    s = args.scale
    results = {}
    for name in args.sets:
        hr_dir = os.path.join(args.datasets, name, 'HR')
        lr_dir = os.path.join(args.datasets, name, 'LR_bicubic', f'X{s}')
        rows = []
        for fn in sorted(os.listdir(hr_dir)):
            stem = os.path.splitext(fn)[0]
            hr = cv2.imread(os.path.join(hr_dir, fn), cv2.IMREAD_COLOR)
            lr = cv2.imread(os.path.join(lr_dir, f'{stem}x{s}.png'), cv2.IMREAD_COLOR)
            if hr is None or lr is None:
                raise SystemExit(f'{name}/{stem}: HR or LR x{s} image missing')
            h, w = lr.shape[:2]
            hr = hr[:h * s, :w * s]
            x = torch.from_numpy(np.ascontiguousarray(lr[..., ::-1].transpose(2, 0, 1))).float()[None] / 255.
            psnrs = []
            for tile in (None, args.tile):
                with torch.no_grad():
                    y = sr_forward(net, x, s, tile, args.tile_pad)
                sr = (y[0].clamp(0, 1).permute(1, 2, 0).numpy()[..., ::-1] * 255.).round().astype(np.uint8)
                psnrs.append(calculate_psnr(sr, hr, crop_border=s, input_order='HWC', test_y_channel=True))
            rows.append(psnrs)
            print(f'  {name}/{stem}: whole {psnrs[0]:.3f} dB, tiled {psnrs[1]:.3f} dB, '
                  f'diff {psnrs[1] - psnrs[0]:+.3f}')
        arr = np.array(rows)
        results[name] = (arr[:, 0].mean(), arr[:, 1].mean(), np.abs(arr[:, 1] - arr[:, 0]).max())
        print(f'{name} x{s}: whole {results[name][0]:.3f} dB, tiled ({args.tile}/{args.tile_pad}) '
              f'{results[name][1]:.3f} dB, mean diff {results[name][1] - results[name][0]:+.4f} dB, '
              f'max per-image |diff| {results[name][2]:.4f} dB')
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--arch', default='MambaIRv2Light', choices=('MambaIRv2Light', 'MambaIRv2'))
    p.add_argument('--variant', default='light', help="preset of mamba_sr_archs.infer.PRESETS ('light'; S/B/L)")
    p.add_argument('--opt', help="take the network from this option file's network_g (overrides --arch/--variant)")
    p.add_argument('--scale', type=int, default=4)
    p.add_argument('--size', type=int, default=2048, help='side of the random square input (memory run)')
    p.add_argument('--tile', type=int, default=64)
    p.add_argument('--tile-pad', type=int, default=16)
    p.add_argument('--threads', type=int, default=max(1, min(8, os.cpu_count() or 1)))
    p.add_argument('--whole', action='store_true', help='also run the whole image at once (small --size only)')
    p.add_argument('--skip-memory', action='store_true', help='skip the memory/time run')
    p.add_argument('--weights', help='trained checkpoint (needed for the PSNR comparison)')
    p.add_argument('--datasets', help='folder holding Set5/ and Set14/ (HR and LR_bicubic/X<scale>)')
    p.add_argument('--sets', nargs='+', default=['Set5', 'Set14'])
    p.add_argument('--_child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--mode', default='tiled', choices=('tiled', 'whole'), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        return child(args)
    if args.variant == 'light' and args.arch != 'MambaIRv2Light':
        p.error("--variant light is MambaIRv2Light's preset; use S, B or L with MambaIRv2")
    if not args.skip_memory:
        run_child(args, 'tiled')
        if args.whole:
            run_child(args, 'whole')
    if args.weights and args.datasets:
        psnr_tiled_vs_whole(args)
    elif args.weights or args.datasets:
        p.error('the PSNR comparison needs both --weights and --datasets')
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""Generate MATLAB-bicubic LR images (imresize with antialiasing, as DIV2K/DF2K's LR_bicubic) from an HR folder.

Each HR image is first cropped to a multiple of the scale (mod crop), so LR size = HR size // scale:

    python scripts/generate_bicubic_lr.py --hr datasets/DF2K/HR --out datasets/DF2K/LR_bicubic --scales 2 3 4
    # -> datasets/DF2K/LR_bicubic/X2/0001x2.png, .../X3/0001x3.png, .../X4/0001x4.png
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

try:
    from mamba_sr_archs import data_prep
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mamba_sr_archs import data_prep


def build_parser():
    p = argparse.ArgumentParser(prog='generate_bicubic_lr.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--hr', required=True, help='folder of HR images')
    p.add_argument('--out', required=True, help='output root; LR images go to <out>/X<scale>/')
    p.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4], help='scales (default: 2 3 4)')
    p.add_argument('--name-tmpl', default='{}x{scale}',
                   help="LR file stem from the HR stem (default '{}x{scale}' -> 0001x2.png; '{}' keeps the name)")
    p.add_argument('--n-thread', type=int, default=1, help='worker processes (default 1)')
    p.add_argument('--overwrite', action='store_true', help='replace existing output folders')
    return p


def main(argv=None):
    parser = build_parser()

    def body(args):
        lr_dirs = {s: osp.join(args.out, f'X{s}') for s in args.scales}
        res = data_prep.generate_bicubic_lr(args.hr, lr_dirs, name_tmpl=args.name_tmpl, overwrite=args.overwrite,
                                            n_thread=args.n_thread)
        print(f"{res['images']} images x scales {res['scales']} -> {args.out} ({res['seconds']:.1f} s)")

    return data_prep.run_cli(parser, body, argv)


if __name__ == '__main__':
    sys.exit(main())

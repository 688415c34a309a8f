#!/usr/bin/env python
"""Crop HR images, and optionally their bicubic LR counterparts, into sub-images for fast training I/O.

The DF2K recipe of BasicSR's scripts/data_preparation/extract_subimages.py (HR crop 480, step 240, thresh_size 0),
with HR and LR cut in one pass from the same offsets so that the sub-image folders pair by name:

    python scripts/extract_subimages.py --hr datasets/DF2K/HR --hr-out datasets/DF2K/HR_sub \\
        --lr 2 datasets/DF2K/LR_bicubic/X2 datasets/DF2K/LR_bicubic/X2_sub \\
        --lr 4 datasets/DF2K/LR_bicubic/X4 datasets/DF2K/LR_bicubic/X4_sub --n-thread 8
"""
import argparse
import sys
from pathlib import Path

try:
    from mamba_sr_archs import data_prep
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mamba_sr_archs import data_prep


def build_parser():
    p = argparse.ArgumentParser(prog='extract_subimages.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--hr', required=True, help='folder of HR images')
    p.add_argument('--hr-out', required=True, help='output folder of HR sub-images <name>_s001.png ...')
    p.add_argument('--lr', nargs=3, action='append', default=[], metavar=('SCALE', 'LR_DIR', 'LR_OUT'),
                   help='also crop this LR folder (x SCALE) into LR_OUT; repeat for several scales')
    p.add_argument('--lr-tmpl', default=None,
                   help="LR file stem from the HR stem, e.g. '{}x{scale}' "
                   "(default: try '<name>x<scale>' then '<name>')")
    p.add_argument('--crop-size', type=int, default=480, help='HR sub-image size (default 480)')
    p.add_argument('--step', type=int, default=240, help='HR crop step (default 240)')
    p.add_argument('--thresh-size', type=int, default=0,
                   help='add a last crop flush with the border if more than this many pixels remain (default 0)')
    p.add_argument('--compress-level', type=int, default=3, help='PNG compression level 0-9 (default 3)')
    p.add_argument('--n-thread', type=int, default=1, help='worker processes (default 1)')
    p.add_argument('--overwrite', action='store_true', help='replace existing output folders')
    return p


def main(argv=None):
    parser = build_parser()

    def body(args):
        lr_pairs = {}
        for scale, lr_dir, lr_out in args.lr:
            if not scale.isdigit():
                raise data_prep.DataPrepError(f'--lr SCALE must be an integer, got {scale!r}')
            lr_pairs[int(scale)] = (lr_dir, lr_out)
        res = data_prep.extract_subimages(args.hr, args.hr_out, lr_pairs, crop_size=args.crop_size, step=args.step,
                                          thresh_size=args.thresh_size, lr_tmpl=args.lr_tmpl,
                                          compress_level=args.compress_level, n_thread=args.n_thread,
                                          overwrite=args.overwrite)
        outs = ', '.join([args.hr_out] + [o for _, o in lr_pairs.values()])
        print(f"{res['subimages']} sub-images from {res['images']} images per folder -> {outs} "
              f"({res['seconds']:.1f} s)")

    return data_prep.run_cli(parser, body, argv)


if __name__ == '__main__':
    sys.exit(main())

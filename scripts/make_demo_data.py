#!/usr/bin/env python
"""Build a small paired SR training set from scikit-image's bundled sample images (no download).

Writes HR sub-images, MATLAB-bicubic LR x2/x3/x4 sub-images with the same names, their LMDB forms and meta_info
files under --out (default datasets/demo, relative to the current folder):

    python scripts/make_demo_data.py                 # datasets/demo/HR_sub, LR_bicubic_sub/X2, HR_sub.lmdb, ...
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
    p = argparse.ArgumentParser(prog='make_demo_data.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='datasets/demo', help='output folder (default datasets/demo)')
    p.add_argument('--crop-size', type=int, default=192, help='HR sub-image size, a multiple of 12 (default 192)')
    p.add_argument('--step', type=int, default=96, help='HR crop step, a multiple of 12 (default 96)')
    p.add_argument('--scales', type=int, nargs='+', default=[2, 3, 4], help='LR scales (default 2 3 4)')
    p.add_argument('--sources', nargs='+', default=list(data_prep.DEMO_SOURCES),
                   help='file names inside skimage/data (default: %(default)s)')
    p.add_argument('--no-half', action='store_true', help='do not add half-size copies of the source images')
    p.add_argument('--no-lmdb', action='store_true', help='skip the LMDB forms')
    p.add_argument('--overwrite', action='store_true', help='replace an existing output folder')
    return p


def main(argv=None):
    parser = build_parser()

    def body(args):
        r = data_prep.make_demo_data(args.out, sources=args.sources, crop_size=args.crop_size, step=args.step,
                                     scales=args.scales, half_scale_sources=not args.no_half, lmdb=not args.no_lmdb,
                                     overwrite=args.overwrite)
        print(f"\nDemo data in {r['out_dir']} ({r['seconds']:.1f} s, {r['bytes'] / 2**20:.1f} MiB):")
        print(f"  {r['source_images']} source images -> {r['subimages']} sub-images per folder")
        for k, folder in r['folders'].items():
            size = r['sizes'][k]
            print(f'  {k:>3}: {folder}  ({size}x{size})' + (f"  lmdb: {r['lmdb'][k]}" if k in r['lmdb'] else ''))
        if r['skipped']:
            print(f"  skipped (smaller than the crop): {', '.join(r['skipped'])}")

    return data_prep.run_cli(parser, body, argv)


if __name__ == '__main__':
    sys.exit(main())

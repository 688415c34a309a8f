#!/usr/bin/env python
"""Pack image folders into LMDB for BasicSR's ``io_backend: {type: lmdb}`` (make_lmdb_from_imgs).

Keys are the file names without extension (no dots allowed), values PNG bytes, and <lmdb>/meta_info.txt lists
``<key>.png (h,w,c) <compress_level>``.  One folder, or a paired GT/LQ dataset (both LMDBs, keys and sizes checked):

    python scripts/create_lmdb.py --folder datasets/DF2K/HR_sub --lmdb datasets/DF2K/HR_sub.lmdb
    python scripts/create_lmdb.py --gt datasets/DF2K/HR_sub --lq datasets/DF2K/LR_bicubic/X2_sub \\
        --gt-lmdb datasets/DF2K/HR_sub.lmdb --lq-lmdb datasets/DF2K/X2_sub.lmdb --map-size 64G
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
    p = argparse.ArgumentParser(prog='create_lmdb.py', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    single = p.add_argument_group('one folder')
    single.add_argument('--folder', help='image folder')
    single.add_argument('--lmdb', help='output path, must end with .lmdb')
    paired = p.add_argument_group('paired dataset')
    paired.add_argument('--gt', help='GT (HR) image folder')
    paired.add_argument('--lq', help='LQ (LR) image folder, same names as --gt')
    paired.add_argument('--gt-lmdb', help='GT output path (.lmdb)')
    paired.add_argument('--lq-lmdb', help='LQ output path (.lmdb)')
    paired.add_argument('--scale', type=int, default=None, help='expected GT/LQ size ratio (default: inferred)')
    p.add_argument('--map-size', default=None,
                   help='LMDB map size, bytes or with K/M/G/T suffix (default: computed from the images)')
    p.add_argument('--compress-level', type=int, default=1, help='PNG compression level of the values (default 1)')
    p.add_argument('--batch', type=int, default=5000, help='images per LMDB commit (default 5000)')
    p.add_argument('--n-thread', type=int, default=1, help='processes reading images (default 1)')
    p.add_argument('--overwrite', action='store_true', help='replace existing LMDBs')
    return p


def main(argv=None):
    parser = build_parser()

    def body(args):
        single = args.folder is not None or args.lmdb is not None
        paired = any(v is not None for v in (args.gt, args.lq, args.gt_lmdb, args.lq_lmdb))
        if single == paired:
            raise data_prep.DataPrepError('give either --folder and --lmdb, or --gt --lq --gt-lmdb --lq-lmdb')
        map_size = None if args.map_size is None else data_prep.parse_size(args.map_size)
        kw = dict(map_size=map_size, compress_level=args.compress_level, batch=args.batch, n_thread=args.n_thread,
                  overwrite=args.overwrite)
        if single:
            if args.folder is None or args.lmdb is None:
                raise data_prep.DataPrepError('--folder and --lmdb go together')
            keys = data_prep.create_lmdb(args.folder, args.lmdb, **kw)
            print(f'{len(keys)} images -> {args.lmdb}')
        else:
            if None in (args.gt, args.lq, args.gt_lmdb, args.lq_lmdb):
                raise data_prep.DataPrepError('a paired dataset needs --gt, --lq, --gt-lmdb and --lq-lmdb')
            keys, scale = data_prep.create_paired_lmdb(args.gt, args.lq, args.gt_lmdb, args.lq_lmdb,
                                                       scale=args.scale, **kw)
            print(f'{len(keys)} pairs (x{scale}) -> {args.gt_lmdb}, {args.lq_lmdb}')

    return data_prep.run_cli(parser, body, argv)


if __name__ == '__main__':
    sys.exit(main())

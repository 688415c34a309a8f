"""The ``basicsr`` command: BasicSR's own train/test pipelines with this package registered.

    basicsr train -opt FILE.yml [--auto_resume] [--debug] [--launcher none|pytorch] [--force_yml k=v ...]
    basicsr test  -opt FILE.yml
    basicsr infer ...            (see ``basicsr infer --help``)

Under ``torchrun --nproc_per_node=N --no-python basicsr train -opt X.yml`` the launcher is picked
automatically.  Outputs go under the current directory (``experiments/``, ``tb_logger/``,
``results/``), where ``--auto_resume`` finds them.
"""
import inspect
import os
import sys

USAGE = """usage: basicsr {train,test,infer} [options]

  basicsr train -opt FILE.yml [--auto_resume] [--debug] [--launcher none|pytorch] [--force_yml k=v ...]
  basicsr test  -opt FILE.yml [--force_yml k=v ...]
  basicsr infer -opt TEST.yml -i INPUT -o OUTDIR [--tile N --tile-pad P]
  basicsr infer --arch NAME --scale S --weights FILE.pth -i INPUT -o OUTDIR [...]

Runs BasicSR's pipelines with the mamba_sr_archs networks (MambaIRv2, MambaIRv2Light, MMA, MPSI)
registered. Outputs go under the current directory. Under torchrun use:
  torchrun --nproc_per_node=N --no-python basicsr train -opt FILE.yml
"""


class OptionError(Exception):
    """A problem in an option file, reported as one line naming the file and key."""


def _opt_path(argv):
    for i, a in enumerate(argv):
        if a == '-opt' and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith('-opt='):
            return a.split('=', 1)[1]
    return None


def _check_kwargs(cls, kwargs, where):
    """Raise OptionError if ``cls(**kwargs)`` would fail on an unknown or missing argument."""
    accepted = getattr(cls, 'accepted_extra_keys', ())
    sig = inspect.signature(cls.__init__)
    params = list(sig.parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = {p.name for p in params}
    for key in kwargs:
        if key not in names and key not in accepted:
            raise OptionError(f"{where}: unknown argument '{key}' for {cls.__name__} "
                              f"(accepted: {', '.join(sorted(names))})")
    for p in params:
        if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in kwargs:
            raise OptionError(f"{where}: missing required argument '{p.name}' for {cls.__name__}")


def load_option_file(path):
    """Read a BasicSR option file (BasicSR's ordered YAML loader) or raise a one-line OptionError."""
    import yaml
    from basicsr.utils.options import ordered_yaml

    if path is None:
        raise OptionError('missing -opt FILE.yml')
    if not os.path.isfile(path):
        raise OptionError(f'{path}: option file not found')
    try:
        with open(path) as f:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
    except yaml.YAMLError as err:
        raise OptionError(f'{path}: invalid YAML: {str(err).splitlines()[0]}') from err
    if not isinstance(opt, dict):
        raise OptionError(f'{path}: expected a mapping of options at the top level')
    return opt


def validate_options(path, is_train=True):
    """Check an option file before BasicSR runs it; return the parsed dict.

    Catches what otherwise ends in a long traceback: a missing file, YAML syntax, an unknown
    ``type``/``model_type`` and unknown constructor arguments of the networks.
    """
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY

    opt = load_option_file(path)
    for key in ('name', 'model_type', 'datasets') + (('train', ) if is_train else ()):
        if key not in opt:
            raise OptionError(f"{path}: missing required key '{key}'")
    if 'num_gpu' not in opt:
        raise OptionError(f"{path}: missing required key 'num_gpu' (0 for CPU, 'auto' for all GPUs)")
    if opt['model_type'] not in MODEL_REGISTRY:
        raise OptionError(f"{path}: model_type: unknown model '{opt['model_type']}'")
    for net_key in [k for k in opt if k.startswith('network_')]:
        net_opt = dict(opt[net_key] or {})
        arch = net_opt.pop('type', None)
        if arch is None:
            raise OptionError(f"{path}: {net_key}: missing 'type'")
        if arch not in ARCH_REGISTRY:
            raise OptionError(f"{path}: {net_key}: type: unknown architecture '{arch}'")
        _check_kwargs(ARCH_REGISTRY.get(arch), net_opt, f'{path}: {net_key}')
    for phase, ds in (opt.get('datasets') or {}).items():
        if not isinstance(ds, dict) or 'type' not in ds:
            raise OptionError(f"{path}: datasets:{phase}: missing 'type'")
        if ds['type'] not in DATASET_REGISTRY:
            raise OptionError(f"{path}: datasets:{phase}: type: unknown dataset '{ds['type']}'")
    return opt


def _run_pipeline(kind, argv):
    from . import compat

    argv = compat.normalize_argv(argv)
    if any(a in ('-h', '--help') for a in argv):
        print(f'usage: basicsr {kind} -opt FILE.yml [--auto_resume] [--debug] [--launcher none|pytorch] '
              '[--force_yml k=v ...]')
        return 0
    try:
        validate_options(_opt_path(argv), is_train=kind == 'train')
    except OptionError as err:
        print(f'basicsr {kind}: error: {err}', file=sys.stderr)
        return 2
    sys.argv = [f'basicsr {kind}'] + argv  # BasicSR's parse_options reads sys.argv
    root = os.getcwd()
    try:
        if kind == 'train':
            import basicsr.train
            basicsr.train.train_pipeline(root)
        else:
            import basicsr.test
            basicsr.test.test_pipeline(root)
    finally:
        _shutdown_distributed()
    return 0


def _shutdown_distributed():
    """Tear down the process group BasicSR's init_dist created (it never does): a process that exits with a live
    gloo group can abort in its worker threads' destructors ('terminate called without an active exception'), which
    fails a torchrun launch that had finished its work."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    import mamba_sr_archs  # noqa: F401  (applies compat, registers everything)

    if cmd in ('train', 'test'):
        return _run_pipeline(cmd, rest)
    if cmd == 'infer':
        from .infer import main as infer_main
        return infer_main(rest)
    print(f"basicsr: error: unknown command '{cmd}'\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())

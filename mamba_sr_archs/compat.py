"""Every work-around that makes BasicSR 1.4.2 run on today's stack, each with the reason.

``apply()`` is called once by ``import mamba_sr_archs``; it patches BasicSR objects in memory and
never edits BasicSR's files.  Each patch is a small named function so tests can check it directly.
"""
import itertools
import logging
import os
import sys
import types

logger = logging.getLogger('mamba_sr_archs')

_APPLIED = False
ORIGINALS = {}  # 'module.name' -> BasicSR's own object, kept for tests and debugging
_RESUME = {}  # epoch/iter of the training state being resumed


# --------------------------------------------------------------------------------------------- torchvision
def install_torchvision_shim():
    """torchvision 0.17 removed ``torchvision.transforms.functional_tensor``; BasicSR 1.4.2 imports
    ``rgb_to_grayscale`` from it in ``basicsr/data/degradations.py``, which ``import basicsr`` (and so
    even ``from basicsr.utils.registry import ...``) reaches.  Alias the old module name to a module
    holding the function.  Must run before any basicsr import; cheap and idempotent."""
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision: nothing to do)
        return
    except ImportError:
        pass
    try:
        from torchvision.transforms import functional as F
    except ImportError:  # no torchvision: basicsr cannot be imported anyway
        return
    shim = types.ModuleType(name)
    shim.rgb_to_grayscale = F.rgb_to_grayscale
    sys.modules[name] = shim


# --------------------------------------------------------------------------------------------- distributed
def launched_by_torchrun(environ=None):
    """torchrun / torch.distributed.launch export RANK, LOCAL_RANK and WORLD_SIZE for every process."""
    environ = os.environ if environ is None else environ
    return all(k in environ for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'))


def normalize_argv(argv, environ=None):
    """Make a BasicSR command line acceptable to BasicSR 1.4.2's argparse.

    * ``torch.distributed.launch`` (torch >= 2.0) passes ``--local-rank=N``; BasicSR only declares
      ``--local_rank`` and argparse rejects the hyphenated spelling.
    * Under torchrun the user should not have to remember ``--launcher pytorch``: without it BasicSR
      would train N independent copies that overwrite each other's checkpoints.  When the torchrun
      environment is present and no launcher was given, add ``--launcher pytorch``.
    """
    out = []
    for arg in argv:
        if arg == '--local-rank':
            out.append('--local_rank')
        elif arg.startswith('--local-rank='):
            out.append('--local_rank=' + arg.split('=', 1)[1])
        else:
            out.append(arg)
    has_launcher = any(a == '--launcher' or a.startswith('--launcher=') for a in out)
    if not has_launcher and launched_by_torchrun(environ):
        out += ['--launcher', 'pytorch']
    return out


def init_dist(launcher, backend=None, **kwargs):
    """Replacement for ``basicsr.utils.dist_util.init_dist``.

    BasicSR hard-codes the NCCL backend and picks the GPU as ``RANK % device_count`` (wrong on
    multi-node, impossible on CPU).  Here the backend follows the device: NCCL when CUDA is usable,
    gloo otherwise; the GPU is ``LOCAL_RANK``.  ``backend`` (e.g. from ``dist_params``) still wins.
    """
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if launcher not in ('pytorch', 'slurm'):
        raise ValueError(f'Invalid launcher type: {launcher}')
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    if launcher == 'slurm':
        from basicsr.utils import dist_util
        return dist_util._init_dist_slurm(backend or ('nccl' if torch.cuda.is_available() else 'gloo'), **kwargs)
    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() > 0
    if backend is None:
        backend = 'nccl' if use_cuda else 'gloo'
    if use_cuda:
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ.get('RANK', 0)))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, **kwargs)


def _model_to_device(self, net):
    """Replacement for ``BaseModel.model_to_device``: BasicSR passes
    ``device_ids=[torch.cuda.current_device()]`` to DDP unconditionally, which fails on CPU (gloo)."""
    import torch
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    net = net.to(self.device)
    if self.opt['dist']:
        find_unused = self.opt.get('find_unused_parameters', False)
        device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
        net = DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=find_unused)
    elif self.opt['num_gpu'] > 1:
        net = DataParallel(net)
    return net


# --------------------------------------------------------------------------------------------- checkpoints
def _load_network(self, net, load_path, strict=True, param_key='params'):
    """Replacement for ``BaseModel.load_network``: BasicSR calls a bare ``torch.load`` (full unpickling of
    whatever the file holds).  Ours loads with ``weights_only=True`` (also ``.safetensors``), accepts
    ``params``/``params_ema``/bare state dicts and ``module.`` prefixes, and reports a mismatch in a few
    readable lines instead of PyTorch's dump."""
    from .checkpoint import load_state_dict_into

    load_state_dict_into(self.get_bare_model(net), load_path, strict=strict, param_key=param_key)


def _save_network(self, net, net_label, current_iter, param_key='params'):
    """Replacement for ``BaseModel.save_network``: written atomically (temporary file, fsync, rename),
    so a process killed while saving never leaves a truncated ``net_g_latest.pth``.  Rank 0 only, as
    BasicSR's ``@master_only`` original."""
    from basicsr.utils.dist_util import get_dist_info

    from .checkpoint import atomic_torch_save

    if get_dist_info()[0] != 0:
        return
    if current_iter == -1:
        current_iter = 'latest'
    save_path = os.path.join(self.opt['path']['models'], f'{net_label}_{current_iter}.pth')
    nets = net if isinstance(net, list) else [net]
    keys = param_key if isinstance(param_key, list) else [param_key]
    if len(nets) != len(keys):
        raise ValueError('save_network: the lengths of net and param_key should be the same.')
    save_dict = {}
    for net_, key in zip(nets, keys):
        state_dict = self.get_bare_model(net_).state_dict()
        save_dict[key] = {(k[7:] if k.startswith('module.') else k): v.cpu() for k, v in state_dict.items()}
    atomic_torch_save(save_dict, save_path)


def _save_training_state(self, epoch, current_iter):
    """Replacement for ``BaseModel.save_training_state`` (rank 0 only): atomic, like ``_save_network``."""
    from basicsr.utils.dist_util import get_dist_info

    from .checkpoint import atomic_torch_save

    if current_iter == -1 or get_dist_info()[0] != 0:
        return
    state = {
        'epoch': epoch,
        'iter': current_iter,
        'optimizers': [o.state_dict() for o in self.optimizers],
        'schedulers': [s.state_dict() for s in self.schedulers],
    }
    atomic_torch_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))


def load_resume_state(opt):
    """Replacement for ``basicsr.train.load_resume_state``.

    BasicSR maps the state onto ``torch.cuda.current_device()``, which raises on a machine without a
    GPU, so ``--auto_resume`` could not work with ``num_gpu: 0``; it also unpickles with full
    ``torch.load`` and dies on a truncated newest state.  Here: the state loads on the CPU (the
    optimizer moves its tensors to the parameters' device itself), with ``weights_only=True``, and with
    ``--auto_resume`` the newest state that loads is used; a corrupt one is reported and skipped.
    """
    from basicsr.train import check_resume

    from .checkpoint import CheckpointError, load_checkpoint

    _RESUME.clear()
    if opt['auto_resume']:
        state_dir = os.path.join('experiments', opt['name'], 'training_states')
        candidates = []
        if os.path.isdir(state_dir):
            for f in os.listdir(state_dir):
                stem = f[:-len('.state')] if f.endswith('.state') else None
                if stem is not None and stem.isdigit():
                    candidates.append((int(stem), os.path.join(state_dir, f)))
        for _, path in sorted(candidates, reverse=True):
            try:
                state = load_checkpoint(path)
            except CheckpointError as err:
                logger.warning(f'auto_resume: skipping unreadable training state {path}: {err}')
                continue
            opt['path']['resume_state'] = path
            check_resume(opt, state['iter'])
            _RESUME.update(epoch=state['epoch'], iter=state['iter'])
            return state
        return None
    path = opt['path'].get('resume_state')
    if not path:
        return None
    state = load_checkpoint(path)
    check_resume(opt, state['iter'])
    _RESUME.update(epoch=state['epoch'], iter=state['iter'])
    return state


def _sampler_iter(self):
    """Replacement for ``EnlargedSampler.__iter__``: BasicSR restarts a resumed epoch from its first batch, so
    the batches seen before the save are trained on twice and the run diverges from an uninterrupted one.  After
    a resume, the resumed epoch skips the samples that were already consumed (set by ``_wrap_dataloaders``)."""
    indices = ORIGINALS['basicsr.data.data_sampler.EnlargedSampler.__iter__'](self)
    skip = getattr(self, 'resume_skip', None)
    if skip is not None and skip[0] == self.epoch:
        self.resume_skip = None
        return itertools.islice(indices, skip[1], None)
    return indices


def _wrap_dataloaders(create):
    """Wrap ``basicsr.train.create_train_val_dataloader`` to tell the train sampler where a resumed epoch stood."""

    def wrapped(opt, logger):
        result = create(opt, logger)
        train_loader, train_sampler = result[0], result[1]
        if _RESUME and train_loader is not None and hasattr(train_sampler, 'set_epoch'):
            per_epoch = len(train_loader)
            done = _RESUME['iter'] - _RESUME['epoch'] * per_epoch
            if 0 < done <= per_epoch:
                train_sampler.resume_skip = (_RESUME['epoch'], done * train_loader.batch_size)
                logger.info(f"Resume: skipping the {done} batches of epoch {_RESUME['epoch']} trained before the save.")
        return result

    return wrapped


# --------------------------------------------------------------------------------------------- options
def _wrap_parse_options(parse_options):
    """BasicSR builds ``torch.device('cuda')`` whenever ``num_gpu != 0``, so the official option files
    (``num_gpu: 1`` or ``8``) crash on a machine without a GPU.  Fall back to the CPU with a warning
    when CUDA is not available (``num_gpu: auto`` already resolves to 0 there)."""
    if getattr(parse_options, '_mamba_sr_wrapped', False):
        return parse_options

    def wrapped(root_path, is_train=True):
        import torch

        opt, args = parse_options(root_path, is_train=is_train)
        if opt.get('num_gpu') and not torch.cuda.is_available():
            logger.warning(f"num_gpu: {opt['num_gpu']} but CUDA is not available: running on the CPU (num_gpu: 0).")
            print(f"Warning: num_gpu: {opt['num_gpu']} but CUDA is not available: running on the CPU.", flush=True)
            opt['num_gpu'] = 0
        return opt, args

    wrapped._mamba_sr_wrapped = True
    return wrapped


# --------------------------------------------------------------------------------------------- apply
def apply():
    """Install every work-around once (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    install_torchvision_shim()
    import basicsr.test
    import basicsr.train
    import basicsr.utils.dist_util
    import basicsr.utils.options
    from basicsr.data.data_sampler import EnlargedSampler
    from basicsr.models.base_model import BaseModel

    patches = [
        (basicsr.utils.dist_util, 'init_dist', init_dist),
        (basicsr.utils.options, 'init_dist', init_dist),  # parse_options calls the name it imported
        (basicsr.train, 'load_resume_state', load_resume_state),  # train_pipeline looks it up in its module
        (basicsr.train, 'create_train_val_dataloader', _wrap_dataloaders(basicsr.train.create_train_val_dataloader)),
        (EnlargedSampler, '__iter__', _sampler_iter),
        (basicsr.train, 'parse_options', _wrap_parse_options(basicsr.train.parse_options)),
        (basicsr.test, 'parse_options', _wrap_parse_options(basicsr.test.parse_options)),
        (BaseModel, 'model_to_device', _model_to_device),
        (BaseModel, 'load_network', _load_network),
        (BaseModel, 'save_network', _save_network),
        (BaseModel, 'save_training_state', _save_training_state),
    ]
    for owner, name, new in patches:
        owner_name = owner.__name__ if isinstance(owner, types.ModuleType) else f'{owner.__module__}.{owner.__name__}'
        ORIGINALS.setdefault(f'{owner_name}.{name}', getattr(owner, name))
        setattr(owner, name, new)
    _APPLIED = True

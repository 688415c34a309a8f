"""Safe, atomic and explained checkpoint I/O.

* Every load uses ``torch.load(weights_only=True)``: a checkpoint that needs arbitrary unpickling is
  refused (nothing in it runs) with a message saying why.  ``.safetensors`` files load too.
* Saves are atomic: written to a temporary file in the same folder, flushed and fsync'ed, then
  renamed over the destination, so a killed process never leaves a truncated file.
* Loading into the wrong network reports, in a few lines, which network/variant the checkpoint looks
  like and the first missing/unexpected keys and shape mismatches.
"""
import os
import pickle
import re
import tempfile
import zipfile

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not matching the network."""


def atomic_write(path, write, durable=True):
    """Write ``path`` through a temporary file in the same folder + rename (POSIX-atomic on one filesystem):
    ``write(f)`` fills the binary file object; a failure or kill leaves any old ``path`` untouched and no
    temporary file behind.  ``durable`` also fsyncs the data and the folder entry."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        try:  # make the rename itself durable
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass


def atomic_torch_save(obj, path):
    """``torch.save`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, map_location='cpu'):
    """Load a ``.pth``/``.state``/``.safetensors`` file without running any pickled code."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: no such file')
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise CheckpointError(f'{path}: loading .safetensors needs the safetensors package') from err
        try:
            return load_file(path, device=str(map_location))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f'{path}: not a valid safetensors file ({err})') from err
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'{path}: empty file')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        msg = str(err).split('\n')[0]
        if 'Weights only load failed' in str(err) or 'Unsupported' in str(err) or 'GLOBAL' in str(err):
            raise CheckpointError(
                f'{path}: refused: the file needs arbitrary Python objects to unpickle, which could run code '
                f'(torch.load weights_only=True). Re-save it as a plain state dict. Detail: {_short_reason(err)}'
            ) from err
        raise CheckpointError(f'{path}: corrupt or truncated checkpoint ({msg})') from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(f'{path}: corrupt or truncated checkpoint ({str(err).splitlines()[0]})') from err


def _short_reason(err):
    for line in str(err).splitlines():
        line = line.strip()
        if line.startswith(('WeightsUnpickler error', 'Unsupported')):
            return line
    return str(err).splitlines()[0]


def extract_state_dict(ckpt, param_key='params', path='checkpoint'):
    """Pick the network weights out of a loaded checkpoint: BasicSR's ``params``/``params_ema``
    (falling back to the other), ``state_dict``/``model`` wrappers or a bare state dict; strip a
    DataParallel/DDP ``module.`` prefix."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{path}: expected a dict of tensors, got {type(ckpt).__name__}')
    sd = ckpt
    if param_key is not None and param_key in ckpt and isinstance(ckpt[param_key], dict):
        sd = ckpt[param_key]
    else:
        for key in ('params_ema', 'params', 'state_dict', 'model', 'net_g'):
            if key in ckpt and isinstance(ckpt[key], dict):
                sd = ckpt[key]
                break
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        bad = next(k for k, v in sd.items() if not isinstance(v, torch.Tensor))
        raise CheckpointError(f'{path}: no state dict found (entry {bad!r} is a {type(sd[bad]).__name__}; '
                              f'top-level keys: {sorted(ckpt)[:8]})')
    if sd and all(k.startswith('module.') for k in sd):
        sd = {k[len('module.'):]: v for k, v in sd.items()}
    return dict(sd)


def _guess_upscale(sd):
    """Upscale factor from the upsampler's weights: pixel-shuffle stages (conv to 4x or 9x the width,
    one conv per x2 stage) or pixel-shuffle-direct (conv to out_ch * scale^2)."""
    w = sd.get('upsample.0.weight')
    if w is None or w.dim() != 4:
        return None
    out_c, in_c = w.shape[:2]
    if out_c % in_c == 0 and out_c // in_c in (4, 9):
        stages = len([k for k in sd if re.fullmatch(r'upsample\.\d+\.weight', k)])
        return (2**stages) if out_c // in_c == 4 else 3
    for ch in (3, 1):
        root = int(round((out_c / ch)**0.5))
        if root * root * ch == out_c:
            return root
    return None


def describe_state_dict(sd):
    """A one-line guess of which network/variant a state dict belongs to, from its keys and shapes."""
    keys = list(sd)
    first = sd.get('conv_first.weight')
    width = first.shape[0] if first is not None else '?'
    up = _guess_upscale(sd)
    scale = f', x{up}' if up else (', no upsampler' if 'conv_first.weight' in sd else '')
    if any('.assm.' in k for k in keys):
        kind = 'MambaIRv2Light' if any('.convffn1.sg.' in k for k in keys) else 'MambaIRv2'
        groups = {k.split('.')[1] for k in keys if re.match(r'layers\.\d+\.', k)}
        return f'{kind} (embed_dim {width}, {len(groups)} groups{scale})'
    if any('.attn.mamba.mamba.' in k for k in keys):
        blocks = {k.split('.')[1] for k in keys if k.startswith('body.')}
        return f'MMA (num_feat {width}, num_block {len(blocks)}{scale})'
    if any(k.startswith('layers.layer_') for k in keys):
        depth = {k.split('.')[3] for k in keys if k.startswith('layers.layer_0.blocks.')}
        return f'MPSI (embed_dim {width}, depth {len(depth)}{scale})'
    return f'an unknown network ({len(sd)} tensors, first keys {keys[:3]})'


def compare_state_dicts(model_sd, ckpt_sd, limit=5):
    """Return (missing, unexpected, mismatched) lists: keys only in the model, only in the checkpoint,
    and ``(key, model_shape, ckpt_shape)`` for shared keys of different shape."""
    missing = [k for k in model_sd if k not in ckpt_sd]
    unexpected = [k for k in ckpt_sd if k not in model_sd]
    mismatched = [(k, tuple(model_sd[k].shape), tuple(ckpt_sd[k].shape)) for k in model_sd
                  if k in ckpt_sd and tuple(model_sd[k].shape) != tuple(ckpt_sd[k].shape)]
    return missing, unexpected, mismatched


def mismatch_report(net, model_sd, ckpt_sd, path, limit=5):
    missing, unexpected, mismatched = compare_state_dicts(model_sd, ckpt_sd)
    lines = [f'{path} does not fit {type(net).__name__}: the checkpoint looks like {describe_state_dict(ckpt_sd)}, '
             f'the network is {describe_state_dict(model_sd)}.']
    if mismatched:
        lines.append(f'  {len(mismatched)} shape mismatches, e.g. ' +
                     '; '.join(f'{k}: network {a} vs checkpoint {b}' for k, a, b in mismatched[:limit]))
    if missing:
        lines.append(f'  {len(missing)} keys missing from the checkpoint, e.g. {missing[:limit]}')
    if unexpected:
        lines.append(f'  {len(unexpected)} unexpected keys in the checkpoint, e.g. {unexpected[:limit]}')
    return '\n'.join(lines)


def load_state_dict_into(net, path_or_sd, strict=True, param_key='params'):
    """Load weights into ``net`` (a file path or an already loaded dict).

    With ``strict=True`` a mismatch raises :class:`CheckpointError` with a short report.  With
    ``strict=False`` tensors whose shape differs are skipped (BasicSR's behaviour) and the rest loads.
    Modules may drop known-unused tensors on load (see each network), so the check is done by
    ``nn.Module.load_state_dict`` itself and only explained here.
    """
    path = path_or_sd if isinstance(path_or_sd, (str, os.PathLike)) else 'state dict'
    ckpt = load_checkpoint(path_or_sd) if isinstance(path_or_sd, (str, os.PathLike)) else path_or_sd
    sd = extract_state_dict(ckpt, param_key, path)
    model_sd = net.state_dict()
    if not strict:
        sd = {k: v for k, v in sd.items() if k not in model_sd or tuple(v.shape) == tuple(model_sd[k].shape)}
    try:
        result = net.load_state_dict(sd, strict=strict)
    except RuntimeError as err:
        raise CheckpointError(mismatch_report(net, model_sd, sd, path)) from err
    return result

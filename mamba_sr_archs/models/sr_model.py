"""BasicSR model classes for the networks of this package.

One base, :class:`MambaSRModel`, serves all networks: BasicSR's ``SRModel`` (EMA, validation,
checkpointing exactly as BasicSR does them) plus

* tiled inference for large images (``tile: {tile_size: 64, tile_pad: 16}`` at the top level of the
  option file, or under ``val``), overlapping tiles blended;
* optional x8 self-ensemble at test time (``val: {self_ensemble: true}``);
* non-finite loss guard: a step whose loss is NaN/Inf on any rank is skipped and logged; after
  ``train: {max_nonfinite_steps: N}`` (default 20) consecutive ones training stops with a clear error,
  keeping the last saved state.
"""
import math
from collections import OrderedDict

import torch
import torch.distributed as dist
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger

from .._registry import register_model
from ..inference import sr_forward


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive steps with a NaN/Inf loss."""


class MambaSRModel(SRModel):
    """SRModel with tiled / self-ensemble inference and a non-finite loss guard."""

    def __init__(self, opt):
        super().__init__(opt)
        tile = opt.get('tile') or opt.get('val', {}).get('tile') or {}
        self.tile_size = tile.get('tile_size')
        self.tile_pad = tile.get('tile_pad', 16)
        self.self_ensemble = bool(opt.get('val', {}).get('self_ensemble', False))
        self.scale = opt.get('scale', 1)
        self._nonfinite_steps = 0

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        self.output = sr_forward(net, self.lq, self.scale, self.tile_size, self.tile_pad, self.self_ensemble)
        if was_training:
            net.train()

    def _loss(self):
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, self.gt)
            l_total += l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            if l_percep is not None:
                l_total += l_percep
                loss_dict['l_percep'] = l_percep
            if l_style is not None:
                l_total += l_style
                loss_dict['l_style'] = l_style
        return l_total, loss_dict

    def _all_ranks_finite(self, loss):
        finite = torch.isfinite(loss.detach()).all().float().reshape(1)
        if self.opt.get('dist') and dist.is_available() and dist.is_initialized():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)  # every rank must skip together (DDP)
        return bool(finite.item() > 0)

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        self.output = self.net_g(self.lq)
        l_total, loss_dict = self._loss()
        if not self._all_ranks_finite(l_total):
            self._nonfinite_steps += 1
            limit = self.opt['train'].get('max_nonfinite_steps', 20)
            get_root_logger().warning(f'iter {current_iter}: non-finite loss ({float(l_total.detach()):.4g}); '
                                      f'step skipped ({self._nonfinite_steps}/{limit} in a row).')
            if self._nonfinite_steps >= limit:
                raise NonFiniteLossError(
                    f'{self._nonfinite_steps} consecutive non-finite losses (iter {current_iter}): training '
                    'stopped. The last saved state in training_states/ is kept; lower the learning rate or check '
                    'the data, then resume with --auto_resume.')
            self.log_dict = OrderedDict((k, math.nan) for k in loss_dict)
            return
        self._nonfinite_steps = 0
        l_total.backward()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)


@register_model
class MambaIRv2Model(MambaSRModel):
    """Model for ``MambaIRv2`` (the official option files' ``model_type``)."""


@register_model
class MambaIRv2LightModel(MambaSRModel):
    """Model for ``MambaIRv2Light``."""


@register_model
class MMAModel(MambaSRModel):
    """Model for ``MMA``."""


@register_model
class MPSIModel(MambaSRModel):
    """Model for ``MPSI`` (tiled inference replaces the official ``use_chop``)."""

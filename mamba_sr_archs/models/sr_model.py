"""BasicSR model classes for the networks of this package.

One base, :class:`MambaSRModel`, serves all networks: BasicSR's ``SRModel`` (EMA, validation,
checkpointing exactly as BasicSR does them) plus

* tiled inference for large images (``tile: {tile_size: 64, tile_pad: 16}`` at the top level of the
  option file, or under ``val``), overlapping tiles blended;
* optional x8 self-ensemble at test time (``val: {self_ensemble: true}``);
* non-finite loss guard: a step whose loss is NaN/Inf on any rank is skipped and logged; after
  ``train: {max_nonfinite_steps: N}`` (default 20) consecutive ones training stops with a clear error,
  keeping the last saved state;
* GPU speed options under ``train:`` (all off by default, so the default path is the official fp32 one):
  ``tf32: true`` (TF32 tensor-core matmuls and convolutions), ``autocast: bf16`` (bf16 autocast for the
  forward; the loss is computed in fp32), ``cuda_graph: true`` (forward, loss and backward captured once in a
  CUDA graph and replayed every iteration, which removes the launch overhead that leaves the GPU idle half of
  the time; the optimizer step, the non-finite guard and EMA run after the replay as usual), ``compile: true``
  (or a torch.compile backend name: the training forward runs through ``torch.compile(net_g)``; with
  ``cuda_graph`` it made the MMA-B and MPSI steps 1.35x and 1.41x faster on an H100), ``lean_memory: 1 | 2``
  (``true`` = 2; MMA and MPSI: each Mamba direction runs as one op that keeps its inputs (level 1: and the scan's
  checkpoints) and recomputes conv, SiLU and the projections (level 2: and the scan's checkpoints) in the
  backward, ops/mamba_inner.py; combines with ``compile``; needs the cuda or triton scan backend, else the plain
  layer runs; on an H100 MMA-B 18.1 -> 11.3 GB at level 1, MPSI 11.1 -> 6.0 GB at level 2).  Fused Adam is BasicSR's own
  ``optim_g: {type: Adam, fused: true}``.  Measured speed: docs/benchmarks.md.
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
        self._graph = None
        self._use_graph, self._autocast_dtype, self._train_forward = False, None, self.net_g
        if self.is_train:
            self._setup_speed_options(opt['train'])

    def _setup_speed_options(self, train_opt):
        """Read ``tf32`` / ``autocast`` / ``compile`` / ``lean_memory`` / ``cuda_graph`` from the train options (see the
        module docstring)."""
        logger = get_root_logger()
        on_cuda = self.device.type == 'cuda'
        autocast = train_opt.get('autocast') or None
        if autocast in ('fp16', 'float16'):
            # fp16 needs loss scaling, which this model does not do; bf16 has fp32's range and does not.
            raise ValueError("train: autocast 'fp16' would need a GradScaler; use 'bf16'")
        if autocast not in (None, 'bf16', 'bfloat16'):
            raise ValueError(f"train: autocast must be 'bf16' or 'fp16' (or absent), got {autocast!r}")
        self._autocast_dtype = None if autocast is None else torch.bfloat16
        if train_opt.get('tf32'):
            if on_cuda:
                torch.backends.cuda.matmul.allow_tf32 = True
                torch.backends.cudnn.allow_tf32 = True
            else:
                logger.warning('train: tf32 is a CUDA option; ignored on %s.', self.device)
        backend = train_opt.get('compile')
        if backend not in (None, False, True) and not isinstance(backend, str):
            raise ValueError(f'train: compile must be true/false or a torch.compile backend name, got {backend!r}')
        # The compiled callable shares net_g's parameters; net_g itself stays a plain module, so checkpoints,
        # EMA and validation see the usual state_dict keys.
        self._train_forward = self.net_g if not backend else torch.compile(
            self.net_g, **({} if backend is True else {'backend': backend}))
        lean = train_opt.get('lean_memory', False)
        if lean not in (False, True, 1, 2) or isinstance(lean, float):
            raise ValueError(f'train: lean_memory must be true/false, 1 or 2, got {lean!r}')
        if lean:
            from ..archs.mamba_layer import Mamba
            layers = [m for m in self.net_g.modules() if isinstance(m, Mamba)]
            for m in layers:
                m.lean_memory = 2 if lean is True else int(lean)
            if not layers:
                logger.warning('train: lean_memory applies to Mamba (S6) layers, and %s has none; ignored.',
                               type(self.net_g).__name__)
        self._use_graph = bool(train_opt.get('cuda_graph'))
        if self._use_graph and not on_cuda:
            logger.warning('train: cuda_graph needs a CUDA device; training runs eagerly on %s.', self.device)
            self._use_graph = False
        if self._use_graph and (self.opt.get('dist') or isinstance(self.net_g, torch.nn.DataParallel)):
            logger.warning('train: cuda_graph is not used with several GPUs (DDP gradient hooks and DataParallel '
                           'scatter cannot be captured); training runs eagerly.')
            self._use_graph = False

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        self.output = sr_forward(net, self.lq, self.scale, self.tile_size, self.tile_pad, self.self_ensemble)
        if was_training:
            net.train()

    def _loss(self, gt):
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, gt)
            l_total += l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, gt)
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

    def _forward_loss(self, lq, gt):
        """net_g(lq) (under autocast when asked) and the losses against gt, in fp32."""
        with torch.autocast(self.device.type, dtype=self._autocast_dtype or torch.bfloat16,
                            enabled=self._autocast_dtype is not None):
            output = self._train_forward(lq)
        self.output = output.float()
        return self._loss(gt)

    def _capture(self):
        """Capture forward + loss + backward for the current lq/gt shapes in a CUDA graph.

        Gradients are set to None before the capture, so that the backward inside the graph allocates them in the
        graph's memory pool: every replay overwrites ``param.grad`` in place (no accumulation), which is what the
        optimizer then reads.  Three warm-up passes run on a side stream first, as CUDA graph capture requires.
        """
        static_lq, static_gt = self.lq.clone(), self.gt.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.optimizer_g.zero_grad(set_to_none=True)
                l_total, _ = self._forward_loss(static_lq, static_gt)
                l_total.backward()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.optimizer_g.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            l_total, loss_dict = self._forward_loss(static_lq, static_gt)
            l_total.backward()
        self._graph = dict(graph=graph, lq=static_lq, gt=static_gt, output=self.output, loss=l_total,
                           loss_dict=loss_dict, shapes=(tuple(self.lq.shape), tuple(self.gt.shape)))
        get_root_logger().info(f'CUDA graph captured for lq {tuple(self.lq.shape)}, gt {tuple(self.gt.shape)}.')

    def _graph_forward_backward(self):
        g = self._graph
        if g is None or g['shapes'] != (tuple(self.lq.shape), tuple(self.gt.shape)):
            if g is not None:
                get_root_logger().warning('Batch shape changed: CUDA graph captured again.')
                self._graph = None
            self._capture()
            g = self._graph
        g['lq'].copy_(self.lq)
        g['gt'].copy_(self.gt)
        g['graph'].replay()
        self.output = g['output']
        return g['loss'], g['loss_dict']

    def optimize_parameters(self, current_iter):
        if self._use_graph:
            l_total, loss_dict = self._graph_forward_backward()   # gradients are already computed
        else:
            self.optimizer_g.zero_grad()
            l_total, loss_dict = self._forward_loss(self.lq, self.gt)
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
        if not self._use_graph:
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

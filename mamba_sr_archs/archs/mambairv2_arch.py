"""MambaIRv2: Attentive State Space Restoration (Guo et al., CVPR 2025, arXiv 2411.15269).

The network (Sec. 3 of the paper) is a stack of *attentive state-space groups* (ASSG; ``ASSB`` in
the official code), each a chain of *attentive state-space blocks* (``AttentiveLayer``).  Every
block has two halves:

1. (shifted) window multi-head self-attention with a relative position bias, followed by a
   ConvFFN (Sec. 3.2, "window attention complements the state space model with local detail");
2. the *attentive state-space module* (ASSM, Sec. 3.3): a learned prompt pool
   (``embeddingB @ embeddingA``), a router that assigns every pixel one prompt, *semantic-guided
   neighbouring* (SGN: pixels are sorted by their route so that semantically similar pixels become
   neighbours of the 1-D scan, then put back with the inverse permutation) and the *attentive
   state-space equation* (ASE: the routed prompt is added to the output matrix C of the selective
   scan), followed by a second ConvFFN.

``MambaIRv2`` is the classic model (SR / JPEG CAR / denoising); ``MambaIRv2Light`` differs only in
the feed-forward layers (gated MLP instead of ConvFFN).  Module and parameter names follow the
official implementation so that its checkpoints load with ``strict=True``.

Behaviour that deliberately differs from the official code:

* Routing in eval is a deterministic one-hot argmax (``eval_routing='argmax'``, the default);
  the official code draws Gumbel noise also at test time (``eval_routing='gumbel'`` restores it).
  Training always uses ``F.gumbel_softmax(hard=True)`` as the official code does.
* The route sort is stable (equal routes keep raster order), matching what the official
  ``torch.sort(stable=False)`` does on CUDA for these sequence lengths.
* Inputs smaller than half a window are padded by repeating the official flip padding, which the
  official code cannot do; for all other sizes the padding is identical.
* The selective scan runs in float32 or, for float64 models, in float64.
"""
import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from .._registry import register_arch
from ..ops import selective_scan
from .mamba_layer import dt_bias_init, s4d_real_A_log
from .upsamplers import Upsample, UpsampleOneStep

__all__ = ['MambaIRv2', 'MambaIRv2Light']


# ----------------------------------------------------------------------------------------------
# Window helpers (Swin-style)
# ----------------------------------------------------------------------------------------------
def window_partition(x, window_size):
    """(b, h, w, c) -> (b * num_windows, window_size, window_size, c)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows, window_size, h, w):
    """(b * num_windows, window_size, window_size, c) -> (b, h, w, c)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window_size, device=None):
    """Index (ws*ws, ws*ws) into a (2*ws-1)^2 relative position bias table (row-major (dy, dx))."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size, device=device),
                                        torch.arange(window_size, device=device), indexing='ij'))
    coords = coords.flatten(1)  # 2, ws*ws
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


def shifted_window_mask(h, w, window_size, shift_size, device=None, dtype=torch.float32):
    """Attention mask (num_windows, ws*ws, ws*ws) for shifted windows: 0 inside a region, -100 across.

    Built directly on ``device``; the regions are those of Swin / the official code
    (``[0, -ws)``, ``[-ws, -shift)``, ``[-shift, end)`` on each axis of the padded image).
    """
    def regions(n):  # 0, 1, 2 per row/column, without any host-side tensor
        i = torch.arange(n, device=device)
        return (i >= n - window_size).long() + (i >= n - shift_size).long()

    img = (regions(h)[:, None] * 3 + regions(w)[None, :]).to(dtype)  # h, w
    win = window_partition(img.view(1, h, w, 1), window_size).reshape(-1, window_size * window_size)
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


# ----------------------------------------------------------------------------------------------
# Feed-forward layers
# ----------------------------------------------------------------------------------------------
class DWConv(nn.Module):
    """Depthwise k x k convolution + GELU on a token sequence (b, h*w, c)."""

    def __init__(self, hidden_features, kernel_size=5):
        super().__init__()
        self.hidden_features = hidden_features
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(hidden_features, hidden_features, kernel_size, 1, (kernel_size - 1) // 2,
                      groups=hidden_features),
            nn.GELU())

    def forward(self, x, x_size):
        b, n, c = x.shape
        x = x.transpose(1, 2).reshape(b, c, x_size[0], x_size[1])
        return self.depthwise_conv(x).flatten(2).transpose(1, 2)


class ConvFFN(nn.Module):
    """ConvFFN: fc1 -> GELU -> (+ depthwise conv branch) -> fc2 (classic MambaIRv2's FFN)."""

    def __init__(self, in_features, hidden_features=None, out_features=None, kernel_size=5,
                 act_layer=nn.GELU):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.dwconv = DWConv(hidden_features, kernel_size)
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x, x_size):
        x = self.act(self.fc1(x))
        x = x + self.dwconv(x, x_size)
        return self.fc2(x)


class Gate(nn.Module):
    """Spatial gate: first channel half * depthwise-5x5(LayerNorm(second half))."""

    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, kernel_size=5, stride=1, padding=2, groups=dim)

    def forward(self, x, h, w):
        x1, x2 = x.chunk(2, dim=-1)
        b, n, c = x2.shape
        x2 = self.norm(x2).transpose(1, 2).reshape(b, c, h, w)
        x2 = self.conv(x2).flatten(2).transpose(1, 2)
        return x1 * x2


class GatedMLP(nn.Module):
    """Gated MLP of MambaIRv2Light: fc1 -> GELU -> Gate -> fc2 (hidden width halves in the gate)."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU,
                 drop=0.):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.sg = Gate(hidden_features // 2)
        self.fc2 = nn.Linear(hidden_features // 2, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x, x_size):
        x = self.drop(self.act(self.fc1(x)))
        x = self.drop(self.sg(x, x_size[0], x_size[1]))
        return self.drop(self.fc2(x))


# ----------------------------------------------------------------------------------------------
# Window attention
# ----------------------------------------------------------------------------------------------
class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias (Swin).

    Takes the already projected ``qkv`` of each window, shape (b * num_windows, ws*ws, 3c).
    """

    def __init__(self, dim, window_size, num_heads, qkv_bias=True):
        super().__init__()
        self.dim = dim
        self.window_size = window_size  # (wh, ww)
        self.num_heads = num_heads
        self.qkv_bias = qkv_bias
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads))
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=.02)

    def forward(self, qkv, rpi, mask=None):
        b_, n, c3 = qkv.shape
        c = c3 // 3
        q, k, v = qkv.reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # b_, heads, n, n
        bias = self.relative_position_bias_table[rpi.view(-1)].view(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b_, n, c)
        return self.proj(x)

    def extra_repr(self):
        return f'dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}'


# ----------------------------------------------------------------------------------------------
# Attentive state space module
# ----------------------------------------------------------------------------------------------
def index_reverse(index):
    """Inverse permutation of each row of ``index`` (b, n), by one scatter (no loop over b)."""
    src = torch.arange(index.shape[-1], device=index.device).expand_as(index)
    return torch.empty_like(index).scatter_(-1, index, src)


def semantic_neighbor(x, index):
    """Reorder the tokens of x (b, n, c) along n by ``index`` (b, n): out[:, i] = x[:, index[:, i]]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class SelectiveScan(nn.Module):
    """One-direction S6 scan with the attentive state-space equation (ASE, Sec. 3.3).

    y = SSM(x; delta, A, B, C + prompt, D): the prompt routed to each token is added to the
    input-dependent output matrix C.  Parameters are kept stacked with a leading K=1 axis as in
    the official code (``x_proj_weight`` (1, dt_rank+2N, D), ``dt_projs_weight`` (1, D, dt_rank),
    ``dt_projs_bias`` (1, D), ``A_logs`` (D, N), ``Ds`` (D,)).
    """

    def __init__(self, d_model, d_state=16, expand=2., dt_rank='auto', dt_min=0.001, dt_max=0.1,
                 dt_init='random', dt_scale=1.0, dt_init_floor=1e-4, **kwargs):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == 'auto' else dt_rank

        x_proj = torch.empty(1, self.dt_rank + 2 * d_state, self.d_inner)
        nn.init.kaiming_uniform_(x_proj[0], a=math.sqrt(5))  # nn.Linear default
        self.x_proj_weight = nn.Parameter(x_proj)

        std = self.dt_rank ** -0.5 * dt_scale
        dt_w = torch.empty(1, self.d_inner, self.dt_rank)
        if dt_init == 'constant':
            nn.init.constant_(dt_w, std)
        elif dt_init == 'random':
            nn.init.uniform_(dt_w, -std, std)
        else:
            raise NotImplementedError(dt_init)
        self.dt_projs_weight = nn.Parameter(dt_w)
        self.dt_projs_bias = nn.Parameter(dt_bias_init(self.d_inner, dt_min, dt_max, dt_init_floor)[None])
        self.A_logs = nn.Parameter(s4d_real_A_log(self.d_inner, d_state))
        self.Ds = nn.Parameter(torch.ones(self.d_inner))
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True

    def forward(self, x, prompt):
        """x: (b, l, d) tokens in scan order; prompt: (b, l, d_state).  Returns (b, l, d)."""
        b, l, d = x.shape
        n = self.d_state
        xs = x.transpose(1, 2)  # b, d, l
        x_dbl = torch.matmul(self.x_proj_weight[0], xs)  # b, r+2n, l
        dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, n, n], dim=1)
        dts = torch.matmul(self.dt_projs_weight[0], dts)  # b, d, l
        # the scan runs in float32 (as mamba_ssm) or, for float64 models, in float64
        ft = torch.promote_types(x.dtype, torch.float32)
        Cs = Cs.to(ft) + prompt.transpose(1, 2).to(ft)  # ASE: prompt added to C
        y = selective_scan(
            xs.to(ft).contiguous(), dts.to(ft).contiguous(),
            -torch.exp(self.A_logs.to(ft)),
            Bs.to(ft).reshape(b, 1, n, l).contiguous(), Cs.reshape(b, 1, n, l).contiguous(),
            self.Ds.to(ft), z=None, delta_bias=self.dt_projs_bias.to(ft).view(-1),
            delta_softplus=True, return_last_state=False)  # b, d, l
        return y.transpose(1, 2).to(x.dtype)


class ASSM(nn.Module):
    """Attentive state-space module (Sec. 3.3).

    1. Routing: a small MLP gives each token log-probabilities over ``num_tokens`` prompts; a hard
       one-hot choice (Gumbel straight-through in training) picks its prompt from the pool
       ``embeddingB.weight @ embeddingA.weight`` (num_tokens, d_state), a low-rank prompt pool
       whose second factor ``embeddingA`` (inner_rank, d_state) belongs to the enclosing block.
    2. Semantic-guided neighbouring: tokens (after a 1x1 in-projection gated by a depthwise
       positional conv) are stably sorted by route index, scanned, and put back with the inverse
       permutation.
    3. Attentive state-space equation: the scan's C matrix gets the prompt added.

    As in the official code the prompt sequence is *not* reordered with the tokens: the prompt
    of the token at raster position i is added to C at scan position i.

    Args:
        eval_routing: ``'argmax'`` (default; deterministic one-hot of the best route) or
            ``'gumbel'`` (the official stochastic Gumbel sampling) outside training.
    """

    def __init__(self, dim, d_state, input_resolution=None, num_tokens=64, inner_rank=128, mlp_ratio=2.,
                 eval_routing='argmax'):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_tokens = num_tokens
        self.inner_rank = inner_rank
        self.d_state = d_state
        self.expand = mlp_ratio
        self.eval_routing = eval_routing
        hidden = int(dim * mlp_ratio)

        self.selectiveScan = SelectiveScan(d_model=hidden, d_state=d_state, expand=1)
        self.out_norm = nn.LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, dim, bias=True)
        self.in_proj = nn.Sequential(nn.Conv2d(dim, hidden, 1, 1, 0))
        self.CPE = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden))
        self.embeddingB = nn.Embedding(num_tokens, inner_rank)
        self.embeddingB.weight.data.uniform_(-1 / num_tokens, 1 / num_tokens)
        self.route = nn.Sequential(
            nn.Linear(dim, dim // 3),
            nn.GELU(),
            nn.Linear(dim // 3, num_tokens),
            nn.LogSoftmax(dim=-1))

    @property
    def eval_routing(self):
        return self._eval_routing

    @eval_routing.setter
    def eval_routing(self, mode):
        if mode not in ('argmax', 'gumbel'):
            raise ValueError(f"eval_routing must be 'argmax' or 'gumbel', got {mode!r}")
        self._eval_routing = mode

    def routing(self, x, prompt_pool):
        """Return (prompt (b, n, d_state), route index (b, n)) for tokens x (b, n, c)."""
        logits = self.route(x)  # log-probabilities (b, n, num_tokens)
        if self.training or self.eval_routing == 'gumbel':
            policy = F.gumbel_softmax(logits, hard=True, dim=-1)
            index = policy.detach().argmax(dim=-1)
            prompt = policy @ prompt_pool
        else:  # exact one-hot argmax: selecting a row equals the one-hot matmul bit for bit
            index = logits.argmax(dim=-1)
            prompt = prompt_pool[index]
        return prompt, index

    def forward(self, x, x_size, token):
        """x: (b, h*w, c); token: the block's shared ``embeddingA`` (nn.Embedding(inner_rank, d_state))."""
        b, n, c = x.shape
        h, w = x_size
        prompt_pool = self.embeddingB.weight @ token.weight  # num_tokens, d_state
        prompt, index = self.routing(x, prompt_pool)

        order = torch.sort(index, dim=-1, stable=True)[1]  # semantic neighbours become adjacent
        inverse = index_reverse(order)

        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = self.in_proj(x)
        x = x * torch.sigmoid(self.CPE(x))
        x = x.flatten(2).transpose(1, 2)  # b, n, hidden

        y = self.selectiveScan(semantic_neighbor(x, order), prompt)  # SGN unfold + ASE scan
        y = self.out_proj(self.out_norm(y))
        return semantic_neighbor(y, inverse)  # SGN fold

    def extra_repr(self):
        return f'num_tokens={self.num_tokens}, inner_rank={self.inner_rank}, eval_routing={self.eval_routing!r}'


# ----------------------------------------------------------------------------------------------
# Blocks and groups
# ----------------------------------------------------------------------------------------------
class AttentiveLayer(nn.Module):
    """Attentive state-space block: (S)W-MSA + FFN, then ASSM + FFN, each half with a layer-scaled skip.

    ``ffn='conv'`` builds ConvFFNs (classic), ``ffn='gated'`` gated MLPs (lightweight).
    """

    def __init__(self, dim, d_state, input_resolution, num_heads, window_size, shift_size, inner_rank,
                 num_tokens, convffn_kernel_size, mlp_ratio, qkv_bias=True, norm_layer=nn.LayerNorm,
                 is_last=False, ffn='conv', eval_routing='argmax'):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        self.inner_rank = inner_rank
        self.num_tokens = num_tokens
        self.is_last = is_last

        self.norm1 = norm_layer(dim)
        self.norm2 = norm_layer(dim)
        self.norm3 = norm_layer(dim)
        self.norm4 = norm_layer(dim)
        layer_scale = 1e-4
        self.scale1 = nn.Parameter(layer_scale * torch.ones(dim))
        self.scale2 = nn.Parameter(layer_scale * torch.ones(dim))

        self.wqkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.win_mhsa = WindowAttention(dim, (window_size, window_size), num_heads, qkv_bias=qkv_bias)
        self.assm = ASSM(dim, d_state, input_resolution=input_resolution, num_tokens=num_tokens,
                         inner_rank=inner_rank, mlp_ratio=mlp_ratio, eval_routing=eval_routing)
        hidden = int(dim * mlp_ratio)
        if ffn == 'conv':
            self.convffn1 = ConvFFN(dim, hidden, kernel_size=convffn_kernel_size)
            self.convffn2 = ConvFFN(dim, hidden, kernel_size=convffn_kernel_size)
        elif ffn == 'gated':
            self.convffn1 = GatedMLP(dim, hidden, dim)
            self.convffn2 = GatedMLP(dim, hidden, dim)
        else:
            raise ValueError(f'unknown ffn {ffn!r}')
        self.embeddingA = nn.Embedding(inner_rank, d_state)
        self.embeddingA.weight.data.uniform_(-1 / inner_rank, 1 / inner_rank)

    def forward(self, x, x_size, params):
        h, w = x_size
        b, n, c = x.shape
        ws = self.window_size

        # part 1: (shifted) window MHSA + FFN
        shortcut = x
        qkv = self.wqkv(self.norm1(x)).view(b, h, w, 3 * c)
        mask = None
        if self.shift_size > 0:
            qkv = torch.roll(qkv, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
            mask = params['attn_mask']
        windows = window_partition(qkv, ws).reshape(-1, ws * ws, 3 * c)
        attn = self.win_mhsa(windows, rpi=params['rpi_sa'], mask=mask)
        attn = window_reverse(attn.view(-1, ws, ws, c), ws, h, w)
        if self.shift_size > 0:
            attn = torch.roll(attn, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x_win = attn.reshape(b, n, c) + shortcut
        x_win = self.convffn1(self.norm2(x_win), x_size) + x_win
        x = shortcut * self.scale1 + x_win

        # part 2: attentive state space + FFN
        shortcut = x
        x_aca = self.assm(self.norm3(x), x_size, self.embeddingA) + x
        x = x_aca + self.convffn2(self.norm4(x_aca), x_size)
        return shortcut * self.scale2 + x


class BasicBlock(nn.Module):
    """A chain of ``depth`` attentive state-space blocks; odd blocks use shifted windows."""

    def __init__(self, dim, d_state, input_resolution, idx, depth, num_heads, window_size, inner_rank,
                 num_tokens, convffn_kernel_size, mlp_ratio=4., qkv_bias=True, norm_layer=nn.LayerNorm,
                 ffn='conv', eval_routing='argmax', use_checkpoint=False):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.depth = depth
        self.idx = idx
        self.use_checkpoint = use_checkpoint
        self.layers = nn.ModuleList([
            AttentiveLayer(dim=dim, d_state=d_state, input_resolution=input_resolution, num_heads=num_heads,
                           window_size=window_size, shift_size=0 if i % 2 == 0 else window_size // 2,
                           inner_rank=inner_rank, num_tokens=num_tokens,
                           convffn_kernel_size=convffn_kernel_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                           norm_layer=norm_layer, is_last=i == depth - 1, ffn=ffn, eval_routing=eval_routing)
            for i in range(depth)])

    def forward(self, x, x_size, params):
        for layer in self.layers:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                # recompute in backward; the RNG state is restored, so the Gumbel routes are the same
                x = torch.utils.checkpoint.checkpoint(layer, x, x_size, params, use_reentrant=False)
            else:
                x = layer(x, x_size, params)
        return x


class ASSB(nn.Module):
    """Attentive state-space group (ASSG in the paper): blocks, a conv, and a group-level skip."""

    def __init__(self, dim, d_state, idx, input_resolution, depth, num_heads, window_size, inner_rank,
                 num_tokens, convffn_kernel_size, mlp_ratio, qkv_bias=True, norm_layer=nn.LayerNorm,
                 resi_connection='1conv', ffn='conv', eval_routing='argmax', use_checkpoint=False):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.residual_group = BasicBlock(
            dim=dim, d_state=d_state, input_resolution=input_resolution, idx=idx, depth=depth,
            num_heads=num_heads, window_size=window_size, inner_rank=inner_rank, num_tokens=num_tokens,
            convffn_kernel_size=convffn_kernel_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            norm_layer=norm_layer, ffn=ffn, eval_routing=eval_routing, use_checkpoint=use_checkpoint)
        self.conv = _residual_conv(dim, resi_connection)

    def forward(self, x, x_size, params):
        b, n, c = x.shape
        y = self.residual_group(x, x_size, params)
        y = self.conv(y.transpose(1, 2).reshape(b, c, x_size[0], x_size[1]))
        return y.flatten(2).transpose(1, 2) + x


def _residual_conv(dim, resi_connection):
    if resi_connection == '1conv':
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == '3conv':
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1))
    raise ValueError(f'unknown resi_connection {resi_connection!r}')


class PatchEmbed(nn.Module):
    """(b, c, h, w) feature map -> (b, h*w, c) tokens, optionally layer-normed."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, embed_dim=96, norm_layer=None):
        super().__init__()
        img_size = _pair(img_size)
        patch_size = _pair(patch_size)
        self.img_size = img_size
        self.patch_size = patch_size
        self.patches_resolution = [img_size[0] // patch_size[0], img_size[1] // patch_size[1]]
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.norm = norm_layer(embed_dim) if norm_layer is not None else None

    def forward(self, x):
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
def pad_by_flip(x, h, w):
    """Pad (b, c, h0, w0) to (b, c, h, w) by appending flipped copies (rows h0-1, h0-2, ...).

    One step equals the official padding; when more than h0 rows are needed (image smaller than
    half a window) the step is repeated, extending the image periodically by its mirror.
    """
    while x.shape[2] < h:
        x = torch.cat([x, x.flip(2)], 2)
    while x.shape[3] < w:
        x = torch.cat([x, x.flip(3)], 3)
    return x[:, :, :h, :w]


@register_arch
class MambaIRv2(nn.Module):
    """MambaIRv2 (classic): shallow conv, ASSG stack, reconstruction head.

    ``upsampler``: ``'pixelshuffle'`` (classic SR), ``'pixelshuffledirect'`` (lightweight SR),
    ``'nearest+conv'`` (x4 real-world SR) or ``''`` (upscale 1: JPEG CAR / denoising; the head
    predicts a residual added to the input).  Any input size works: the image is padded to a
    multiple of ``window_size`` by flipping and the output is cropped to ``upscale`` x input.

    Extra argument beyond the official ones: ``eval_routing`` ('argmax' | 'gumbel'), see ASSM.
    """

    ffn_type = 'conv'

    def __init__(self, img_size=64, patch_size=1, in_chans=3, embed_dim=48, d_state=8, depths=(6, 6, 6, 6),
                 num_heads=(4, 4, 4, 4), window_size=16, inner_rank=32, num_tokens=64, convffn_kernel_size=5,
                 mlp_ratio=2., qkv_bias=True, norm_layer=nn.LayerNorm, ape=False, patch_norm=True,
                 use_checkpoint=False, upscale=2, img_range=1., upsampler='', resi_connection='1conv',
                 eval_routing='argmax', **kwargs):
        super().__init__()
        if kwargs:
            warnings.warn(f'{type(self).__name__}: ignoring unknown arguments {sorted(kwargs)}')
        num_out_ch = in_chans
        num_feat = 64
        self.img_range = img_range
        self.upscale = upscale
        self.upsampler = upsampler
        self.window_size = window_size
        self.embed_dim = self.num_features = embed_dim
        self.num_layers = len(depths)
        self.mlp_ratio = mlp_ratio
        self.ape = ape
        self.patch_norm = patch_norm
        self.use_checkpoint = use_checkpoint  # activation checkpointing per block in training (saves memory)
        self.shifted = any(d > 1 for d in depths)
        mean = (0.4488, 0.4371, 0.4040) if in_chans == 3 else (0.0,) * in_chans
        # a plain attribute in the official code: non-persistent so the state_dict stays identical
        self.register_buffer('mean', torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)

        # 1. shallow feature extraction
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)

        # 2. deep feature extraction
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim, embed_dim,
                                      norm_layer if patch_norm else None)
        self.patches_resolution = self.patch_embed.patches_resolution
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=.02)
        self.register_buffer('relative_position_index_SA', relative_position_index(window_size))

        resolution = tuple(self.patches_resolution)
        self.layers = nn.ModuleList([
            ASSB(dim=embed_dim, d_state=d_state, idx=i, input_resolution=resolution, depth=depths[i],
                 num_heads=num_heads[i], window_size=window_size, inner_rank=inner_rank, num_tokens=num_tokens,
                 convffn_kernel_size=convffn_kernel_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                 norm_layer=norm_layer, resi_connection=resi_connection, ffn=self.ffn_type,
                 eval_routing=eval_routing, use_checkpoint=use_checkpoint)
            for i in range(self.num_layers)])
        self.norm = norm_layer(embed_dim)
        self.conv_after_body = _residual_conv(embed_dim, resi_connection)

        # 3. reconstruction
        if upsampler == 'pixelshuffle':
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = Upsample(upscale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        elif upsampler == 'pixelshuffledirect':
            self.upsample = UpsampleOneStep(upscale, embed_dim, num_out_ch, resolution)
        elif upsampler == 'nearest+conv':
            assert upscale == 4, 'nearest+conv supports only x4'
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        else:  # denoising / JPEG artifact reduction
            self.conv_last = nn.Conv2d(embed_dim, num_out_ch, 3, 1, 1)

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {'absolute_pos_embed'}

    @torch.jit.ignore
    def no_weight_decay_keywords(self):
        return {'relative_position_bias_table'}

    def set_eval_routing(self, mode):
        """Switch every ASSM between deterministic ('argmax') and official ('gumbel') eval routing."""
        for m in self.modules():
            if isinstance(m, ASSM):
                m.eval_routing = mode

    def forward_features(self, x, params):
        x_size = (x.shape[2], x.shape[3])
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        for layer in self.layers:
            x = layer(x, x_size, params)
        x = self.norm(x)
        return x.transpose(1, 2).reshape(x.shape[0], self.embed_dim, x_size[0], x_size[1])

    def forward(self, x):
        h_ori, w_ori = x.shape[-2:]
        ws = self.window_size
        h, w = -(-h_ori // ws) * ws, -(-w_ori // ws) * ws
        x = pad_by_flip(x, h, w)

        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        params = {'rpi_sa': self.relative_position_index_SA, 'attn_mask': None}
        if self.shifted:
            params['attn_mask'] = shifted_window_mask(h, w, ws, ws // 2, device=x.device, dtype=x.dtype)

        if self.upsampler == 'pixelshuffle':
            x = self.conv_first(x)
            x = self.conv_after_body(self.forward_features(x, params)) + x
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        elif self.upsampler == 'pixelshuffledirect':
            x = self.conv_first(x)
            x = self.conv_after_body(self.forward_features(x, params)) + x
            x = self.upsample(x)
        elif self.upsampler == 'nearest+conv':
            x = self.conv_first(x)
            x = self.conv_after_body(self.forward_features(x, params)) + x
            x = self.conv_before_upsample(x)
            x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode='nearest')))
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode='nearest')))
            x = self.conv_last(self.lrelu(self.conv_hr(x)))
        else:
            x_first = self.conv_first(x)
            res = self.conv_after_body(self.forward_features(x_first, params)) + x_first
            x = x + self.conv_last(res)

        x = x / self.img_range + mean
        return x[..., :h_ori * self.upscale, :w_ori * self.upscale]


@register_arch
class MambaIRv2Light(MambaIRv2):
    """Lightweight MambaIRv2: as :class:`MambaIRv2` with gated MLPs instead of ConvFFNs.

    ``convffn_kernel_size`` is accepted but, as in the official model, unused (the gate's
    depthwise conv is fixed at 5x5).
    """

    ffn_type = 'gated'

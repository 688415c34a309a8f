"""Selective scan (S6) in Triton: forward and backward kernels for CUDA tensors.

``selective_scan_triton`` computes exactly what mamba_ssm's ``selective_scan_fn`` computes (Mamba, Gu & Dao 2023,
Sec. 3 / Alg. 2), for real ``A``::

    delta = softplus(delta + delta_bias)            (bias and softplus optional)
    h_t   = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        h: (d, N) per batch, fp32
    y_t   = <C_t, h_t> + D * u_t ;   out_t = y_t * silu(z_t)        (D and z optional)

Layout: ``u, delta, z`` (b, d, L); ``A`` (d, N); ``B, C`` (b, N, L) or grouped (b, G, N, L), where channel ``i``
reads group ``i // (d // G)``; ``D, delta_bias`` (d,).  The output has the dtype of ``u``; the last state is
(b, d, N) float32.

Two kernel pairs; ``_IMPL = 'auto'`` (default) picks per shape the one measured faster on an H100 (``_impl_for``:
'runs' for N <= 8 and for few long sequences, 'lanes' otherwise; docs/benchmarks.md).

Design of the 'runs' kernels.  One program owns one batch element and a block of ``BLOCK_D`` channels of
one group, and walks the sequence in chunks of T = K * R steps, keeping the state tile (BLOCK_D, N) in registers.
A chunk is held as a (K, BLOCK_D, N, R) tile: position r * K + k, so axis 0 runs over K consecutive positions.
Triton's default layout puts R and N on the lanes and warps and leaves K (and BLOCK_D) inside each thread, so:

1. the recurrence over pairs (a, b), (a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2), is scanned along K inside each
   thread (``tl.associative_scan`` over axis 0 emits no shuffles);
2. only the R run aggregates are scanned across lanes, with the pair-of-maps monoid (E, T) o (E', T') =
   (T then E', T then T'), whose scan yields the exclusive prefix E (the state before each run) without a shift;
3. each position's state is P_k * start + S_k, then y = <C, h> sums over N.

Padded positions (beyond L, beyond d, beyond N) carry a = 1, b = 0 and so never change the state: any L is
handled with one partial chunk and no padding in memory.  The inputs of the next chunk are loaded one iteration
ahead (``PREFETCH``) so that their latency overlaps the current chunk's arithmetic.

The forward run under autograd stores the state at every chunk start (b, d, L / T, N) in fp32 (forward and
backward share one geometry).  The backward walks the chunks in reverse: it recomputes the chunk's states from its
checkpoint as above and runs the reverse recurrence in the form g_t = a_t dh_t, g_t = a_t (C_t dy_t + g_{t+1}),
dh_t = C_t dy_t + g_{t+1}: one exp per element (no a_{t+1}), the exclusive part again from the (E, T) monoid, the
in-thread part as a forward scan over the K axis flipped (a flip inside a thread is free, while Triton lowers a
reverse scan over in-thread repeats with shuffles).  a_t h_{t-1} is taken as h_t - b_t, as in mamba_ssm's CUDA
kernel.  Gradients of B and C sum over the channels of a group: plain stores when one program covers the whole
group, fp32 atomic adds otherwise; dA, dD and d(delta_bias) sum over the batch with atomic adds.

The 'lanes' kernels (the first version) hold a (BLOCK_D, N, BLOCK_L) tile and scan it along L, where Triton
places one position per lane; they checkpoint every BLOCK_L = 32 steps and otherwise work as described above, but
compute a_{t+1} with a second exp.  They remain faster at the batched N = 16 / 32 shapes.

The module imports on machines without Triton or CUDA; only calling the scan needs them.
"""
import os
import sys

import torch

from ._kernel_scan import KernelScan, grad_buffers, last_contig as _last_contig
from ._kernel_scan import next_pow2 as _next_pow2, sm_count as _sm_count

try:  # Triton is optional: CPU-only installs import this module and never call it.
    import triton
    import triton.language as tl
    _TRITON_IMPORT_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the install
    triton = None
    tl = None
    _TRITON_IMPORT_ERROR = exc

__all__ = ['selective_scan_triton', 'is_available', 'launch_config', 'num_chunks', 'num_segments']

_LOG2E = 1.4426950408889634
MAX_DSTATE = 256

# Target number of elements of the (BLOCK_D, BLOCK_N, BLOCK_L) tile a program works on, per pass, and the chunk
# length.  Chosen from a sweep on an H100 (docs/benchmarks.md): with Triton's layouts the chunk's positions sit on
# the lanes of a warp, so short chunks and small tiles (few elements per thread, no register spills) win.
_FWD_TILE = 1024
_BWD_TILE = 2048           # for N = 16
_BWD_TILE_SMALL_N = 1024   # for N <= 8
_BWD_TILE_LARGE_N = 4096   # for N >= 32
_CHUNK = 32
# 'runs' kernels (the default): positions per thread and channels per program, per pass.
_RUN_BLOCK_D = 2
# Forward without autograd, fewer programs than multiprocessors: split long sequences into this many segments.
_SEGMENTS = 8
# Which kernels run: 'runs' (K consecutive positions per thread), 'lanes' (one position per lane, the first
# version) or 'auto' (per shape, whichever measured faster; see _impl_for).
_IMPL = 'auto'

# Benchmarks may set entries here ('fwd' / 'bwd' -> dict of BLOCK_D, BLOCK_L, num_warps) to try other launch
# configurations; empty in normal use.
_CONFIG_OVERRIDE = {}
# When True, outputs are pre-filled with NaN so that an element no program writes shows up in checks.
_POISON_OUTPUTS = False


def _interpreting():
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def is_available():
    """True when Triton imported and a CUDA device is present (or the Triton interpreter is switched on)."""
    return triton is not None and (torch.cuda.is_available() or _interpreting())


def _runs_geometry(dstate):
    """(K, R, num_warps) of the 'runs' kernels: K positions per thread, R runs per chunk (on lanes).

    One geometry for the forward (with or without autograd) and the backward: they share the checkpoint grid,
    and the forward gives bit-identical outputs with and without autograd.  Defaults from the sweeps in
    docs/benchmarks.md.  Overrides: _CONFIG_OVERRIDE['fwd'] keys K, R, num_warps.
    """
    over = _CONFIG_OVERRIDE.get('fwd', {})
    nw = int(over.get('num_warps') or 4)
    block_n = _next_pow2(dstate)
    if block_n <= 8:
        k, r = 8, max(1, min(64, (32 * nw) // block_n))
    else:
        k, r = 4, max(1, min(32, (64 * nw) // block_n))
    return int(over.get('K') or k), int(over.get('R') or r), nw


def _impl_for(batch, dim, dstate):
    """Which kernels run: _IMPL, or for 'auto' the measured faster one (docs/benchmarks.md): 'runs' for small
    states (N <= 8) and for few long sequences (batch * dim <= 1024), 'lanes' otherwise."""
    if _IMPL != 'auto':
        return _IMPL
    return 'runs' if (_next_pow2(dstate) <= 8 or batch * dim <= 1024) else 'lanes'


def chunk_length(seqlen, dstate, batch=1, dim=1):
    """Steps per chunk (BLOCK_L), shared by forward and backward since it fixes the checkpoint grid.

    'runs' kernels: K * R (K positions per thread times R runs); 'lanes' kernels: 32, or 16 for short sequences.
    """
    if _impl_for(batch, dim, dstate) == 'runs':
        k, r, _ = _runs_geometry(dstate)
        return k * r
    block_l = min(_CHUNK, max(16, _next_pow2(seqlen)))
    override = _CONFIG_OVERRIDE.get('fwd', {}).get('BLOCK_L')
    return int(override) if override else block_l


def num_chunks(seqlen, dstate, batch=1, dim=1):
    """Number of chunks (and of stored checkpoints per channel) for a sequence of ``seqlen`` steps."""
    return -(-seqlen // chunk_length(seqlen, dstate, batch, dim))


def launch_config(batch, dim, groups, dstate, seqlen, kind='fwd', sm_count=132):
    """Block sizes and grid for one launch.

    Returns a dict with impl ('runs' or 'lanes', see ``_impl_for``), BLOCK_D (channels per program, within one
    group), BLOCK_N (padded state size), BLOCK_L (chunk length), K and R (positions per thread and runs per
    chunk, 'runs' kernels), PREFETCH, n_dblk (programs per group), grid and num_warps.  BLOCK_D shrinks until the
    grid holds at least two programs per multiprocessor (or reaches 1).
    """
    if kind not in ('fwd', 'bwd'):
        raise ValueError(f'kind must be fwd or bwd, got {kind!r}')
    if dim % groups != 0:
        raise ValueError(f'dim {dim} is not divisible by the number of groups {groups}')
    dpg = dim // groups
    block_n = _next_pow2(dstate)
    over = _CONFIG_OVERRIDE.get(kind, {})
    impl = _impl_for(batch, dim, dstate)
    block_l = chunk_length(seqlen, dstate, batch, dim)
    if impl == 'runs':
        k, r, num_warps = _runs_geometry(dstate)
        block_d = max(1, min(_next_pow2(dpg), _RUN_BLOCK_D))
        prefetch = bool(over.get('PREFETCH', True))
    else:
        k = r = None
        prefetch = False
        num_warps = 4
        if kind == 'fwd':
            tile = _FWD_TILE
        else:
            tile = _BWD_TILE_SMALL_N if block_n <= 8 else _BWD_TILE_LARGE_N if block_n >= 32 else _BWD_TILE
        block_d = max(1, min(_next_pow2(dpg), tile // (block_n * block_l)))
        if over.get('num_warps'):
            num_warps = int(over['num_warps'])
    while block_d > 1 and batch * groups * (-(-dpg // block_d)) < 2 * sm_count:
        block_d //= 2
    if over.get('BLOCK_D'):
        block_d = int(over['BLOCK_D'])
    n_dblk = -(-dpg // block_d)
    return dict(impl=impl, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l, K=k, R=r, PREFETCH=prefetch,
                n_dblk=n_dblk, grid=(groups * n_dblk, batch), num_warps=num_warps)


if triton is not None:

    @triton.jit
    def _combine(a1, b1, a2, b2):
        # (a1, b1) then (a2, b2): x -> a2 * (a1 * x + b1) + b2
        return a1 * a2, a2 * b1 + b2

    @triton.jit
    def _softplus(x):
        # log1p(exp(x)) for x <= 20 (Kahan's accurate log1p), x above, as mamba_ssm and torch do.
        e = tl.exp(tl.minimum(x, 20.0))
        w = 1.0 + e
        lp = tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))
        return tl.where(x <= 20.0, lp, x)

    @triton.jit
    def _fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                    out_ptr, last_ptr, ckpt_ptr,
                    dim, L, N, dpg, n_dblk, n_chunks,
                    s_ub, s_ud, s_tb, s_td, s_Ad, s_An, s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn,
                    s_zb, s_zd, s_ob, s_od,
                    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                    SOFTPLUS: tl.constexpr, STORE_CKPT: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
        pid = tl.program_id(0)
        pid_b = tl.program_id(1).to(tl.int64)
        g = pid // n_dblk
        offs_dl = (pid % n_dblk) * BLOCK_D + tl.arange(0, BLOCK_D)
        mask_d = offs_dl < dpg
        offs_d = g * dpg + offs_dl
        offs_n = tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        offs_l = tl.arange(0, BLOCK_L)
        mask_dn = mask_d[:, None] & mask_n[None, :]

        A2 = tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :] * s_An, mask=mask_dn,
                     other=0.0).to(tl.float32) * 1.4426950408889634
        if HAS_D:
            Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

        u_row = u_ptr + pid_b * s_ub + offs_d[:, None] * s_ud
        dt_row = dt_ptr + pid_b * s_tb + offs_d[:, None] * s_td
        out_row = out_ptr + pid_b * s_ob + offs_d[:, None] * s_od
        if HAS_Z:
            z_row = z_ptr + pid_b * s_zb + offs_d[:, None] * s_zd
        B_row = B_ptr + pid_b * s_Bb + g * s_Bg + offs_n[:, None] * s_Bn
        C_row = C_ptr + pid_b * s_Cb + g * s_Cg + offs_n[:, None] * s_Cn
        ck_row = ckpt_ptr + ((pid_b * dim + offs_d[:, None]) * n_chunks) * N + offs_n[None, :]
        is_last = (offs_l == BLOCK_L - 1)[None, None, :]

        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        for c in range(n_chunks):
            offs = c * BLOCK_L + offs_l
            mask_l = offs < L
            m2 = mask_d[:, None] & mask_l[None, :]
            mnl = mask_n[:, None] & mask_l[None, :]
            u = tl.load(u_row + offs[None, :], mask=m2, other=0.0).to(tl.float32)
            dt = tl.load(dt_row + offs[None, :], mask=m2, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias[:, None]
            if SOFTPLUS:
                dt = _softplus(dt)
            dt = tl.where(m2, dt, 0.0)
            Bc = tl.load(B_row + offs[None, :], mask=mnl, other=0.0).to(tl.float32)
            Cc = tl.load(C_row + offs[None, :], mask=mnl, other=0.0).to(tl.float32)
            if STORE_CKPT:
                tl.store(ck_row + c * N, h, mask=mask_dn)
            a = tl.exp2(dt[:, None, :] * A2[:, :, None])
            bu = (dt * u)[:, None, :] * Bc[None, :, :]
            P, S = tl.associative_scan((a, bu), 2, _combine)
            hs = P * h[:, :, None] + S
            y = tl.sum(hs * Cc[None, :, :], axis=1)
            h = tl.sum(tl.where(is_last, hs, 0.0), axis=2)
            if HAS_D:
                y += Dv[:, None] * u
            if HAS_Z:
                zz = tl.load(z_row + offs[None, :], mask=m2, other=0.0).to(tl.float32)
                y = y * (zz * tl.sigmoid(zz))
            tl.store(out_row + offs[None, :], y.to(out_ptr.dtype.element_ty), mask=m2)
        tl.store(last_ptr + (pid_b * dim + offs_d[:, None]) * N + offs_n[None, :], h, mask=mask_dn)

    @triton.jit
    def _bwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, ckpt_ptr,
                    du_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                    dim, L, N, dpg, n_dblk, n_chunks, G,
                    s_ub, s_ud, s_tb, s_td, s_Ad, s_An, s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn,
                    s_zb, s_zd, s_gb, s_gd,
                    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                    SOFTPLUS: tl.constexpr, DBC_ATOMIC: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
        pid = tl.program_id(0)
        pid_b = tl.program_id(1).to(tl.int64)
        g = pid // n_dblk
        offs_dl = (pid % n_dblk) * BLOCK_D + tl.arange(0, BLOCK_D)
        mask_d = offs_dl < dpg
        offs_d = g * dpg + offs_dl
        offs_n = tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        offs_l = tl.arange(0, BLOCK_L)
        mask_dn = mask_d[:, None] & mask_n[None, :]

        A = tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :] * s_An, mask=mask_dn,
                    other=0.0).to(tl.float32)
        A2 = A * 1.4426950408889634
        if HAS_D:
            Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

        u_row = u_ptr + pid_b * s_ub + offs_d[:, None] * s_ud
        dt_row = dt_ptr + pid_b * s_tb + offs_d[:, None] * s_td
        g_row = dout_ptr + pid_b * s_gb + offs_d[:, None] * s_gd
        if HAS_Z:
            z_row = z_ptr + pid_b * s_zb + offs_d[:, None] * s_zd
            dz_row = dz_ptr + (pid_b * dim + offs_d[:, None]) * L
        du_row = du_ptr + (pid_b * dim + offs_d[:, None]) * L
        ddt_row = ddt_ptr + (pid_b * dim + offs_d[:, None]) * L
        B_row = B_ptr + pid_b * s_Bb + g * s_Bg + offs_n[:, None] * s_Bn
        C_row = C_ptr + pid_b * s_Cb + g * s_Cg + offs_n[:, None] * s_Cn
        dBC_off = ((pid_b * G + g) * N + offs_n[:, None]) * L
        ck_row = ckpt_ptr + ((pid_b * dim + offs_d[:, None]) * n_chunks) * N + offs_n[None, :]
        is_first = (offs_l == 0)[None, None, :]

        carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)   # dh at the first step of the later chunk
        dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
        dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for cc in range(n_chunks):
            c = n_chunks - 1 - cc
            offs = c * BLOCK_L + offs_l
            mask_l = offs < L
            m2 = mask_d[:, None] & mask_l[None, :]
            mnl = mask_n[:, None] & mask_l[None, :]
            m2n = mask_d[:, None] & (offs + 1 < L)[None, :]
            u = tl.load(u_row + offs[None, :], mask=m2, other=0.0).to(tl.float32)
            dtp = tl.load(dt_row + offs[None, :], mask=m2, other=0.0).to(tl.float32)
            dtn = tl.load(dt_row + offs[None, :] + 1, mask=m2n, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dtp = dtp + bias[:, None]
                dtn = dtn + bias[:, None]
            if SOFTPLUS:
                dt = _softplus(dtp)
                dtn = _softplus(dtn)
            else:
                dt = dtp
            dt = tl.where(m2, dt, 0.0)
            dtn = tl.where(m2n, dtn, 0.0)
            Bc = tl.load(B_row + offs[None, :], mask=mnl, other=0.0).to(tl.float32)
            Cc = tl.load(C_row + offs[None, :], mask=mnl, other=0.0).to(tl.float32)
            dout = tl.load(g_row + offs[None, :], mask=m2, other=0.0).to(tl.float32)
            h0 = tl.load(ck_row + c * N, mask=mask_dn, other=0.0)

            # Recompute the chunk's states.
            a = tl.exp2(dt[:, None, :] * A2[:, :, None])
            dtu = dt * u
            bu = dtu[:, None, :] * Bc[None, :, :]
            P, S = tl.associative_scan((a, bu), 2, _combine)
            h = P * h0[:, :, None] + S

            if HAS_Z:
                zz = tl.load(z_row + offs[None, :], mask=m2, other=0.0).to(tl.float32)
                sz = tl.sigmoid(zz)
                y = tl.sum(h * Cc[None, :, :], axis=1)
                if HAS_D:
                    y += Dv[:, None] * u
                dz = dout * y * sz * (1.0 + zz * (1.0 - sz))
                tl.store(dz_row + offs[None, :], dz.to(dz_ptr.dtype.element_ty), mask=m2)
                dy = dout * zz * sz
            else:
                dy = dout

            # Reverse recurrence dh_t = C_t dy_t + a_{t+1} dh_{t+1}.
            an = tl.exp2(dtn[:, None, :] * A2[:, :, None])
            Q, V = tl.associative_scan((an, Cc[None, :, :] * dy[:, None, :]), 2, _combine, reverse=True)
            dh = V + Q * carry[:, :, None]
            carry = tl.sum(tl.where(is_first, dh, 0.0), axis=2)

            dCc = tl.sum(h * dy[:, None, :], axis=0)
            dBc = tl.sum(dh * dtu[:, None, :], axis=0)
            if DBC_ATOMIC:
                tl.atomic_add(dC_ptr + dBC_off + offs[None, :], dCc, mask=mnl)
                tl.atomic_add(dB_ptr + dBC_off + offs[None, :], dBc, mask=mnl)
            else:
                tl.store(dC_ptr + dBC_off + offs[None, :], dCc, mask=mnl)
                tl.store(dB_ptr + dBC_off + offs[None, :], dBc, mask=mnl)

            dhB = tl.sum(dh * Bc[None, :, :], axis=1)
            w = dh * (h - bu)                      # dh_t * a_t * h_{t-1}
            ddt = dhB * u + tl.sum(w * A[:, :, None], axis=1)
            dA_acc += tl.sum(w * dt[:, None, :], axis=2)
            du = dhB * dt
            if HAS_D:
                du += Dv[:, None] * dy
                dD_acc += tl.sum(dy * u, axis=1)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(dtp)
            ddt = tl.where(m2, ddt, 0.0)
            if HAS_BIAS:
                dbias_acc += tl.sum(ddt, axis=1)
            tl.store(du_row + offs[None, :], du.to(du_ptr.dtype.element_ty), mask=m2)
            tl.store(ddt_row + offs[None, :], ddt.to(ddt_ptr.dtype.element_ty), mask=m2)

        tl.atomic_add(dA_ptr + offs_d[:, None] * N + offs_n[None, :], dA_acc, mask=mask_dn)
        if HAS_D:
            tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=mask_d)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d)

    # ------------------------------------------------------------------------------------------------------
    # 'runs' kernels: each thread owns K consecutive positions of a chunk (tile axis 0), lanes own R runs.
    # ------------------------------------------------------------------------------------------------------

    @triton.jit
    def _combine_excl(ea1, eb1, ta1, tb1, ea2, eb2, ta2, tb2):
        # Pairs (E, T) of affine maps, E = all but the last element, T = all elements, in scan order.
        # (E1, T1) then (E2, T2) = (T1 then E2, T1 then T2).  The scan's E is the exclusive prefix.
        return ta1 * ea2, ea2 * tb1 + eb2, ta1 * ta2, ta2 * tb1 + tb2

    @triton.jit
    def _fwd_runs_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                         out_ptr, last_ptr, ckpt_ptr, h0_ptr, decay_ptr,
                         dim, L, N, dpg, n_dblk, n_chunks, seg_len,
                         s_ub, s_ud, s_tb, s_td, s_Ad, s_An, s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn,
                         s_zb, s_zd, s_ob, s_od,
                         HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                         SOFTPLUS: tl.constexpr, STORE_CKPT: tl.constexpr,
                         BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, K: tl.constexpr, R: tl.constexpr,
                         PREFETCH: tl.constexpr, SEGMENTED: tl.constexpr, HAS_H0: tl.constexpr,
                         STORE_OUT: tl.constexpr):
        # Tiles: (K, BLOCK_D, BLOCK_N, R); position in the chunk = r * K + k.
        # SEGMENTED: program_id(2) = segment s of seg_len steps (n_chunks chunks each); the state of segment s
        # starts from h0[b, s] (HAS_H0) or zero, and the segment's last state and total decay prod(a) are stored
        # per (b, s) in last / decay.  Without SEGMENTED there is one segment, the whole sequence.
        T: tl.constexpr = K * R
        pid = tl.program_id(0)
        pid_b = tl.program_id(1).to(tl.int64)
        if SEGMENTED:
            pid_s = tl.program_id(2).to(tl.int64)
            n_seg = tl.num_programs(2).to(tl.int64)
            seg0 = pid_s * seg_len
            L_end = tl.minimum(seg0 + seg_len, L)
            st_b = pid_b * n_seg + pid_s                                   # row of h0 / last / decay
        else:
            seg0 = 0
            L_end = L
            st_b = pid_b
        g = pid // n_dblk
        offs_dl = (pid % n_dblk) * BLOCK_D + tl.arange(0, BLOCK_D)
        mask_d = offs_dl < dpg
        offs_d = g * dpg + offs_dl
        offs_n = tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        offs_k = tl.arange(0, K)
        offs_r = tl.arange(0, R)
        pos = offs_r[None, :] * K + offs_k[:, None]                     # (K, R)
        mask_dn = mask_d[:, None] & mask_n[None, :]

        A2 = tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :] * s_An, mask=mask_dn,
                     other=0.0).to(tl.float32) * 1.4426950408889634
        if HAS_D:
            Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

        d3 = offs_d[None, :, None]                                       # (1, D, 1)
        md3 = mask_d[None, :, None]
        # Row pointers start at the segment's first step; t below counts steps from there.
        u_row = u_ptr + pid_b * s_ub + d3 * s_ud + seg0
        dt_row = dt_ptr + pid_b * s_tb + d3 * s_td + seg0
        out_row = out_ptr + pid_b * s_ob + d3 * s_od + seg0
        if HAS_Z:
            z_row = z_ptr + pid_b * s_zb + d3 * s_zd + seg0
        n3 = offs_n[None, :, None]
        mn3 = mask_n[None, :, None]
        B_row = B_ptr + pid_b * s_Bb + g * s_Bg + n3 * s_Bn + seg0
        C_row = C_ptr + pid_b * s_Cb + g * s_Cg + n3 * s_Cn + seg0
        L = L_end - seg0                                                 # steps of this segment
        ck_row = ckpt_ptr + ((pid_b * dim + offs_d[:, None]) * n_chunks) * N + offs_n[None, :]
        st_off = (st_b * dim + offs_d[:, None]) * N + offs_n[None, :]
        is_last_k = (offs_k == K - 1)[:, None, None, None]
        is_last_r = (offs_r == R - 1)[None, None, :]

        if HAS_H0:
            h = tl.load(h0_ptr + st_off, mask=mask_dn, other=0.0)
        else:
            h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        if SEGMENTED:
            decay = tl.full((BLOCK_D, BLOCK_N), 1.0, tl.float32)
        if PREFETCH:
            # Inputs of the next chunk are loaded one iteration ahead, so that their latency hides behind the
            # current chunk's arithmetic.
            t0 = pos[:, None, :]
            u_nx = tl.load(u_row + t0, mask=md3 & (t0 < L), other=0.0)
            dt_nx = tl.load(dt_row + t0, mask=md3 & (t0 < L), other=0.0)
            B_nx = tl.load(B_row + t0, mask=mn3 & (t0 < L), other=0.0)
            C_nx = tl.load(C_row + t0, mask=mn3 & (t0 < L), other=0.0)
            if HAS_Z:
                z_nx = tl.load(z_row + t0, mask=md3 & (t0 < L), other=0.0)
        for c in range(n_chunks):
            t = (c * T + pos)[:, None, :]                                # (K, 1, R)
            mt = t < L
            m3 = md3 & mt
            mbc = mn3 & mt
            if PREFETCH:
                u_raw = u_nx
                dt_raw = dt_nx
                B_raw = B_nx
                C_raw = C_nx
                tn = t + T
                u_nx = tl.load(u_row + tn, mask=md3 & (tn < L), other=0.0)
                dt_nx = tl.load(dt_row + tn, mask=md3 & (tn < L), other=0.0)
                B_nx = tl.load(B_row + tn, mask=mn3 & (tn < L), other=0.0)
                C_nx = tl.load(C_row + tn, mask=mn3 & (tn < L), other=0.0)
                if HAS_Z:
                    z_raw = z_nx
                    z_nx = tl.load(z_row + tn, mask=md3 & (tn < L), other=0.0)
            else:
                u_raw = tl.load(u_row + t, mask=m3, other=0.0)
                dt_raw = tl.load(dt_row + t, mask=m3, other=0.0)
                B_raw = tl.load(B_row + t, mask=mbc, other=0.0)
                C_raw = tl.load(C_row + t, mask=mbc, other=0.0)
                if HAS_Z:
                    z_raw = tl.load(z_row + t, mask=m3, other=0.0)
            u = u_raw.to(tl.float32)                                     # (K, D, R)
            dt = dt_raw.to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias[None, :, None]
            if SOFTPLUS:
                dt = _softplus(dt)
            dt = tl.where(m3, dt, 0.0)
            Bc = B_raw.to(tl.float32)                                    # (K, N, R)
            Cc = C_raw.to(tl.float32)
            if STORE_CKPT:
                tl.store(ck_row + c * N, h, mask=mask_dn)
            a = tl.exp2(dt[:, :, None, :] * A2[None, :, :, None])         # (K, D, N, R)
            bu = (dt * u)[:, :, None, :] * Bc[:, None, :, :]
            P, S = tl.associative_scan((a, bu), 0, _combine)            # within each thread's run
            Pr = tl.sum(tl.where(is_last_k, P, 0.0), axis=0)             # run aggregates (D, N, R)
            Sr = tl.sum(tl.where(is_last_k, S, 0.0), axis=0)
            Ea, Eb, Ta, Tb = tl.associative_scan((tl.full(Pr.shape, 1.0, tl.float32),
                                                  tl.zeros(Pr.shape, tl.float32), Pr, Sr), 2, _combine_excl)
            h3 = h[:, :, None]
            h = tl.sum(tl.where(is_last_r, Ta * h3 + Tb, 0.0), axis=2)
            if SEGMENTED:
                decay = decay * tl.sum(tl.where(is_last_r, Ta, 0.0), axis=2)
            if STORE_OUT:
                start = Ea * h3 + Eb                                     # state before each run
                hs = P * start[None, :, :, :] + S
                y = tl.sum(hs * Cc[:, None, :, :], axis=2)               # (K, D, R)
                if HAS_D:
                    y += Dv[None, :, None] * u
                if HAS_Z:
                    zz = z_raw.to(tl.float32)
                    y = y * (zz * tl.sigmoid(zz))
                tl.store(out_row + t, y.to(out_ptr.dtype.element_ty), mask=m3)
        tl.store(last_ptr + st_off, h, mask=mask_dn)
        if SEGMENTED:
            tl.store(decay_ptr + st_off, decay, mask=mask_dn)

    @triton.jit
    def _bwd_runs_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr, ckpt_ptr,
                         du_ptr, ddt_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                         dim, L, N, dpg, n_dblk, n_chunks, G,
                         s_ub, s_ud, s_tb, s_td, s_Ad, s_An, s_Bb, s_Bg, s_Bn, s_Cb, s_Cg, s_Cn,
                         s_zb, s_zd, s_gb, s_gd,
                         HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                         SOFTPLUS: tl.constexpr, DBC_ATOMIC: tl.constexpr,
                         BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, K: tl.constexpr, R: tl.constexpr,
                         PREFETCH: tl.constexpr):
        T: tl.constexpr = K * R
        pid = tl.program_id(0)
        pid_b = tl.program_id(1).to(tl.int64)
        g = pid // n_dblk
        offs_dl = (pid % n_dblk) * BLOCK_D + tl.arange(0, BLOCK_D)
        mask_d = offs_dl < dpg
        offs_d = g * dpg + offs_dl
        offs_n = tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        offs_k = tl.arange(0, K)
        offs_r = tl.arange(0, R)
        pos = offs_r[None, :] * K + offs_k[:, None]
        mask_dn = mask_d[:, None] & mask_n[None, :]

        A = tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :] * s_An, mask=mask_dn,
                    other=0.0).to(tl.float32)
        A2 = A * 1.4426950408889634
        if HAS_D:
            Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

        d3 = offs_d[None, :, None]
        md3 = mask_d[None, :, None]
        u_row = u_ptr + pid_b * s_ub + d3 * s_ud
        dt_row = dt_ptr + pid_b * s_tb + d3 * s_td
        g_row = dout_ptr + pid_b * s_gb + d3 * s_gd
        if HAS_Z:
            z_row = z_ptr + pid_b * s_zb + d3 * s_zd
            dz_row = dz_ptr + (pid_b * dim + d3) * L
        du_row = du_ptr + (pid_b * dim + d3) * L
        ddt_row = ddt_ptr + (pid_b * dim + d3) * L
        n3 = offs_n[None, :, None]
        mn3 = mask_n[None, :, None]
        B_row = B_ptr + pid_b * s_Bb + g * s_Bg + n3 * s_Bn
        C_row = C_ptr + pid_b * s_Cb + g * s_Cg + n3 * s_Cn
        dBC_row = ((pid_b * G + g) * N + n3) * L
        ck_row = ckpt_ptr + ((pid_b * dim + offs_d[:, None]) * n_chunks) * N + offs_n[None, :]
        is_last_k = (offs_k == K - 1)[:, None, None, None]
        is_first_r = (offs_r == 0)[None, None, :]

        carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)   # a_t dh_t at the first step of the later chunk
        dA_acc = tl.zeros((BLOCK_D, BLOCK_N, R), dtype=tl.float32)
        dD_acc = tl.zeros((BLOCK_D, R), dtype=tl.float32)
        dbias_acc = tl.zeros((BLOCK_D, R), dtype=tl.float32)
        if PREFETCH:
            # The previous chunk's inputs are loaded one iteration ahead (the walk goes backwards).
            t0 = ((n_chunks - 1) * T + pos)[:, None, :]
            u_nx = tl.load(u_row + t0, mask=md3 & (t0 < L), other=0.0)
            dt_nx = tl.load(dt_row + t0, mask=md3 & (t0 < L), other=0.0)
            B_nx = tl.load(B_row + t0, mask=mn3 & (t0 < L), other=0.0)
            C_nx = tl.load(C_row + t0, mask=mn3 & (t0 < L), other=0.0)
            g_nx = tl.load(g_row + t0, mask=md3 & (t0 < L), other=0.0)
            h0_nx = tl.load(ck_row + (n_chunks - 1) * N, mask=mask_dn, other=0.0)
            if HAS_Z:
                z_nx = tl.load(z_row + t0, mask=md3 & (t0 < L), other=0.0)
        for cc in range(n_chunks):
            c = n_chunks - 1 - cc
            t = (c * T + pos)[:, None, :]
            mt = t < L
            m3 = md3 & mt
            mbc = mn3 & mt
            if PREFETCH:
                u_raw = u_nx
                dt_raw = dt_nx
                B_raw = B_nx
                C_raw = C_nx
                g_raw = g_nx
                h0 = h0_nx
                tn = t - T
                mp = tn >= 0
                u_nx = tl.load(u_row + tn, mask=md3 & mp, other=0.0)
                dt_nx = tl.load(dt_row + tn, mask=md3 & mp, other=0.0)
                B_nx = tl.load(B_row + tn, mask=mn3 & mp, other=0.0)
                C_nx = tl.load(C_row + tn, mask=mn3 & mp, other=0.0)
                g_nx = tl.load(g_row + tn, mask=md3 & mp, other=0.0)
                h0_nx = tl.load(ck_row + (c - 1) * N, mask=mask_dn & (c > 0), other=0.0)
                if HAS_Z:
                    z_raw = z_nx
                    z_nx = tl.load(z_row + tn, mask=md3 & mp, other=0.0)
            else:
                u_raw = tl.load(u_row + t, mask=m3, other=0.0)
                dt_raw = tl.load(dt_row + t, mask=m3, other=0.0)
                B_raw = tl.load(B_row + t, mask=mbc, other=0.0)
                C_raw = tl.load(C_row + t, mask=mbc, other=0.0)
                g_raw = tl.load(g_row + t, mask=m3, other=0.0)
                h0 = tl.load(ck_row + c * N, mask=mask_dn, other=0.0)
                if HAS_Z:
                    z_raw = tl.load(z_row + t, mask=m3, other=0.0)
            u = u_raw.to(tl.float32)
            dtp = dt_raw.to(tl.float32)
            if HAS_BIAS:
                dtp = dtp + bias[None, :, None]
            if SOFTPLUS:
                dt = _softplus(dtp)
            else:
                dt = dtp
            dt = tl.where(m3, dt, 0.0)
            Bc = B_raw.to(tl.float32)
            Cc = C_raw.to(tl.float32)
            dout = g_raw.to(tl.float32)

            # Recompute the chunk's states (as in the forward).
            a = tl.exp2(dt[:, :, None, :] * A2[None, :, :, None])
            dtu = dt * u
            bu = dtu[:, :, None, :] * Bc[:, None, :, :]
            P, S = tl.associative_scan((a, bu), 0, _combine)
            Pr = tl.sum(tl.where(is_last_k, P, 0.0), axis=0)
            Sr = tl.sum(tl.where(is_last_k, S, 0.0), axis=0)
            Ea, Eb, Ta, Tb = tl.associative_scan((tl.full(Pr.shape, 1.0, tl.float32),
                                                  tl.zeros(Pr.shape, tl.float32), Pr, Sr), 2, _combine_excl)
            start = Ea * h0[:, :, None] + Eb
            h = P * start[None, :, :, :] + S

            if HAS_Z:
                zz = z_raw.to(tl.float32)
                sz = tl.sigmoid(zz)
                y = tl.sum(h * Cc[:, None, :, :], axis=2)
                if HAS_D:
                    y += Dv[None, :, None] * u
                dz = dout * y * sz * (1.0 + zz * (1.0 - sz))
                tl.store(dz_row + t, dz.to(dz_ptr.dtype.element_ty), mask=m3)
                dy = dout * zz * sz
            else:
                dy = dout

            # Reverse recurrence dh_t = C_t dy_t + g_{t+1}, g_t = a_t dh_t: g runs through the maps
            # x -> a_t (cdy_t + x) in descending t; dh_t needs the exclusive composition.
            # The in-thread part runs as a forward scan over the flipped K axis (a flip within a thread is free,
            # while Triton lowers reverse scans over in-thread repeats with shuffles).
            cdy = Cc[:, None, :, :] * dy[:, :, None, :]
            Fa, Fb, Ga, Gb = tl.associative_scan((tl.full(a.shape, 1.0, tl.float32), tl.zeros(a.shape, tl.float32),
                                                  tl.flip(a, 0), tl.flip(a * cdy, 0)), 0, _combine_excl)
            Fa = tl.flip(Fa, 0)
            Fb = tl.flip(Fb, 0)
            Gra = tl.sum(tl.where(is_last_k, Ga, 0.0), axis=0)        # whole run (D, N, R)
            Grb = tl.sum(tl.where(is_last_k, Gb, 0.0), axis=0)
            Xa, Xb, Ya, Yb = tl.associative_scan((tl.full(Gra.shape, 1.0, tl.float32),
                                                  tl.zeros(Gra.shape, tl.float32), Gra, Grb), 2, _combine_excl,
                                                 reverse=True)
            c3 = carry[:, :, None]
            v = Xa * c3 + Xb                                           # g at the first step of the next run
            dh = cdy + Fa * v[None, :, :, :] + Fb
            carry = tl.sum(tl.where(is_first_r, Ya * c3 + Yb, 0.0), axis=2)

            dCc = tl.sum(h * dy[:, :, None, :], axis=1)               # (K, N, R)
            dBc = tl.sum(dh * dtu[:, :, None, :], axis=1)
            if DBC_ATOMIC:
                tl.atomic_add(dC_ptr + dBC_row + t, dCc, mask=mbc)
                tl.atomic_add(dB_ptr + dBC_row + t, dBc, mask=mbc)
            else:
                tl.store(dC_ptr + dBC_row + t, dCc, mask=mbc)
                tl.store(dB_ptr + dBC_row + t, dBc, mask=mbc)

            w = dh * (h - bu)                                          # dh_t * a_t * h_{t-1}
            dhB = tl.sum(dh * Bc[:, None, :, :], axis=2)               # (K, D, R)
            ddt = dhB * u + tl.sum(w * A[None, :, :, None], axis=2)
            dA_acc += tl.sum(w * dt[:, :, None, :], axis=0)
            du = dhB * dt
            if HAS_D:
                du += Dv[None, :, None] * dy
                dD_acc += tl.sum(dy * u, axis=0)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(dtp)
            ddt = tl.where(m3, ddt, 0.0)
            if HAS_BIAS:
                dbias_acc += tl.sum(ddt, axis=0)
            tl.store(du_row + t, du.to(du_ptr.dtype.element_ty), mask=m3)
            tl.store(ddt_row + t, ddt.to(ddt_ptr.dtype.element_ty), mask=m3)

        tl.atomic_add(dA_ptr + offs_d[:, None] * N + offs_n[None, :], tl.sum(dA_acc, axis=2), mask=mask_dn)
        if HAS_D:
            tl.atomic_add(dD_ptr + offs_d, tl.sum(dD_acc, axis=1), mask=mask_d)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + offs_d, tl.sum(dbias_acc, axis=1), mask=mask_d)


def _check_ready(u):
    if triton is None:
        raise RuntimeError('selective_scan_triton needs Triton, which failed to import: '
                           f'{_TRITON_IMPORT_ERROR!r}. Use the PyTorch backend instead.')
    if u.device.type != 'cuda' and not _interpreting():
        raise RuntimeError('selective_scan_triton runs on CUDA tensors only; got a tensor on '
                           f'{u.device}. Use the PyTorch backend for CPU tensors.')


def _empty(shape, dtype, device):
    if _POISON_OUTPUTS:
        return torch.full(shape, float('nan'), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def num_segments(batch, dim, groups, dstate, seqlen, store_ckpt, sm_count=132):
    """How many pieces a forward without autograd splits the sequence into (1 = no split).

    A long sequence on few programs (one 256x256 image: batch 1, L = 65536) leaves most multiprocessors idle while
    each program walks thousands of chunks in order.  Splitting L into S segments gives S times more programs:
    pass 1 scans every segment from a zero state and keeps only its last state and total decay; a short loop over
    segments turns those into each segment's true start state; pass 2 rescans every segment from that state and
    writes the outputs.  Only the 'runs' kernels, only without autograd (the backward needs the chunk
    checkpoints of one pass), and only when the grid has fewer programs than the GPU has multiprocessors; then
    ``_SEGMENTS`` segments, each of at least 8 chunks.  Measured on an H100 at b=1, L=65536 (docs/benchmarks.md):
    d=96 N=8 (96 programs) 0.755 -> 0.509 ms with 8 segments, d=120 N=16 (120 programs) 1.214 -> 1.141 ms, but
    d=384 N=16 (384 programs) 2.196 -> 4.07 ms with 2, which is why the split stops at one program per SM.
    ``_CONFIG_OVERRIDE['fwd']['SEGMENTS']`` forces a count (tests, benchmarks).
    """
    return _segments(launch_config(batch, dim, groups, dstate, seqlen, 'fwd', sm_count), batch, groups, seqlen,
                     store_ckpt, sm_count)


def _segments(cfg, batch, groups, seqlen, store_ckpt, sm_count):
    """:func:`num_segments` for a forward launch configuration already computed."""
    if store_ckpt or cfg['impl'] != 'runs':
        return 1
    n_chunks = -(-seqlen // cfg['BLOCK_L'])
    forced = _CONFIG_OVERRIDE.get('fwd', {}).get('SEGMENTS')
    if forced:
        return max(1, min(int(forced), n_chunks))
    if batch * groups * cfg['n_dblk'] >= sm_count:
        return 1
    return max(1, min(_SEGMENTS, n_chunks // 8))


def _fwd(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, store_ckpt):
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    groups = B4.shape[1]
    sm = _sm_count(u.device)
    cfg = launch_config(batch, dim, groups, dstate, seqlen, 'fwd', sm)
    n_chunks = -(-seqlen // cfg['BLOCK_L'])
    out = _empty((batch, dim, seqlen), u.dtype, u.device)
    last = _empty((batch, dim, dstate), torch.float32, u.device)
    ckpt = (_empty((batch, dim, n_chunks, dstate), torch.float32, u.device) if store_ckpt
            else torch.empty(1, dtype=torch.float32, device=u.device))
    dummy = u
    zz = z if z is not None else dummy
    args = (u, delta, A, B4, C4, D if D is not None else dummy, zz, delta_bias if delta_bias is not None else dummy)
    strides = (u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1),
               B4.stride(0), B4.stride(1), B4.stride(2), C4.stride(0), C4.stride(1), C4.stride(2),
               zz.stride(0), zz.stride(1), out.stride(0), out.stride(1))
    flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                 SOFTPLUS=bool(delta_softplus), STORE_CKPT=bool(store_ckpt), BLOCK_D=cfg['BLOCK_D'],
                 BLOCK_N=cfg['BLOCK_N'], num_warps=cfg['num_warps'])
    if cfg['impl'] != 'runs':
        _fwd_kernel[cfg['grid']](*args, out, last, ckpt, dim, seqlen, dstate, dim // groups, cfg['n_dblk'],
                                 n_chunks, *strides, BLOCK_L=cfg['BLOCK_L'], **flags)
        return out, last, ckpt
    tile = dict(K=cfg['K'], R=cfg['R'], PREFETCH=cfg['PREFETCH'])
    n_seg = _segments(cfg, batch, groups, seqlen, store_ckpt, sm)
    if n_seg == 1:
        _fwd_runs_kernel[cfg['grid']](*args, out, last, ckpt, dummy, dummy, dim, seqlen, dstate, dim // groups,
                                      cfg['n_dblk'], n_chunks, seqlen, *strides, SEGMENTED=False, HAS_H0=False,
                                      STORE_OUT=True, **tile, **flags)
        return out, last, ckpt
    seg_chunks = -(-n_chunks // n_seg)
    seg_len = seg_chunks * cfg['BLOCK_L']
    n_seg = -(-seqlen // seg_len)                        # no empty trailing segment
    grid = cfg['grid'] + (n_seg,)
    seg_last = torch.empty((batch, n_seg, dim, dstate), dtype=torch.float32, device=u.device)
    seg_decay = torch.empty_like(seg_last)
    # Pass 1: every segment from a zero state; only its last state and total decay are kept.
    _fwd_runs_kernel[grid](*args, out, seg_last, ckpt, dummy, seg_decay, dim, seqlen, dstate, dim // groups,
                           cfg['n_dblk'], seg_chunks, seg_len, *strides, SEGMENTED=True, HAS_H0=False,
                           STORE_OUT=False, **tile, **flags)
    # Start state of each segment: h_start[s] = decay[s-1] * h_start[s-1] + last[s-1], h_start[0] = 0.
    h0 = torch.zeros_like(seg_last)
    for i in range(1, n_seg):
        torch.addcmul(seg_last[:, i - 1], seg_decay[:, i - 1], h0[:, i - 1], out=h0[:, i])
    # Pass 2: every segment from its true start state, writing the outputs; the last segment's state is the scan's.
    _fwd_runs_kernel[grid](*args, out, seg_last, ckpt, h0, seg_decay, dim, seqlen, dstate, dim // groups,
                           cfg['n_dblk'], seg_chunks, seg_len, *strides, SEGMENTED=True, HAS_H0=True,
                           STORE_OUT=True, **tile, **flags)
    last.copy_(seg_last[:, -1])
    return out, last, ckpt


def _bwd(dout, u, delta, A, B4, C4, D, z, delta_bias, delta_softplus, ckpt):
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    groups = B4.shape[1]
    cfg = launch_config(batch, dim, groups, dstate, seqlen, 'bwd', _sm_count(u.device))
    n_chunks = ckpt.shape[2]
    assert n_chunks == -(-seqlen // cfg['BLOCK_L']), 'chunk length changed between forward and backward'
    dout = _last_contig(dout)
    atomic = cfg['n_dblk'] > 1
    du, ddelta, dB, dC, dA, dD, dz, dbias = grad_buffers(u, delta, z, D, delta_bias, groups, dstate, atomic, _empty)
    dummy = du
    zz = z if z is not None else u
    if cfg['impl'] == 'runs':
        kernel, tile = _bwd_runs_kernel, dict(K=cfg['K'], R=cfg['R'], PREFETCH=cfg['PREFETCH'])
    else:
        kernel, tile = _bwd_kernel, dict(BLOCK_L=cfg['BLOCK_L'])
    kernel[cfg['grid']](
        u, delta, A, B4, C4, D if D is not None else dummy, zz,
        delta_bias if delta_bias is not None else dummy, dout, ckpt,
        du, ddelta, dA, dB, dC, dD if dD is not None else dummy, dz if dz is not None else dummy,
        dbias if dbias is not None else dummy,
        dim, seqlen, dstate, dim // groups, cfg['n_dblk'], n_chunks, groups,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), A.stride(0), A.stride(1),
        B4.stride(0), B4.stride(1), B4.stride(2), C4.stride(0), C4.stride(1), C4.stride(2),
        zz.stride(0), zz.stride(1), dout.stride(0), dout.stride(1),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus), DBC_ATOMIC=atomic,
        BLOCK_D=cfg['BLOCK_D'], BLOCK_N=cfg['BLOCK_N'], num_warps=cfg['num_warps'], **tile)
    return du, ddelta, dA, dB, dC, dD, dz, dbias


def ckpt_shape(batch, dim, groups, dstate, seqlen):
    """Shape of the state checkpoints the forward stores for the backward."""
    return (batch, dim, num_chunks(seqlen, dstate, batch, dim), dstate)


# Eager calls go through an autograd.Function, torch.compile through the registered custom ops
# mamba_sr_archs::selective_scan_fwd / _bwd (one graph, no break); both launch the same kernels.
_SCAN = KernelScan('selective_scan', sys.modules[__name__], _check_ready, MAX_DSTATE, 'selective_scan_triton')
SelectiveScanTritonFn = _SCAN.function


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """Triton selective scan with mamba_ssm ``selective_scan_fn`` semantics (see the module docstring).

    Returns ``out`` (b, d, L) in the dtype of ``u``, or ``(out, last_state)`` with last_state (b, d, N) float32
    when ``return_last_state``.  Differentiable in u, delta, A, B, C, D, z and delta_bias.  Under torch.compile
    the scan runs as the registered custom ops ``mamba_sr_archs::selective_scan_fwd`` / ``_bwd`` (one graph, no
    break); eagerly through an autograd.Function.  Both launch the same kernels.
    """
    return _SCAN(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

// Selective scan (S6; Mamba, Gu & Dao 2023, Alg. 2) forward and backward for CUDA, compiled at run time with NVRTC
// by mamba_sr_archs/ops/cuda_scan.py (no nvcc, no build step).  Semantics: mamba_ssm's selective_scan_fn, real A.
//
// Work split.  A thread owns NS states of one (batch, channel) and walks the whole sequence in time order; the
// TPC = ceil(N / NS) threads of a channel are neighbouring lanes of one warp, and a block holds DB channels of one
// B/C group.  So the recurrence h = exp(dt A) h + dt B u runs sequentially in registers (one exp2 and two FMAs
// per state and step, no scan tree), and only the sums over states (y = C.h in the forward; the du, ddelta sums in
// the backward) and over channels (dB, dC) cross lanes, as reduce-scatters that leave each lane whole sums.
// The sequence is processed in chunks of T steps staged in shared memory: delta (bias + softplus applied once per
// channel and step), u, B and C (and dout, z in the backward).
//
// Compile-time configuration, -DSS_<name> by the launcher (prefixed so as not to clash with NVRTC's headers):
// NS, TPC, DB, T, RG (backward steps per reduction group), BWD_MINB (backward blocks per SM to fit registers for),
// PG and CK (forward: steps per pipelined group, steps between checkpoints), HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS,
// STORE_CKPT, STORE_OUT (0: the forward only stores checkpoints, no outputs), ONLY (the one kernel built: 0 ssm_fwd,
// 1 ssm_bwd, 2 ssm_fwd_tp, 3 ssm_bwd_tp; undefined: ssm_fwd and ssm_bwd), ASYNC (ssm_fwd: chunks are copied to
// shared memory with cp.async, 16 bytes at a time; the launcher sets it when every row is contiguous, 16-byte
// aligned and L a whole number of vectors), DEFER (ssm_fwd: a chunk's sums over states are reduced and stored
// while the next chunk is computed), BCD (ssm_fwd with ASYNC: each lane reads its states' B and C from the copied
// rows, 16 bytes at a time, instead of from (B, C) float pairs staged per step), REVERSE (scan the sequence from
// its end: time step t reads and writes memory position L - 1 - t, so a reversed direction needs no flipped
// copies), IN_KIND and BC_KIND (0 fp32, 1 bf16, 2 fp16).  The time-parallel kernels (end of the file) also take
// TP_MINB, TP_PF, TP_GPF, TP_BU, TP_ABSORB, TP_FASTMASK, TP_BCA.  SUMMARY (ssm_bwd): the build that computes a split
// sequence's segment summaries (pass 1) only.  DTU2 (ssm_fwd): two steps' (delta, delta u) per shared-memory access.
// SP1: softplus with one special-function instruction (a polynomial for log1p) instead of two.
constexpr int NS = SS_NS, TPC = SS_TPC, DB = SS_DB, T = SS_T, RG = SS_RG;
#define HAS_D SS_HAS_D
#define HAS_Z SS_HAS_Z
#define HAS_BIAS SS_HAS_BIAS
#define SOFTPLUS SS_SOFTPLUS
#define STORE_CKPT SS_STORE_CKPT
#define STORE_OUT SS_STORE_OUT
#define REVERSE SS_REVERSE
#ifndef SS_PG
#define SS_PG 1
#endif
#ifndef SS_CK
#define SS_CK SS_T
#endif
#ifndef SS_ASYNC
#define SS_ASYNC 0
#endif
#ifndef SS_SUMMARY
#define SS_SUMMARY 0
#endif
#ifndef SS_DEFER
#define SS_DEFER 0
#endif
#ifndef SS_BCD
#define SS_BCD 0
#endif
constexpr int PG = SS_PG;    // forward steps per pipelined group (1: step by step)
constexpr int CK = SS_CK;    // forward: steps between stored state checkpoints (the backward's chunk length)
#define POS(t) (REVERSE ? (L - 1 - (t)) : (t))    // memory position of time step t along the sequence
#define IN_KIND SS_IN_KIND
#define BC_KIND SS_BC_KIND
#if !defined(SS_ONLY) || SS_ONLY < 2
static_assert(TPC >= 1 && TPC <= 32 && (32 % TPC) == 0, "TPC must divide 32");
static_assert((DB * TPC) % 32 == 0, "whole warps per block");
static_assert(T % TPC == 0 && T % RG == 0 && (2 * RG) % TPC == 0 && T % CK == 0 && CK % PG == 0, "chunk geometry");
#endif

typedef unsigned short u16;

__device__ __forceinline__ float bf16_f(u16 x) { return __uint_as_float(((unsigned)x) << 16); }
__device__ __forceinline__ float f16_f(u16 x) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x)); return f; }
__device__ __forceinline__ u16 f_bf16(float f) { u16 r; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f)); return r; }
__device__ __forceinline__ u16 f_f16(float f) { u16 r; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(f)); return r; }

// The two 2-byte elements of kind KIND (1 bf16, 2 fp16) in a 32-bit word, low half first, as floats.
template <int KIND> __device__ __forceinline__ float2 word_f2(unsigned w) {
    const u16 lo = u16(w & 0xffffu), hi = u16(w >> 16);
    if constexpr (KIND == 1) return make_float2(bf16_f(lo), bf16_f(hi));
    else return make_float2(f16_f(lo), f16_f(hi));
}

// 16 bytes of elements of kind KIND (0 fp32, 1 bf16, 2 fp16) as floats.
template <int KIND> __device__ __forceinline__ void unpack16(uint4 v, float *f) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if constexpr (KIND == 0) {
            f[i] = __uint_as_float(w[i]);
        } else {
            const float2 e = word_f2<KIND>(w[i]);
            f[2 * i] = e.x;
            f[2 * i + 1] = e.y;
        }
    }
}

#if IN_KIND == 0
typedef float in_t;
__device__ __forceinline__ float ld_in(in_t x) { return x; }
__device__ __forceinline__ in_t st_in(float f) { return f; }
#elif IN_KIND == 1
typedef u16 in_t;
__device__ __forceinline__ float ld_in(in_t x) { return bf16_f(x); }
__device__ __forceinline__ in_t st_in(float f) { return f_bf16(f); }
#else
typedef u16 in_t;
__device__ __forceinline__ float ld_in(in_t x) { return f16_f(x); }
__device__ __forceinline__ in_t st_in(float f) { return f_f16(f); }
#endif

#if BC_KIND == 0
typedef float bc_t;
__device__ __forceinline__ float ld_bc(bc_t x) { return x; }
#elif BC_KIND == 1
typedef u16 bc_t;
__device__ __forceinline__ float ld_bc(bc_t x) { return bf16_f(x); }
#else
typedef u16 bc_t;
__device__ __forceinline__ float ld_bc(bc_t x) { return f16_f(x); }
#endif

#define NPAD (NS * TPC)
#define TP (T + 1)                 // shared row pitch: channel c, step t -> bank (c + t) % 32
// The forward's (delta, delta u) rows: an even pitch in float2, so that two steps are one aligned 16-byte access (the
// 4 channels of a warp at banks 4 c + 2 t: distinct).  SS_DTU2 0: one 8-byte access per step, pitch TP.
#ifndef SS_DTU2
#define SS_DTU2 1
#endif
#define TPD (SS_DTU2 ? T + 2 : TP)
#define NTHREADS (DB * TPC)
#define LOG2E 1.4426950408889634f

#ifndef SS_SP1
#define SS_SP1 1
#endif
__device__ __forceinline__ float softplus_f(float x) {
    // log1p(exp(x)) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1].  Above x = 20 this is x in float, as torch and
    // mamba_ssm return.  SP1: log1p(e) = e q(e) (13 instructions, one exp2); else log1p(e) by its series to e^5
    // below e = 1/16 (relative error < 2e-7), above it log2(1 + e) ln 2 (MUFU lg2, absolute error ~1e-7): 14
    // instructions, two of them special-function ones.  log1pf took 25 and two branches.
    const float e = exp2f(-fabsf(x) * LOG2E);
#if SS_SP1
    // q: a degree-8 polynomial fitted to log1p(e) / e on [0, 1]; evaluated in float, e q(e) is within 2.2e-7 of
    // log1p(e) relative over the range (tests/test_cuda_scan.py checks the coefficients below).
    float q = 0.005383097566664219f;
    q = fmaf(q, e, -0.030106056481599808f);
    q = fmaf(q, e, 0.07920081913471222f);
    q = fmaf(q, e, -0.13745588064193726f);
    q = fmaf(q, e, 0.19144517183303833f);
    q = fmaf(q, e, -0.24852754175662994f);
    q = fmaf(q, e, 0.33320310711860657f);
    q = fmaf(q, e, -0.49999549984931946f);
    q = fmaf(q, e, 1.f);
    return fmaxf(x, 0.f) + e * q;
#else
    const float series = e * fmaf(e, fmaf(e, fmaf(e, fmaf(e, 0.2f, -0.25f), 1.f / 3.f), -0.5f), 1.f);
    const float lg = __log2f(1.f + e) * 0.6931471805599453f;
    return fmaxf(x, 0.f) + (e < 0.0625f ? series : lg);
#endif
}

__device__ __forceinline__ float sigmoid_f(float x) { return 1.f / (1.f + __expf(-x)); }

// Reduce-scatter over the lanes that differ in the bits M, M/2, ..., MLO (M a power of two): v[0..V) holds this
// lane's partial sums; afterwards v[0 .. V >> rounds) holds whole sums of the block whose index is the lane's bits
// M..MLO read from the top (block size V >> rounds).
template <int V, int M, int MLO>
__device__ __forceinline__ void reduce_scatter(float *v, int lane) {
    if constexpr (M >= MLO && M > 0) {
        constexpr int H = V / 2;
        static_assert(H >= 1, "reduce_scatter: fewer values than lanes");
        const bool upper = (lane & M) != 0;
#pragma unroll
        for (int i = 0; i < H; ++i) {
            const float send = upper ? v[i] : v[i + H];
            const float keep = upper ? v[i + H] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, M);
        }
        reduce_scatter<H, M / 2, MLO>(v, lane);
    }
}

// Round r of reduce_scatter<T, TPC / 2, 1> (r a constant after unrolling): the rounds can be spread out.
__device__ __forceinline__ void scatter_round(float *v, int lane, int r) {
    if (r == 0) reduce_scatter<T, TPC / 2, TPC / 2>(v, lane);
    if (r == 1) reduce_scatter<T / 2, TPC / 4, TPC / 4>(v, lane);
    if (r == 2) reduce_scatter<T / 4, TPC / 8, TPC / 8>(v, lane);
    if (r == 3) reduce_scatter<T / 8, TPC / 16, TPC / 16>(v, lane);
    if (r == 4) reduce_scatter<T / 16, TPC / 32, TPC / 32>(v, lane);
}

// B and C rows of one chunk, as both kernels stage them.  Loads (one chunk ahead, into registers): element j of
// this thread is state row0 + j * RS at memory position pos (zero past the end or past N); C only when
// ``want_c`` (B only when ``want_b``).  The registers keep the raw input type: converting at load time would make
// the thread wait for the load there, instead of after the current chunk's arithmetic.  Staging (after the barrier)
// converts them.
#define NBC ((NPAD * T + NTHREADS - 1) / NTHREADS)   // B/C elements per thread in a chunk
#define RS (NTHREADS / T)                            // rows a block stages per pass

__device__ __forceinline__ void load_bc(bc_t *r_B, bc_t *r_C, const bc_t *p_B, const bc_t *p_C, long long s_Bn,
                                        long long s_Cn, int row0, int pos, bool ok_t, int N, bool want_c,
                                        bool want_b = true) {
#pragma unroll
    for (int j = 0; j < NBC; ++j) {
        const int nn = row0 + j * RS;
        const bool ok = ok_t && nn < N;
        r_B[j] = (want_b && ok) ? p_B[j * RS * s_Bn + pos] : bc_t(0);
        r_C[j] = (want_c && ok) ? p_C[j * RS * s_Cn + pos] : bc_t(0);
    }
}

// Loads of the per-channel rows (delta, u, and z or dout) of one chunk, raw, as load_bc.
#define NU ((DB * T + NTHREADS - 1) / NTHREADS)      // channel-row elements per thread in a chunk
__device__ __forceinline__ void load_rows(in_t *r, const in_t *p, long long s_d, int row0, int d0, int dpg, int pos,
                                          bool ok_t, bool want) {
#pragma unroll
    for (int j = 0; j < NU; ++j) {
        const int cc = row0 + j * RS;
        const bool ok = want && ok_t && cc < DB && d0 + cc < dpg;
        r[j] = ok ? p[j * RS * s_d + pos] : in_t(0);
    }
}

// Shared layout of B and C in both kernels: one row of (B_n, C_n) pairs per step, so that the NS states of a
// thread are 2 NS consecutive floats (one 16-byte load per two states); the pitch keeps rows 16-byte aligned.
#define BCP (2 * NPAD + 4)

__device__ __forceinline__ void stage_bc(float (*s_BC)[BCP], const bc_t *r_B, const bc_t *r_C, int tid) {
#pragma unroll
    for (int j = 0; j < NBC; ++j) {
        const int i = tid + j * NTHREADS;
        if (i < NPAD * T)
            *reinterpret_cast<float2 *>(&s_BC[i % T][2 * (i / T)]) = make_float2(ld_bc(r_B[j]), ld_bc(r_C[j]));
    }
}

// B and C of this thread's NS states (lane s of its channel) at chunk step tt.
__device__ __forceinline__ void bc_at(const float (*s_BC)[BCP], int tt, int s, float *Bv, float *Cv) {
    const float *row = &s_BC[tt][2 * s * NS];
    if constexpr (NS % 2 == 0) {
#pragma unroll
        for (int k = 0; k < NS; k += 2) {
            const float4 v = *reinterpret_cast<const float4 *>(row + 2 * k);
            Bv[k] = v.x; Cv[k] = v.y; Bv[k + 1] = v.z; Cv[k + 1] = v.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < NS; ++k) {
            const float2 v = *reinterpret_cast<const float2 *>(row + 2 * k);
            Bv[k] = v.x; Cv[k] = v.y;
        }
    }
}

// The per-lane phases of a chunk (outputs in the forward; dy, dz, du, ddelta in the backward) give lane s of a
// channel the steps s, s + TPC, s + 2 TPC, ..., so that neighbouring lanes store neighbouring positions.  A value
// per step that is reduce-scattered over the channel's lanes must therefore sit at slot (tt % TPC) * PER + tt / TPC
// (reduce_scatter leaves lane s the slots [s * PER, (s + 1) * PER)).
#define SLOT(tt) (((tt) % TPC) * (T / TPC) + (tt) / TPC)

// The forward stages one chunk: (delta after bias/softplus, delta * u) pairs, u (and z) per channel and step, and
// the (B, C) pairs.  Positions past the end and channels past the group read as zero (delta 0 means a = 1 and no
// input: the state passes through unchanged).

#ifndef SS_TP_BCA
#define SS_TP_BCA 0
#endif
#if SS_ASYNC || SS_TP_BCA
// ASYNC: the raw rows of a chunk go to shared memory by cp.async (16 bytes per copy, no registers held while they
// fly), then every thread converts two neighbouring positions of a row.  With element-wise loads into registers,
// their 64-bit addressing and bounds checks took a fifth of the bf16 forward's instructions (MMA-B, ncu).
__device__ __forceinline__ void cp_async16(unsigned dst, const void *src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Two neighbouring elements of a raw row of kind KIND (0 fp32, 1 bf16, 2 fp16), as floats.
template <int KIND, typename E> __device__ __forceinline__ float2 ld2(const E *p) {
    if constexpr (KIND == 0) {
        return *reinterpret_cast<const float2 *>(p);
    } else {
        return word_f2<KIND>(*reinterpret_cast<const unsigned *>(p));
    }
}

// PG consecutive elements of a copied row (16-byte aligned), as floats: 16-byte loads.
template <int KIND, typename E> __device__ __forceinline__ void rows_at(const E *p, float *f) {
    constexpr int V = 16 / sizeof(E);
    static_assert(PG % V == 0, "BCD: whole 16-byte vectors per group");
#pragma unroll
    for (int q = 0; q < PG / V; ++q) unpack16<KIND>(reinterpret_cast<const uint4 *>(p)[q], f + q * V);
}
#endif

#if !defined(SS_ONLY) || SS_ONLY == 0
extern "C" __global__ void __launch_bounds__(NTHREADS)
ssm_fwd(const in_t *__restrict__ u, const in_t *__restrict__ dt, const float *__restrict__ A,
        const bc_t *__restrict__ Bm, const bc_t *__restrict__ Cm, const float *__restrict__ Dv,
        const in_t *__restrict__ z, const float *__restrict__ bias,
        in_t *__restrict__ out, float *__restrict__ last, float *__restrict__ ckpt,
        float *__restrict__ seg_last, float *__restrict__ seg_decay,
        int dim, int L, int N, int dpg, int n_dblk, int n_chunks, int seg_len,
        long long s_ub, long long s_ud, long long s_tb, long long s_td, long long s_Ad, long long s_An,
        long long s_Bb, long long s_Bg, long long s_Bn, long long s_Cb, long long s_Cg, long long s_Cn,
        long long s_zb, long long s_zd, long long s_ob, long long s_od, int mode) {
    // blockIdx: x = group * n_dblk + channel block, y = batch, z = segment s of the sequence, steps
    // [s * seg_len, (s+1) * seg_len).  mode 0: one segment, the whole scan.  mode 1 (pass 1 of a split sequence,
    // compiled with STORE_OUT 0): each segment from a zero state, storing only its last state and total decay
    // prod(a) = exp(A sum(delta)) per (b, s) into seg_last / seg_decay.  mode 2 (pass 2): each segment from its
    // true start state, folded from the pass-1 summaries of the segments before it, writing outputs (and
    // checkpoints); the last segment writes last.
#if SS_ASYNC
    constexpr int NBUF = 2;      // chunk c's staged rows in buffer c % 2: one barrier per chunk (below)
#else
    constexpr int NBUF = 1;
#endif
    __shared__ __align__(16) float2 s_dtu_b[NBUF][DB][TPD];
#if !SS_BCD
    __shared__ __align__(16) float s_BC_b[NBUF][T][BCP];
#endif
    __shared__ float s_u_b[NBUF][DB][TP];
#if HAS_Z
    __shared__ float s_z_b[NBUF][DB][TP];
#endif
    const int tid = threadIdx.x, lane = tid & 31;
    const int c = tid / TPC, s = tid % TPC;
    const int blk = blockIdx.x, g = blk / n_dblk, d0 = (blk % n_dblk) * DB;
    const long long b = blockIdx.y;
    const int seg = blockIdx.z, n_seg = gridDim.z;
    const int t_begin = seg * seg_len;
    const int t_end = min(L, t_begin + seg_len);
    const bool valid_d = d0 + c < dpg;
    const int d = g * dpg + min(d0 + c, dpg - 1);
    const long long st_row = (b * n_seg + seg) * dim + d;       // row of seg_last / seg_decay
    const long long seg_stride = (long long)dim * N;             // between segments in seg_last / seg_decay

    float A2[NS], h[NS], dsum = 0.f;
#pragma unroll
    for (int k = 0; k < NS; ++k) {
        const int n = s * NS + k;
        A2[k] = (valid_d && n < N) ? A[d * s_Ad + n * s_An] * LOG2E : 0.f;
        h[k] = 0.f;
        if (mode == 2 && valid_d && n < N) {
            const long long row0 = (b * n_seg) * dim + d;
#pragma unroll 8
            for (int j = 0; j < seg; ++j)        // (unrolled: the loads of 8 segments in flight at once)
                h[k] = fmaf(seg_decay[(row0 * N + n) + j * seg_stride], h[k], seg_last[(row0 * N + n) + j * seg_stride]);
        }
    }
    const float Dd = HAS_D ? Dv[d] : 0.f;
    const bc_t *Bg = Bm + b * s_Bb + g * s_Bg;
    const bc_t *Cg = Cm + b * s_Cb + g * s_Cg;
    const int n_my_chunks = (t_end - t_begin + T - 1) / T;

#if SS_ASYNC
    // Raw rows of a chunk: delta, u (and z) of the DB channels, B (and C) of the NPAD states, copied two chunks
    // ahead into buffer (chunk % 2).  Copy j of this thread: source v_ptr[j] for the next chunk it copies (moves by
    // T steps per chunk), and the copy is whole while that chunk's first step is below v_lim[j] (t_end minus the
    // copy's latest step in the chunk; below every chunk for a row past the group or past N, which reads as zeros;
    // a copy of no bytes is given a valid address all the same).
    constexpr bool LOAD_Z = HAS_Z && STORE_OUT;
    constexpr int VI = 16 / sizeof(in_t), VB = 16 / sizeof(bc_t);
    static_assert(T % VI == 0 && T % VB == 0, "ASYNC: whole 16-byte vectors per chunk row");
    constexpr int NRI = (2 + LOAD_Z) * DB, NRB = (1 + STORE_OUT) * NPAD;   // channel rows, state rows
    constexpr int NVI = NRI * (T / VI), NVB = NRB * (T / VB);               // their 16-byte copies per chunk
    constexpr int NJI = (NVI + NTHREADS - 1) / NTHREADS, NJB = (NVB + NTHREADS - 1) / NTHREADS;
    // State rows: pitch RPB elements; with BCD an odd number of 16-byte vectors, so that the lanes of a channel
    // reading their k-th states (rows k TPC + s, below) hit distinct banks.
    constexpr int RPW = T * (int)sizeof(bc_t) / 4, RPB = !SS_BCD || (RPW / 4) % 2 ? T : T + 16 / (int)sizeof(bc_t);
    __shared__ __align__(16) in_t s_rin[2][NRI][T];
    __shared__ __align__(16) bc_t s_rbc[2][NRB][RPB];
    // Copy j of this thread: source v_ptr[j] for the next chunk it copies (moves by T steps per chunk), and the copy
    // is whole while that chunk's first step is below v_lim[j] (t_end minus the copy's latest step in the chunk;
    // below every chunk for a row past the group or past N, which reads as zeros; a copy of no bytes is given a
    // valid address all the same).  Channel rows (i) and state rows (b) have their own copies.
    const char *vi_ptr[NJI], *vb_ptr[NJB];
    unsigned vi_dst[NJI], vb_dst[NJB];      // shared-space address in buffer 0
    int vi_lim[NJI], vb_lim[NJB];
    const int w_begin = REVERSE ? L - t_begin - T : t_begin;     // lowest memory position of the first chunk
    const char *safe = reinterpret_cast<const char *>(Bg);
#pragma unroll
    for (int j = 0; j < NJI; ++j) {
        const int v = min(tid + j * NTHREADS, NVI - 1);
        const int row = v / (T / VI), m = (v % (T / VI)) * VI, kind = row / DB, cc = row % DB;
        const in_t *base = kind == 0 ? dt + b * s_tb : kind == 1 ? u + b * s_ub : z + b * s_zb;
        const long long sd = kind == 0 ? s_td : kind == 1 ? s_ud : s_zd;
        vi_ptr[j] = reinterpret_cast<const char *>(base + (g * dpg + min(d0 + cc, dpg - 1)) * sd + w_begin + m);
        vi_dst[j] = (unsigned)__cvta_generic_to_shared(&s_rin[0][row][m]);
        vi_lim[j] = d0 + cc < dpg ? t_end - (REVERSE ? T - 1 - m : m) : -(1 << 30);
    }
#pragma unroll
    for (int j = 0; j < NJB; ++j) {
        const int v = min(tid + j * NTHREADS, NVB - 1);
        const int row = v / (T / VB), m = (v % (T / VB)) * VB, n = row % NPAD, kind = row / NPAD;
        const bc_t *base = kind == 0 ? Bg : Cg;
        vb_ptr[j] = reinterpret_cast<const char *>(base + min(n, N - 1) * (kind == 0 ? s_Bn : s_Cn) + w_begin + m);
        // BCD: state n of lane s = n / NS goes to row (n % NS) TPC + s of its kind.
        const int prow = kind * NPAD + (SS_BCD ? (n % NS) * TPC + n / NS : n);
        vb_dst[j] = (unsigned)__cvta_generic_to_shared(&s_rbc[0][prow][m]);
        vb_lim[j] = n < N ? t_end - (REVERSE ? T - 1 - m : m) : -(1 << 30);
    }
    // Copies of chunk t0 (the next one each thread has not copied yet) of the channel rows / the state rows into
    // buffer buf; the caller commits.
    auto load_rows = [&](int t0, int buf) {
#pragma unroll
        for (int j = 0; j < NJI; ++j) {
            if ((j + 1) * NTHREADS <= NVI || tid + j * NTHREADS < NVI) {      // (the first test: at compile time)
                const bool ok = t0 < vi_lim[j];
                cp_async16(vi_dst[j] + (buf ? (unsigned)sizeof(s_rin[0]) : 0u), ok ? vi_ptr[j] : safe, ok);
                vi_ptr[j] += (REVERSE ? -T : T) * (int)sizeof(in_t);
            }
        }
    };
    auto load_states = [&](int t0, int buf) {
#pragma unroll
        for (int j = 0; j < NJB; ++j) {
            if ((j + 1) * NTHREADS <= NVB || tid + j * NTHREADS < NVB) {
                const bool ok = t0 < vb_lim[j];
                cp_async16(vb_dst[j] + (buf ? (unsigned)sizeof(s_rbc[0]) : 0u), ok ? vb_ptr[j] : safe, ok);
                vb_ptr[j] += (REVERSE ? -T : T) * (int)sizeof(bc_t);
            }
        }
    };
    // Staging chunk t0 from raw buffer buf into float buffer buf: pair i of the channel rows is channel i / (T/2),
    // memory positions m, m + 1 of the window; the same for the state rows (without BCD: with it the chunk reads
    // its B and C from the copied rows).
    constexpr int NCP = (DB * T / 2 + NTHREADS - 1) / NTHREADS, NSP = (NPAD * T / 2 + NTHREADS - 1) / NTHREADS;
    static_assert(T / 2 <= 32, "ASYNC: a channel's staging threads are lanes of one warp");
    // dpart: without outputs (the segment summaries), this thread's part of its staged channels' sums of delta
    // (each (channel, step) is staged once; the lanes of a channel would otherwise each add every step).
    float bias_j[NCP], dpart[NCP];
#pragma unroll
    for (int j = 0; j < NCP; ++j) {
        const int cc = min((tid + j * NTHREADS) / (T / 2), DB - 1);
        bias_j[j] = HAS_BIAS ? bias[g * dpg + min(d0 + cc, dpg - 1)] : 0.f;
        dpart[j] = 0.f;
    }
    auto stage = [&](int t0, int buf) {
#pragma unroll
        for (int j = 0; j < NCP; ++j) {
            const int i = tid + j * NTHREADS, cc = i / (T / 2), m = 2 * (i % (T / 2));
            if ((j + 1) * NTHREADS <= DB * T / 2 || i < DB * T / 2) {
                const float2 d2 = ld2<IN_KIND>(&s_rin[buf][cc][m]), u2 = ld2<IN_KIND>(&s_rin[buf][DB + cc][m]);
                float2 z2 = make_float2(0.f, 0.f);
                if constexpr (LOAD_Z) z2 = ld2<IN_KIND>(&s_rin[buf][2 * DB + cc][m]);
                const float dv[2] = {d2.x, d2.y}, uv[2] = {u2.x, u2.y}, zv[2] = {z2.x, z2.y};
                float2 du[2];
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int tt = REVERSE ? T - 1 - m - e : m + e;
                    float dtv = dv[e] + bias_j[j];
                    if (SOFTPLUS) dtv = softplus_f(dtv);
                    dtv = (d0 + cc < dpg && t0 + tt < t_end) ? dtv : 0.f;
                    if (!STORE_OUT) dpart[j] += dtv;
                    du[e] = make_float2(dtv, dtv * uv[e]);
                    if (!SS_DTU2) s_dtu_b[buf][cc][tt] = du[e];
                    if (STORE_OUT) s_u_b[buf][cc][tt] = uv[e];        // (D u of the outputs)
#if HAS_Z
                    s_z_b[buf][cc][tt] = zv[e];
#endif
                }
                if (SS_DTU2)     // steps (m, m + 1), or (T - 2 - m, T - 1 - m) when REVERSE: one 16-byte store
                    *reinterpret_cast<float4 *>(&s_dtu_b[buf][cc][REVERSE ? T - 2 - m : m]) =
                        REVERSE ? make_float4(du[1].x, du[1].y, du[0].x, du[0].y)
                                : make_float4(du[0].x, du[0].y, du[1].x, du[1].y);
            }
        }
#if !SS_BCD
#pragma unroll
        for (int j = 0; j < NSP; ++j) {
            const int i = tid + j * NTHREADS, n = i / (T / 2), m = 2 * (i % (T / 2));
            if ((j + 1) * NTHREADS <= NPAD * T / 2 || i < NPAD * T / 2) {
                const float2 b2 = ld2<BC_KIND>(&s_rbc[buf][n][m]);
                const float2 c2 = STORE_OUT ? ld2<BC_KIND>(&s_rbc[buf][(NRB - NPAD) + n][m]) : make_float2(0.f, 0.f);
                float (*s_BC)[BCP] = s_BC_b[buf];
                *reinterpret_cast<float2 *>(&s_BC[REVERSE ? T - 1 - m : m][2 * n]) = make_float2(b2.x, c2.x);
                *reinterpret_cast<float2 *>(&s_BC[REVERSE ? T - 2 - m : m + 1][2 * n]) = make_float2(b2.y, c2.y);
            }
        }
#endif
    };
    // Prologue: chunk 0 staged, chunk 1 on its way.  Then per chunk c, after one barrier (chunk c + 1's copies
    // landed and visible; every thread done with chunk c - 1's buffers): stage chunk c + 1, start copying c + 2
    // into the raw buffer chunk c came through, compute chunk c.  BCD: the state rows of chunk c are read while
    // computing it, so their copies run one chunk ahead instead (chunk c + 1 into the buffer chunk c - 1 used).
    load_rows(t_begin, 0);
    load_states(t_begin, 0);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
    stage(t_begin, 0);
    load_rows(t_begin + T, 1);
    if (!SS_BCD) load_states(t_begin + T, 1);
    cp_async_commit();
#else
    // Chunk inputs are loaded into registers one chunk ahead (their latency hides behind the current chunk's
    // arithmetic), then converted and written to shared memory after the barrier.
    in_t r_dt[NU], r_u[NU], r_z[NU];
    bc_t r_B[NBC], r_C[NBC];
    // Element j of a chunk, for this thread: row row0 + j * RS (a channel, or a state for B/C), step tt0.
    static_assert(NTHREADS % T == 0, "whole rows per pass");
    const int row0 = tid / T, tt0 = tid % T;
    const long long dd0 = g * dpg + d0 + row0;
    const in_t *p_dt = dt + b * s_tb + dd0 * s_td, *p_u = u + b * s_ub + dd0 * s_ud;
    const in_t *p_z = HAS_Z ? z + b * s_zb + dd0 * s_zd : nullptr;
    const bc_t *p_B = Bg + row0 * s_Bn, *p_C = Cg + row0 * s_Cn;
    auto load = [&](int t0) {
        const bool ok_t = t0 + tt0 < t_end;
        const int pos = POS(t0 + tt0);
        load_rows(r_dt, p_dt, s_td, row0, d0, dpg, pos, ok_t, true);
        load_rows(r_u, p_u, s_ud, row0, d0, dpg, pos, ok_t, true);
        load_rows(r_z, p_z, s_zd, row0, d0, dpg, pos, ok_t, HAS_Z && STORE_OUT);
        load_bc(r_B, r_C, p_B, p_C, s_Bn, s_Cn, row0, pos, ok_t, N, STORE_OUT);
    };
    load(t_begin);
#endif
    constexpr int PER = T / TPC;
#if SS_DEFER
    // The previous chunk's partial sums (reduced in place, round by round), and its u and z where this lane stores.
    constexpr int RND = TPC >= 32 ? 5 : TPC >= 16 ? 4 : TPC >= 8 ? 3 : TPC >= 4 ? 2 : TPC >= 2 ? 1 : 0;  // rounds
    float yp[T], uo[PER], zo[PER];
#pragma unroll
    for (int i = 0; i < T; ++i) yp[i] = 0.f;
#pragma unroll
    for (int i = 0; i < PER; ++i) uo[i] = zo[i] = 0.f;
    // Outputs of the chunk from step tc: v (reduced sums over states), with D u and the z gate.
    auto put_out = [&](float *v, int tc, const float *uv, const float *zv) {
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            const int t = tc + i * TPC + s;
            float o = v[i];
            if (HAS_D) o = fmaf(Dd, uv[i], o);
            if (HAS_Z) o *= zv[i] * sigmoid_f(zv[i]);
            if (valid_d && t < t_end) out[b * s_ob + (long long)d * s_od + POS(t)] = st_in(o);
        }
    };
#endif
    // One chunk; with two buffers the loop below takes two chunks per pass, so that every shared address is fixed.
    auto chunk = [&](int ci, int buf) {
        const int t0 = t_begin + ci * T;
        float2 (*s_dtu)[TPD] = s_dtu_b[buf];
#if SS_BCD
        const bc_t (*s_sb)[RPB] = s_rbc[buf];
#else
        float (*s_BC)[BCP] = s_BC_b[buf];
#endif
        float (*s_u)[TP] = s_u_b[buf];
#if HAS_Z
        float (*s_z)[TP] = s_z_b[buf];
#endif
#if SS_ASYNC
        cp_async_wait_all();
        __syncthreads();
        // Unconditional (a chunk past the end reads and stages zeros nobody uses): no branch separates this work
        // from the chunk's arithmetic, so the compiler can interleave their latencies.
        stage(t0 + T, buf ^ 1);
        load_rows(t0 + 2 * T, buf);
        if (SS_BCD) load_states(t0 + T, buf ^ 1);
        else load_states(t0 + 2 * T, buf);
        cp_async_commit();
#else
        __syncthreads();
#pragma unroll
        for (int j = 0; j < NU; ++j) {
            const int i = tid + j * NTHREADS, cc = i / T, tt = i % T;
            if (i < DB * T) {
                float dtv = ld_in(r_dt[j]);
                if (HAS_BIAS) dtv += bias[g * dpg + min(d0 + cc, dpg - 1)];
                if (SOFTPLUS) dtv = softplus_f(dtv);
                const bool ok = (d0 + cc < dpg) && t0 + tt < t_end;
                const float uv = ld_in(r_u[j]);
                dtv = ok ? dtv : 0.f;
                s_dtu[cc][tt] = make_float2(dtv, dtv * uv);
                s_u[cc][tt] = uv;
#if HAS_Z
                s_z[cc][tt] = ld_in(r_z[j]);
#endif
            }
        }
        stage_bc(s_BC, r_B, r_C, tid);
        __syncthreads();
        if (ci + 1 < n_my_chunks) load(t0 + T);
#endif
        float y[T];
        // Steps in groups of PG: first every exp2 and input term of the group (independent of the state, so the
        // special-function and shared-memory latencies overlap), then the recurrence over the group.  DEFER: the
        // previous chunk's reduction rounds go between this chunk's recurrence steps (their shuffle latencies
        // hide behind the arithmetic), its outputs after them.
#pragma unroll
        for (int g0 = 0; g0 < T; g0 += PG) {
#if STORE_CKPT
            // The state before step t0 + g0, every CK steps (n_chunks counts checkpoints).
            if (g0 % CK == 0 && valid_d && t0 + g0 < t_end) {
#pragma unroll
                for (int k = 0; k < NS; ++k) {
                    const int n = s * NS + k;
                    if (n < N) ckpt[((b * dim + d) * n_chunks + (t0 + g0) / CK) * N + n] = h[k];
                }
            }
#endif
            float ea[PG][NS], bu[PG][NS], cv[PG][NS];
#if SS_BCD
            // B and C of this lane's states over the group, from the copied rows (memory order: the group's
            // steps are the PG columns from mc, backwards when REVERSE).
#pragma unroll
            for (int k = 0; k < NS; ++k) {
                const int mc = REVERSE ? T - g0 - PG : g0;
                float fb[PG], fc[PG];
                rows_at<BC_KIND>(&s_sb[k * TPC + s][mc], fb);
                if (STORE_OUT) rows_at<BC_KIND>(&s_sb[NPAD + k * TPC + s][mc], fc);
#pragma unroll
                for (int j = 0; j < PG; ++j) {
                    bu[j][k] = fb[REVERSE ? PG - 1 - j : j];
                    cv[j][k] = STORE_OUT ? fc[REVERSE ? PG - 1 - j : j] : 0.f;
                }
            }
#endif
            float2 dds[PG];          // the group's (delta, delta u), two steps per read where the pitch allows
            if constexpr (SS_DTU2 && PG % 2 == 0) {
#pragma unroll
                for (int j = 0; j < PG; j += 2) {
                    const float4 q = *reinterpret_cast<const float4 *>(&s_dtu[c][g0 + j]);
                    dds[j] = make_float2(q.x, q.y);
                    dds[j + 1] = make_float2(q.z, q.w);
                }
            } else {
#pragma unroll
                for (int j = 0; j < PG; ++j) dds[j] = s_dtu[c][g0 + j];
            }
#pragma unroll
            for (int j = 0; j < PG; ++j) {
                const float2 dd = dds[j];
#if !SS_BCD
                bc_at(s_BC, g0 + j, s, bu[j], cv[j]);
#endif
                if (!STORE_OUT && !SS_ASYNC) dsum += dd.x;  // the total decay: needed by the segment summaries only
#pragma unroll
                for (int k = 0; k < NS; ++k) {
                    ea[j][k] = exp2f(dd.x * A2[k]);
                    bu[j][k] *= dd.y;
                }
            }
#pragma unroll
            for (int j = 0; j < PG; ++j) {
                float acc = 0.f;
#pragma unroll
                for (int k = 0; k < NS; ++k) {
                    h[k] = fmaf(ea[j][k], h[k], bu[j][k]);
                    if (STORE_OUT) acc = fmaf(cv[j][k], h[k], acc);
                }
                y[SLOT(g0 + j)] = acc;
#if SS_DEFER
#pragma unroll
                for (int r = 0; r < RND; ++r)       // round r after step (r + 1) T / (RND + 1)
                    if (STORE_OUT && g0 + j + 1 == (r + 1) * T / (RND + 1)) scatter_round(yp, lane, r);
#endif
            }
        }
#if SS_DEFER
        if (STORE_OUT) {
            if (ci > 0) put_out(yp, t0 - T, uo, zo);
#pragma unroll
            for (int i = 0; i < T; ++i) yp[i] = y[i];
#pragma unroll
            for (int i = 0; i < PER; ++i) {      // this chunk's u and z at the positions this lane stores
                uo[i] = HAS_D ? s_u[c][i * TPC + s] : 0.f;
#if HAS_Z
                zo[i] = s_z[c][i * TPC + s];
#endif
            }
        }
#else
        if (STORE_OUT) {         // (mode 1, the segment summaries, runs the STORE_OUT 0 build)
            reduce_scatter<T, TPC / 2, 1>(y, lane);
#pragma unroll
            for (int i = 0; i < PER; ++i) {
                const int tt = i * TPC + s, t = t0 + tt;
                float v = y[i];      // computed unconditionally, only the store guarded: no branches
                if (HAS_D) v = fmaf(Dd, s_u[c][tt], v);
#if HAS_Z
                const float zz = s_z[c][tt];
                v *= zz * sigmoid_f(zz);
#endif
                if (valid_d && t < t_end) out[b * s_ob + (long long)d * s_od + POS(t)] = st_in(v);
            }
        }
#endif
    };
    for (int ci = 0; ci < n_my_chunks; ci += NBUF) {
        chunk(ci, 0);
        if (NBUF == 2 && ci + 1 < n_my_chunks) chunk(ci + 1, NBUF - 1);
    }
#if SS_DEFER
    if (STORE_OUT) {         // the last chunk's outputs
#pragma unroll
        for (int r = 0; r < RND; ++r) scatter_round(yp, lane, r);
        put_out(yp, t_begin + (n_my_chunks - 1) * T, uo, zo);
    }
#endif
#if SS_ASYNC
    if (!STORE_OUT) {        // a channel's sum of delta: its T / 2 staging threads' parts (neighbouring lanes)
        __shared__ float s_dsum[DB];
#pragma unroll
        for (int j = 0; j < NCP; ++j) {
            const int i = tid + j * NTHREADS;
            float v = dpart[j];
#pragma unroll
            for (int off = T / 4; off >= 1; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
            if (i < DB * T / 2 && i % (T / 2) == 0) s_dsum[i / (T / 2)] = v;
        }
        __syncthreads();
        dsum = s_dsum[c];
    }
#endif
    if (valid_d) {
#pragma unroll
        for (int k = 0; k < NS; ++k) {
            const int n = s * NS + k;
            if (n < N) {
                if (mode == 1) {
                    seg_last[st_row * N + n] = h[k];
                    seg_decay[st_row * N + n] = exp2f(dsum * A2[k]);
                } else if (seg == n_seg - 1) {
                    last[(b * dim + d) * N + n] = h[k];
                }
            }
        }
    }
}
#endif

// Backward.  Walks the chunks in reverse; per chunk: recompute the states from the chunk's checkpoint (kept in
// registers, T x NS per thread), with z also y and so dz and dy; then the reverse recurrence
//   dh_t = C_t dy_t + a_{t+1} dh_{t+1},  w_t = dh_t a_t h_{t-1} = dh_t (h_t - dt_t B_t u_t),
//   dA += w dt,  du = dt sum_n dh B + D dy,  ddelta = (u sum_n dh B + sum_n w A) softplus',
//   dB_t = sum_d dh dt u,  dC_t = sum_d h dy.
// Steps are taken in groups of RG: the n-sums are reduce-scattered over the TPC lanes of a channel, the d-sums over
// the channels of the warp, then added across the block's warps in shared memory and written once per block.
#if !defined(SS_ONLY) || SS_ONLY == 1
extern "C" __global__ void __launch_bounds__(NTHREADS, SS_BWD_MINB)
ssm_bwd(const in_t *__restrict__ u, const in_t *__restrict__ dt, const float *__restrict__ A,
        const bc_t *__restrict__ Bm, const bc_t *__restrict__ Cm, const float *__restrict__ Dv,
        const in_t *__restrict__ z, const float *__restrict__ bias, const in_t *__restrict__ dout,
        const float *__restrict__ ckpt,
        in_t *__restrict__ du, in_t *__restrict__ ddt, float *__restrict__ dA, float *__restrict__ dB,
        float *__restrict__ dC, float *__restrict__ dD, in_t *__restrict__ dz, float *__restrict__ dbias,
        int dim, int L, int N, int dpg, int n_dblk, int n_chunks, int G, int dbc_atomic,
        long long s_ub, long long s_ud, long long s_tb, long long s_td, long long s_Ad, long long s_An,
        long long s_Bb, long long s_Bg, long long s_Bn, long long s_Cb, long long s_Cg, long long s_Cn,
        long long s_zb, long long s_zd, long long s_gb, long long s_gd,
        float *__restrict__ seg_carry, float *__restrict__ seg_decay, int seg_len, int mode_in) {
    // blockIdx: x = group * n_dblk + channel block, y = batch, z = segment s, steps [s * seg_len, (s+1) * seg_len)
    // (seg_len a multiple of T).  mode 0: one segment.  mode 1 (pass 1 of a split sequence, the SUMMARY build):
    // each segment from a zero incoming dh, storing only the dh it passes to the step before it and its total
    // decay per (b, s) into seg_carry / seg_decay.  mode 2: each segment from its true incoming dh, folded from the
    // pass-1 summaries of the segments after it, writing all gradients.  Pass 1 is a build of its own (SUMMARY:
    // no states, no u/B loads, a third of the registers).  The full build keeps the mode-1 code it never runs:
    // telling the compiler mode != 1 there changed its register allocation (128 -> 145 at N = 16, spills at N = 32).
    const int mode = SS_SUMMARY ? 1 : mode_in;
    __shared__ __align__(16) float2 s_dtu[DB][TP];      // (delta, delta * u)
    __shared__ __align__(16) float s_BC[T][BCP];
    __shared__ float s_u[DB][TP], s_g[DB][TP], s_sg[DB][TP], s_q[DB][TP], s_r[DB][TP];
    constexpr int NW = NTHREADS / 32;
    __shared__ float s_dB[NW][NPAD][TP], s_dC[NW][NPAD][TP];
#if HAS_Z
    __shared__ float s_z[DB][TP];
#endif
    constexpr int CL = 32 / TPC;               // channels per warp
    constexpr int PER = T / TPC;               // positions per lane in the per-channel phases
    constexpr int VBC = RG * NS * 2;           // dB/dC partials per group
    const int tid = threadIdx.x, lane = tid & 31;
    const int c = tid / TPC, s = tid % TPC;
    const int blk = blockIdx.x, g = blk / n_dblk, d0 = (blk % n_dblk) * DB;
    const long long b = blockIdx.y;
    const bool valid_d = d0 + c < dpg;
    const int d = g * dpg + min(d0 + c, dpg - 1);

    const int seg = blockIdx.z, n_seg = gridDim.z;
    const int c_lo = seg * seg_len / T, c_hi = (min(L, (seg + 1) * seg_len) + T - 1) / T - 1;
    const long long seg_row = ((b * n_seg) * dim + d) * (long long)N, seg_stride = (long long)dim * N;
    float A1[NS], A2[NS], dh[NS], dA_acc[NS], dsum = 0.f;
#pragma unroll
    for (int k = 0; k < NS; ++k) {
        const int n = s * NS + k;
        A1[k] = (valid_d && n < N) ? A[d * s_Ad + n * s_An] : 0.f;
        A2[k] = A1[k] * LOG2E;
        dh[k] = 0.f;
        dA_acc[k] = 0.f;
        if (mode == 2 && valid_d && n < N) {
#pragma unroll 8
            for (int j = n_seg - 1; j > seg; --j)        // (unrolled: the loads of 8 segments in flight at once)
                dh[k] = fmaf(seg_decay[seg_row + n + j * seg_stride], dh[k], seg_carry[seg_row + n + j * seg_stride]);
        }
    }
    const float Dd = HAS_D ? Dv[d] : 0.f;
    float dD_acc = 0.f, dbias_acc = 0.f;
    const bc_t *Bg = Bm + b * s_Bb + g * s_Bg;
    const bc_t *Cg = Cm + b * s_Cb + g * s_Cg;
    const long long bgN = (b * G + g) * (long long)N;

    in_t r_dt[NU], r_u[NU], r_g[NU], r_z[NU];       // staging layout as in the forward (raw until staged)
    bc_t r_B[NBC], r_C[NBC];
    static_assert(NTHREADS % T == 0, "whole rows per pass");
    const int row0 = tid / T, tt0 = tid % T;
    const long long dd0 = g * dpg + d0 + row0;
    const in_t *p_dt = dt + b * s_tb + dd0 * s_td, *p_u = u + b * s_ub + dd0 * s_ud;
    const in_t *p_g = dout + b * s_gb + dd0 * s_gd;
    const in_t *p_z = HAS_Z ? z + b * s_zb + dd0 * s_zd : nullptr;
    const bc_t *p_B = Bg + row0 * s_Bn, *p_C = Cg + row0 * s_Cn;
    auto load = [&](int t0) {       // one chunk ahead, as in the forward; pass 1 reads neither u nor B
        const bool ok_t = t0 + tt0 < L;
        const int pos = POS(t0 + tt0);
        load_rows(r_dt, p_dt, s_td, row0, d0, dpg, pos, ok_t, true);
        load_rows(r_u, p_u, s_ud, row0, d0, dpg, pos, ok_t, !SS_SUMMARY);
        load_rows(r_g, p_g, s_gd, row0, d0, dpg, pos, ok_t, true);
        load_rows(r_z, p_z, s_zd, row0, d0, dpg, pos, ok_t, HAS_Z);
        load_bc(r_B, r_C, p_B, p_C, s_Bn, s_Cn, row0, pos, ok_t, N, true, !SS_SUMMARY);
    };
    load(c_hi * T);
    for (int ci = c_hi; ci >= c_lo; --ci) {
        const int t0 = ci * T;
        __syncthreads();
#pragma unroll
        for (int j = 0; j < NU; ++j) {
            const int i = tid + j * NTHREADS, cc = i / T, tt = i % T;
            if (i < DB * T) {
                const bool ok = (d0 + cc < dpg) && t0 + tt < L;
                float dtv = ld_in(r_dt[j]), sg = 0.f;
                if (HAS_BIAS) dtv += bias[g * dpg + min(d0 + cc, dpg - 1)];
                if (SOFTPLUS) { sg = sigmoid_f(dtv); dtv = softplus_f(dtv); }
                const float uv = ld_in(r_u[j]);
                dtv = ok ? dtv : 0.f;
                s_dtu[cc][tt] = make_float2(dtv, dtv * uv);
                s_sg[cc][tt] = sg;
                s_u[cc][tt] = uv;
                s_g[cc][tt] = ld_in(r_g[j]);
#if HAS_Z
                s_z[cc][tt] = ld_in(r_z[j]);
#endif
            }
        }
        stage_bc(s_BC, r_B, r_C, tid);
        __syncthreads();
        if (ci > c_lo) load(t0 - T);

        // 1. States of the chunk from its checkpoint (and y when z gates the output, for dz).  Pass 1 needs
        // neither: only dy (below).
        float hist[T][NS];
        if (mode != 1) {
            float hc[NS];
#pragma unroll
            for (int k = 0; k < NS; ++k) {
                const int n = s * NS + k;
                hc[k] = (valid_d && n < N) ? ckpt[((b * dim + d) * n_chunks + ci) * N + n] : 0.f;
            }
#if HAS_Z
            float y[T];
#endif
#pragma unroll
            for (int tt = 0; tt < T; ++tt) {
                const float2 dd = s_dtu[c][tt];
                float Bv[NS], Cv[NS];
                bc_at(s_BC, tt, s, Bv, Cv);
#if HAS_Z
                float acc = 0.f;
#endif
#pragma unroll
                for (int k = 0; k < NS; ++k) {
                    hc[k] = fmaf(exp2f(dd.x * A2[k]), hc[k], dd.y * Bv[k]);
                    hist[tt][k] = hc[k];
#if HAS_Z
                    acc = fmaf(Cv[k], hc[k], acc);
#endif
                }
#if HAS_Z
                y[SLOT(tt)] = acc;
#endif
            }
            // 2. dy (and dz) for this lane's PER positions, shared with the channel's lanes through s_g.
#if HAS_Z
            reduce_scatter<T, TPC / 2, 1>(y, lane);
#endif
#pragma unroll
            for (int i = 0; i < PER; ++i) {
                const int tt = i * TPC + s, t = t0 + tt;
                const float gv = s_g[c][tt];
                float dyv = gv;
#if HAS_Z
                const float zz = s_z[c][tt];
                const float sz = sigmoid_f(zz);
                const float yv = HAS_D ? fmaf(Dd, s_u[c][tt], y[i]) : y[i];
                if (valid_d && t < L)
                    dz[(b * dim + d) * (long long)L + POS(t)] = st_in(gv * yv * sz * (1.f + zz * (1.f - sz)));
                dyv = gv * zz * sz;
#endif
                if (HAS_D) dD_acc = fmaf(dyv, s_u[c][tt], dD_acc);
                s_g[c][tt] = dyv;
            }
            __syncwarp();
        }
#if HAS_Z
        else {          // pass 1: dy = dout z sigmoid(z), without the states
#pragma unroll
            for (int i = 0; i < PER; ++i) {
                const int tt = i * TPC + s;
                const float zz = s_z[c][tt];
                s_g[c][tt] *= zz * sigmoid_f(zz);
            }
            __syncwarp();
        }
#endif

        if (mode == 1) {
            // Pass 1: only the reverse recurrence of dh and the segment's total decay.
#pragma unroll
            for (int tt = T - 1; tt >= 0; --tt) {
                const float dtv = s_dtu[c][tt].x, dyv = s_g[c][tt];
                float Bv[NS], Cv[NS];
                bc_at(s_BC, tt, s, Bv, Cv);
                dsum += dtv;
#pragma unroll
                for (int k = 0; k < NS; ++k)
                    dh[k] = fmaf(Cv[k], dyv, dh[k]) * exp2f(dtv * A2[k]);
            }
            continue;
        }
        // 3. Reverse recurrence in groups of RG steps.
#pragma unroll
        for (int gi = T / RG - 1; gi >= 0; --gi) {
            float qr[2 * RG];
            float bc[VBC];
#pragma unroll
            for (int j = RG - 1; j >= 0; --j) {
                const int tt = gi * RG + j;
                const float2 dd = s_dtu[c][tt];
                const float dtv = dd.x, dtu = dd.y, dyv = s_g[c][tt];
                float Bs[NS], Cs[NS];
                bc_at(s_BC, tt, s, Bs, Cs);
                float q = 0.f, r = 0.f;
#pragma unroll
                for (int k = 0; k < NS; ++k) {
                    const float Bv = Bs[k];
                    const float hv = hist[tt][k];
                    dh[k] = fmaf(Cs[k], dyv, dh[k]);
                    const float w = dh[k] * (hv - dtu * Bv);
                    dA_acc[k] = fmaf(w, dtv, dA_acc[k]);
                    q = fmaf(dh[k], Bv, q);
                    r = fmaf(w, A1[k], r);
                    bc[(j * NS + k) * 2 + 0] = dh[k] * dtu;
                    bc[(j * NS + k) * 2 + 1] = hv * dyv;
                    dh[k] *= exp2f(dtv * A2[k]);
                }
                qr[2 * j] = q;
                qr[2 * j + 1] = r;
            }
            // n-sums: over the TPC lanes of the channel.
            reduce_scatter<2 * RG, TPC / 2, 1>(qr, lane);
            constexpr int QPER = (2 * RG) / TPC;
#pragma unroll
            for (int i = 0; i < QPER; ++i) {
                const int idx = s * QPER + i, tt = gi * RG + idx / 2;
                if (idx % 2 == 0) s_q[c][tt] = qr[i]; else s_r[c][tt] = qr[i];
            }
            // d-sums: over the CL channels of the warp (each lane then holds distinct (n, t) sums, every one
            // written each chunk), then across the block's warps when the chunk is flushed.
            reduce_scatter<VBC, 16, TPC>(bc, lane);
            constexpr int BPER = VBC / CL;
#pragma unroll
            for (int i = 0; i < BPER; ++i) {
                const int idx = (c % CL) * BPER + i;
                const int j = idx / (2 * NS), k = (idx / 2) % NS, tt = gi * RG + j;
                if (idx % 2 == 0) s_dB[tid / 32][s * NS + k][tt] = bc[i];
                else s_dC[tid / 32][s * NS + k][tt] = bc[i];
            }
        }
        __syncwarp();
        // 4. du, ddelta for this lane's positions.
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            const int tt = i * TPC + s, t = t0 + tt;
            const float q = s_q[c][tt], r = s_r[c][tt], dtv = s_dtu[c][tt].x, uv = s_u[c][tt];
            float duv = q * dtv;
            if (HAS_D) duv = fmaf(Dd, s_g[c][tt], duv);
            float ddv = fmaf(uv, q, r);
            if (SOFTPLUS) ddv *= s_sg[c][tt];
            if (valid_d && t < L) {
                dbias_acc += ddv;
                du[(b * dim + d) * (long long)L + POS(t)] = st_in(duv);
                ddt[(b * dim + d) * (long long)L + POS(t)] = st_in(ddv);
            }
        }
        __syncthreads();
        // 5. dB, dC of the chunk: one write (or atomic add, when several blocks share the group) per value.
        for (int i = tid; i < NPAD * T; i += NTHREADS) {
            const int nn = i / T, tt = i % T, t = t0 + tt;
            if (nn < N && t < L) {
                const long long off = (bgN + nn) * L + POS(t);
                float vb = 0.f, vc = 0.f;
#pragma unroll
                for (int w = 0; w < NW; ++w) {
                    vb += s_dB[w][nn][tt];
                    vc += s_dC[w][nn][tt];
                }
                if (dbc_atomic) {
                    atomicAdd(dB + off, vb);
                    atomicAdd(dC + off, vc);
                } else {
                    dB[off] = vb;
                    dC[off] = vc;
                }
            }
        }
    }
    if (mode == 1) {
        if (valid_d) {
#pragma unroll
            for (int k = 0; k < NS; ++k) {
                const int n = s * NS + k;
                if (n < N) {
                    seg_carry[seg_row + n + seg * seg_stride] = dh[k];
                    seg_decay[seg_row + n + seg * seg_stride] = exp2f(dsum * A2[k]);
                }
            }
        }
        return;
    }
    // dA, dD, dbias: sums over the batch (and for dD, dbias over the channel's lanes).
    if (valid_d) {
#pragma unroll
        for (int k = 0; k < NS; ++k) {
            const int n = s * NS + k;
            if (n < N) atomicAdd(dA + d * N + n, dA_acc[k]);
        }
    }
#pragma unroll
    for (int m = TPC / 2; m >= 1; m /= 2) {
        dD_acc += __shfl_xor_sync(0xffffffffu, dD_acc, m);
        dbias_acc += __shfl_xor_sync(0xffffffffu, dbias_acc, m);
    }
    if (valid_d && s == 0) {
        if (HAS_D) atomicAdd(dD + d, dD_acc);
        if (HAS_BIAS) atomicAdd(dbias + d, dbias_acc);
    }
}
#endif

// Time-parallel forward, for calls with few (batch, channel, state) lanes (N <= 8, e.g. MambaIRv2's scans), where
// a thread walking the whole sequence would leave the GPU nearly idle.  A warp owns one channel and walks the
// sequence in windows of 32 T steps; lane l takes the T steps [t0 + l T, t0 + (l + 1) T).  One state at a time,
// with its decays a_j = exp(dt_j A) and inputs dt_j u_j B_j over the lane's steps in registers:
//   A. the lane's end state from a zero state;
//   B. a scan over the lanes of (decay exp(A sum delta), end state) pairs gives every lane its true start state h0
//      (lane 0: the carry from the window before);
//   C. the true states from h0 and their part C_j h_j of the outputs y_j.
// Every CK / T-th lane's start state is a checkpoint of the backward (CK: its chunk length).  A block holds DB
// channels of one (batch, B/C group); they share the window's B and C, staged in shared memory once.  Rows of
// delta, u, z and the outputs move as 16-byte vectors when ``vec`` & 1 says their rows are aligned (the launcher
// checks), B and C when ``vec`` & 2 does; else element-wise.  Measured on an H100 at MambaIRv2-light's training
// shape (b16 d96 L4096 N8): forward 0.073 ms vs 0.145 for the lane kernel with its segment split, 0.134 for
// mamba_ssm; walking all states through each step instead (two exp2 per state-step) took 0.086 (run 46,
// docs/benchmarks.md).
#if defined(SS_ONLY) && SS_ONLY >= 2
#ifndef SS_TP_MINB
#define SS_TP_MINB 3                 // blocks per SM to fit registers for
#endif
#ifndef SS_TP_PF
#define SS_TP_PF 0                   // load the next window's B/C (bit 1), delta/u (bit 2) during this one
#endif
#ifndef SS_TP_GPF
#define SS_TP_GPF 0                  // prefetch the next window's inputs into L2 (1) or L1 (2) during this one
#endif
#define TP_THREADS (DB * 32)
#define WIN (32 * T)                 // steps per window
#define WP (32 * (T + 4))            // shared row pitch of one state's B (or C) over a window
#define SIDX(t) ((t) + 4 * ((t) / T))  // step t's column: lane l's float4 reads start at (T + 4) l, distinct bank quads
static_assert(T % 4 == 0 && T >= 8 && CK % T == 0, "TP: steps per lane, checkpoint interval");
constexpr int VEC = 16 / sizeof(in_t);      // steps per 16-byte vector of delta, u, z, out
constexpr int BCV = 16 / sizeof(bc_t);      // of B, C
static_assert(T % VEC == 0 && T % BCV == 0, "TP: vectors stay within a lane's steps");

// A prefetch of the cache line holding *p into L2 (TP_GPF 1) or L1 (2): no register waits for it.
__device__ __forceinline__ void prefetch_line(const void *p) {
    if (SS_TP_GPF == 1) asm volatile("prefetch.global.L2 [%0];\n" ::"l"(__cvta_generic_to_global(p)));
    if (SS_TP_GPF == 2) asm volatile("prefetch.global.L1 [%0];\n" ::"l"(__cvta_generic_to_global(p)));
}

// The 16 bytes of row p at the time steps t, t + 1, ... (16 / sizeof(E) of them), raw, in step order; zero past
// the end or when !ok.  One vector load when ``vec`` (aligned rows) and the steps are whole and aligned in memory.
// Lowest memory position of the V time steps from t when they can move as one aligned 16-byte vector, else -1.
template <int V> __device__ __forceinline__ int vec_pos(int t, int L, bool vec) {
    const int lo = REVERSE ? L - t - V : t;
    return (vec && lo >= 0 && lo + V <= L && lo % V == 0) ? lo : -1;
}

// The elements of a 16-byte vector of E in the opposite order.
template <typename E> __device__ __forceinline__ uint4 rev16(uint4 v) {
    if constexpr (sizeof(E) == 4) return make_uint4(v.w, v.z, v.y, v.x);
    return make_uint4(__byte_perm(v.w, 0, 0x1032), __byte_perm(v.z, 0, 0x1032), __byte_perm(v.y, 0, 0x1032),
                      __byte_perm(v.x, 0, 0x1032));
}

template <typename E> __device__ __forceinline__ uint4 fetch16(const E *p, int t, int L, bool vec, bool ok) {
    constexpr int V = 16 / sizeof(E);
    const int lo = ok ? vec_pos<V>(t, L, vec) : -1;
    if (lo >= 0) {
        const uint4 v = *reinterpret_cast<const uint4 *>(p + lo);
        return REVERSE ? rev16<E>(v) : v;
    }
    unsigned w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if constexpr (V == 4) {
            w[i] = (ok && t + i < L) ? __float_as_uint(p[POS(t + i)]) : 0u;
        } else {
            const unsigned lo16 = (ok && t + 2 * i < L) ? unsigned(p[POS(t + 2 * i)]) : 0u;
            const unsigned hi16 = (ok && t + 2 * i + 1 < L) ? unsigned(p[POS(t + 2 * i + 1)]) : 0u;
            w[i] = lo16 | (hi16 << 16);
        }
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

// r[j] = row p at time step tl + j (zero past the end).
__device__ __forceinline__ void tp_load_row(float *r, const in_t *p, int tl, int L, bool vec) {
#pragma unroll
    for (int k = 0; k < T / VEC; ++k) unpack16<IN_KIND>(fetch16(p, tl + k * VEC, L, vec, true), r + k * VEC);
}

__device__ __forceinline__ uint4 pack16(const float *f) {
    unsigned w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if constexpr (VEC == 4)
            w[i] = __float_as_uint(f[i]);
        else
            w[i] = unsigned(st_in(f[2 * i])) | (unsigned(st_in(f[2 * i + 1])) << 16);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

// Row p at time steps tl .. tl + T - 1 = r (steps past the end not written), a 16-byte vector where it can.
__device__ __forceinline__ void tp_store_row(in_t *p, const float *r, int tl, int L, bool vec) {
#pragma unroll
    for (int k = 0; k < T / VEC; ++k) {
        const int t = tl + k * VEC, lo = vec_pos<VEC>(t, L, vec);
        if (lo >= 0) {
            float f[VEC];
#pragma unroll
            for (int e = 0; e < VEC; ++e) f[e] = r[k * VEC + (REVERSE ? VEC - 1 - e : e)];
            *reinterpret_cast<uint4 *>(p + lo) = pack16(f);
        } else {
#pragma unroll
            for (int e = 0; e < VEC; ++e)
                if (t + e < L) p[POS(t + e)] = st_in(r[k * VEC + e]);
        }
    }
}

// A state's decays a_j = exp(dt_j A) and inputs dt_j u_j B_j over the lane's steps (s_Bk: its B row of the window).
__device__ __forceinline__ void tp_state_inputs(float *a, float *bu, const float *s_Bk, int col, const float *dtv,
                                                const float *dtu, float A2k) {
#pragma unroll
    for (int q = 0; q < T; q += 4) {
        const float4 bq = *reinterpret_cast<const float4 *>(&s_Bk[col + q]);
        const float bb[4] = {bq.x, bq.y, bq.z, bq.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            a[q + e] = exp2f(dtv[q + e] * A2k);
            bu[q + e] = dtu[q + e] * bb[e];
        }
    }
}

// A state's true values over the lane's steps from h (its value before the first), h_j = a_j h_{j-1} + bu_j, and
// their part C_j h_j of the outputs y_j (s_Ck: the state's C row of the window).
__device__ __forceinline__ void tp_state_outputs(float h, const float *a, const float *bu, const float *s_Ck, int col,
                                                 float *y) {
#pragma unroll
    for (int q = 0; q < T; q += 4) {
        const float4 cq = *reinterpret_cast<const float4 *>(&s_Ck[col + q]);
        const float cc[4] = {cq.x, cq.y, cq.z, cq.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            h = fmaf(a[q + e], h, bu[q + e]);
            y[q + e] = fmaf(cc[e], h, y[q + e]);
        }
    }
}

// Inclusive scan over the lanes, from lane 0 up (UP) or from lane 31 down, of the pairs (P, H) = (total decay, end
// state from a zero state) of each lane's steps, composed as (P, H) after (P', H') = (P P', H + P H'); ``carry``
// (the state before the first lane's steps) is folded into the first lane's pair, which so becomes absorbing
// (P = 0).  Every lane whose prefix is complete then has P = 0, and composing it with itself (what a shuffle from
// out of range returns) leaves it unchanged: no predicated updates (they took as many moves again).  Returns the
// true state after the lane's steps.
// TP_ABSORB 0: the plain scan instead, with predicated updates and the carry applied after it.
#ifndef SS_TP_ABSORB
#define SS_TP_ABSORB 1
#endif
#ifndef SS_TP_FASTMASK
#define SS_TP_FASTMASK 1
#endif
template <bool UP> __device__ __forceinline__ float lane_scan(float P, float H, float carry, int lane) {
    const bool first = UP ? lane == 0 : lane == 31;
    if (SS_TP_ABSORB) {
        H = first ? fmaf(P, carry, H) : H;
        P = first ? 0.f : P;
    }
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
        const float Pp = UP ? __shfl_up_sync(0xffffffffu, P, off) : __shfl_down_sync(0xffffffffu, P, off);
        const float Hp = UP ? __shfl_up_sync(0xffffffffu, H, off) : __shfl_down_sync(0xffffffffu, H, off);
        if (SS_TP_ABSORB || (UP ? lane >= off : lane + off < 32)) {
            H = fmaf(P, Hp, H);
            P *= Pp;
        }
    }
    return SS_TP_ABSORB ? H : fmaf(P, carry, H);
}

// The start state of each lane's steps from its steps' total decay P and end state H from a zero state (an
// exclusive lane_scan); ``carry`` (the state before the window) goes to lane 0 and becomes the state after the
// window's last step.
__device__ __forceinline__ float tp_lane_start(float P, float H, float &carry, int lane) {
    const float incl = lane_scan<true>(P, H, carry, lane);      // the true state after the lane's last step
    const float prev = __shfl_up_sync(0xffffffffu, incl, 1);
    const float h0 = lane == 0 ? carry : prev;
    carry = __shfl_sync(0xffffffffu, incl, 31);
    return h0;
}

// B and C of a window into shared memory (zero past the end and for states past N), one 16-byte vector of one
// state per thread and pass: the thread's vectors are state i / (WIN / BCV), steps BCV (i % (WIN / BCV)) of the
// window for i = tid + k TP_THREADS.
constexpr int NBV = (NS * WIN / BCV + TP_THREADS - 1) / TP_THREADS;
// Vector k of thread tid: state n, steps from t of the window; false for a vector past the window's last state.
__device__ __forceinline__ bool tp_bc_vec(int tid, int k, int &n, int &t) {
    const int i = tid + k * TP_THREADS;
    n = i / (WIN / BCV);
    t = (i % (WIN / BCV)) * BCV;
    return i < NS * WIN / BCV;
}

__device__ __forceinline__ void tp_fetch_bc(uint4 *rB, uint4 *rC, const bc_t *Bg, const bc_t *Cg, long long s_Bn,
                                            long long s_Cn, int t0, int L, int N, bool vec, bool want_c, int tid) {
#pragma unroll
    for (int k = 0; k < NBV; ++k) {
        int n, t;
        const bool ok = tp_bc_vec(tid, k, n, t) && n < N;
        t += t0;
        rB[k] = fetch16(Bg + n * s_Bn, t, L, vec, ok);
        if (want_c) rC[k] = fetch16(Cg + n * s_Cn, t, L, vec, ok);
    }
}

__device__ __forceinline__ void tp_stage_bc(float (*s_B)[WP], float (*s_C)[WP], const uint4 *rB, const uint4 *rC,
                                            bool want_c, int tid) {
#pragma unroll
    for (int k = 0; k < NBV; ++k) {
        int n, t;
        if (tp_bc_vec(tid, k, n, t)) {
            float fb[BCV], fc[BCV];
            unpack16<BC_KIND>(rB[k], fb);
            if (want_c) unpack16<BC_KIND>(rC[k], fc);
#pragma unroll
            for (int e = 0; e < BCV; e += 4) {
                *reinterpret_cast<float4 *>(&s_B[n][SIDX(t + e)]) =
                    make_float4(fb[e], fb[e + 1], fb[e + 2], fb[e + 3]);
                if (want_c)
                    *reinterpret_cast<float4 *>(&s_C[n][SIDX(t + e)]) =
                        make_float4(fc[e], fc[e + 1], fc[e + 2], fc[e + 3]);
            }
        }
    }
}
#endif

#if defined(SS_ONLY) && SS_ONLY == 2
extern "C" __global__ void __launch_bounds__(TP_THREADS, SS_TP_MINB)
ssm_fwd_tp(const in_t *__restrict__ u, const in_t *__restrict__ dt, const float *__restrict__ A,
           const bc_t *__restrict__ Bm, const bc_t *__restrict__ Cm, const float *__restrict__ Dv,
           const in_t *__restrict__ z, const float *__restrict__ bias,
           in_t *__restrict__ out, float *__restrict__ last, float *__restrict__ ckpt,
           int dim, int L, int N, int dpg, int n_dblk, int n_ckpt, int vec,
           long long s_ub, long long s_ud, long long s_tb, long long s_td, long long s_Ad, long long s_An,
           long long s_Bb, long long s_Bg, long long s_Bn, long long s_Cb, long long s_Cg, long long s_Cn,
           long long s_zb, long long s_zd, long long s_ob, long long s_od) {
    // blockIdx: x = group * n_dblk + channel block, y = batch.
    __shared__ __align__(16) float s_B[NS][WP];
    __shared__ __align__(16) float s_C[STORE_OUT ? NS : 1][WP];
    const int tid = threadIdx.x, lane = tid & 31;
    const int blk = blockIdx.x, g = blk / n_dblk, c = (blk % n_dblk) * DB + tid / 32;
    const long long b = blockIdx.y;
    const bool valid_d = c < dpg;
    const int d = g * dpg + min(c, dpg - 1);
    float A2[NS], carry[NS];
#pragma unroll
    for (int k = 0; k < NS; ++k) {
        A2[k] = (valid_d && k < N) ? A[d * s_Ad + k * s_An] * LOG2E : 0.f;
        carry[k] = 0.f;
    }
    const float Dd = HAS_D ? Dv[d] : 0.f;
    const float bias_d = HAS_BIAS ? bias[d] : 0.f;
    const in_t *p_u = u + b * s_ub + d * s_ud, *p_dt = dt + b * s_tb + d * s_td;
    const bc_t *Bg = Bm + b * s_Bb + g * s_Bg, *Cg = Cm + b * s_Cb + g * s_Cg;
    const int n_win = (L + WIN - 1) / WIN;
    // The inputs of a window are loaded into registers raw: this thread's B/C vectors, its lane's delta and u; with
    // TP_PF bit 1 (B/C) or 2 (delta, u), the next window's while the current one is computed.
    uint4 rB[NBV], rC[NBV], rdt[T / VEC], ru[T / VEC];
    constexpr bool PF_BC = (SS_TP_PF & 1) != 0 || SS_TP_BCA, PF_ROWS = (SS_TP_PF & 2) != 0;
#if SS_TP_BCA
    // TP_BCA (B/C rows aligned, L a whole number of vectors: the launcher checks): the next window's B/C vectors go
    // by cp.async into this thread's own slots of shared memory, not registers held through the window.  The thread
    // converts the same vectors when the window starts, so only its own copies need to have landed, and it has read
    // a slot into registers (and used them) before it copies the next window into it: one buffer.
    __shared__ __align__(16) uint4 s_raw[1 + STORE_OUT][NBV][TP_THREADS];
    auto fetch_bc = [&](int t0) {
#pragma unroll
        for (int k = 0; k < NBV; ++k) {
            int n, t;
            const bool real = tp_bc_vec(tid, k, n, t);
            t += t0;
            const bool ok = real && n < N && t < L;
            const long long lo = REVERSE ? L - t - BCV : t;
            cp_async16((unsigned)__cvta_generic_to_shared(&s_raw[0][k][tid]), ok ? Bg + n * s_Bn + lo : Bg, ok);
            if (STORE_OUT)
                cp_async16((unsigned)__cvta_generic_to_shared(&s_raw[STORE_OUT][k][tid]),
                           ok ? Cg + n * s_Cn + lo : Cg, ok);
        }
        cp_async_commit();
    };
    // This window's vectors from the slots, in step order (reversed within the vector when REVERSE).
    auto take_bc = [&]() {
        cp_async_wait_all();
#pragma unroll
        for (int k = 0; k < NBV; ++k) {
            const uint4 vb = s_raw[0][k][tid], vc = STORE_OUT ? s_raw[STORE_OUT][k][tid] : vb;
            rB[k] = REVERSE ? rev16<bc_t>(vb) : vb;
            rC[k] = REVERSE ? rev16<bc_t>(vc) : vc;
        }
    };
#else
    auto fetch_bc = [&](int t0) {
        tp_fetch_bc(rB, rC, Bg, Cg, s_Bn, s_Cn, t0, L, N, (vec & 2) != 0, STORE_OUT, tid);
    };
    auto take_bc = [&]() {};
#endif
    auto fetch_rows = [&](int t0) {
#pragma unroll
        for (int k = 0; k < T / VEC; ++k) {
            rdt[k] = fetch16(p_dt, t0 + lane * T + k * VEC, L, (vec & 1) != 0, true);
            ru[k] = fetch16(p_u, t0 + lane * T + k * VEC, L, (vec & 1) != 0, true);
        }
    };
    if (PF_BC) fetch_bc(0);
    if (PF_ROWS) fetch_rows(0);
#if SS_TP_GPF
    // Prefetch addresses at window 0 (moved by the window's first step): this lane's first step; for thread i of
    // the block, line i % LPR of state i / (2 LPR)'s B (C when (i / LPR) is odd), if that state exists.
    constexpr int EPL = 128 / sizeof(bc_t), LPR = (WIN + EPL - 1) / EPL;      // elements per line, lines per row
    const in_t *pf_dt = p_dt + POS(lane * T), *pf_u = p_u + POS(lane * T);
    const in_t *pf_z = HAS_Z ? z + b * s_zb + d * s_zd + POS(lane * T) : nullptr;
    const int pf_n = tid / ((1 + STORE_OUT) * LPR), pf_m = (tid / LPR) % (1 + STORE_OUT), pf_off = (tid % LPR) * EPL;
    const bc_t *pf_bc = (pf_n < N && pf_n < NS) ? (pf_m ? Cg + pf_n * s_Cn : Bg + pf_n * s_Bn) + POS(pf_off) : nullptr;
#endif
    for (int wi = 0; wi < n_win; ++wi) {
        const int t0 = wi * WIN, tl = t0 + lane * T;
        if (!PF_BC) fetch_bc(t0);
        if (!PF_ROWS) fetch_rows(t0);
#if SS_TP_GPF
        // The next window's inputs towards the cache while this one is computed: the line of this lane's first step
        // of delta, u (and z), and one line per thread of the block's B (and C) rows.
        if (tl + WIN < L) {
            const long long o = REVERSE ? -(long long)(t0 + WIN) : (long long)(t0 + WIN);
            prefetch_line(pf_dt + o);
            prefetch_line(pf_u + o);
            if (HAS_Z && STORE_OUT) prefetch_line(pf_z + o);
        }
        if (pf_bc && t0 + WIN + pf_off < L) prefetch_line(pf_bc + (REVERSE ? -(long long)(t0 + WIN) : t0 + WIN));
#endif
        float dtv[T], uv[T];
#pragma unroll
        for (int k = 0; k < T / VEC; ++k) {
            unpack16<IN_KIND>(rdt[k], dtv + k * VEC);
            unpack16<IN_KIND>(ru[k], uv + k * VEC);
        }
        if (PF_ROWS && wi + 1 < n_win) fetch_rows(t0 + WIN);
        __syncthreads();                 // the previous window's reads of s_B / s_C are done
        take_bc();
        tp_stage_bc(s_B, STORE_OUT ? s_C : s_B, rB, rC, STORE_OUT, tid);
        if (PF_BC && wi + 1 < n_win) fetch_bc(t0 + WIN);
        // delta after bias / softplus (0 past the end: the state passes through), delta * u, and delta's running sum.
        // TP_FASTMASK: the lane's steps left (none for a channel past the group) once per window, then one compare
        // per step with a constant (the two tests per step took 4 instructions).
        const int left = SS_TP_FASTMASK ? (valid_d ? L - tl : 0) : 0;
        float dtu[T], y[T], sum = 0.f;
#pragma unroll
        for (int j = 0; j < T; ++j) {
            float v = dtv[j];
            if (HAS_BIAS) v += bias_d;
            if (SOFTPLUS) v = softplus_f(v);
            if (SS_TP_FASTMASK) v = j < left ? v : 0.f;
            else v = (valid_d && tl + j < L) ? v : 0.f;
            dtv[j] = v;
            dtu[j] = v * uv[j];
            sum += v;
            y[j] = 0.f;
        }
        __syncthreads();
        const int col = (T + 4) * lane;          // SIDX(lane * T)
        const bool at_ckpt = valid_d && tl < L && tl % CK == 0;    // the state before step tl: checkpoint tl / CK
        // One state at a time: its decays a_j and inputs dt_j u_j B_j over the lane's steps (in registers), the
        // lane's end state from a zero state, the start states from a scan over the lanes, then the true states
        // h_j = a_j h_{j-1} + dt_j u_j B_j and their part C_j h_j of the outputs.  One exp2 per state-step.
#pragma unroll
        for (int k = 0; k < NS; ++k) {
            float a[T], bu[T], H = 0.f;
            tp_state_inputs(a, bu, s_B[k], col, dtv, dtu, A2[k]);
#pragma unroll
            for (int j = 0; j < T; ++j) H = fmaf(a[j], H, bu[j]);
            const float h0 = tp_lane_start(exp2f(A2[k] * sum), H, carry[k], lane);
#if STORE_CKPT
            if (at_ckpt && k < N) ckpt[((b * dim + d) * (long long)n_ckpt + tl / CK) * N + k] = h0;
#endif
#if STORE_OUT
            tp_state_outputs(h0, a, bu, s_C[k], col, y);
#endif
        }
#if STORE_OUT
        // D u and the z gate.
        // u and z are read again here (cache hits) rather than held in registers through the window.
        if (HAS_D) {
            tp_load_row(uv, p_u, tl, L, vec & 1);
#pragma unroll
            for (int j = 0; j < T; ++j) y[j] = fmaf(Dd, uv[j], y[j]);
        }
#if HAS_Z
        tp_load_row(uv, z + b * s_zb + d * s_zd, tl, L, vec & 1);
#pragma unroll
        for (int j = 0; j < T; ++j) y[j] *= uv[j] * sigmoid_f(uv[j]);
#endif
        if (valid_d) tp_store_row(out + b * s_ob + d * s_od, y, tl, L, vec & 1);
#endif
    }
    if (valid_d && lane == 0) {
#pragma unroll
        for (int k = 0; k < NS; ++k)
            if (k < N) last[(b * dim + d) * N + k] = carry[k];
    }
}
#endif

// Time-parallel backward, the same split as ssm_fwd_tp (a warp per channel, lane l owns T steps of a window of
// 32 T), walking the windows from the end.  Per window (with z, a first pass over the states gives the outputs, so
// dz and dy), and per state, one at a time (its decays and inputs in registers: one exp2 per state-step):
//   1. each lane's start state: the checkpoint of its chunk (CK = T), or with CK = 2 T for odd lanes the even
//      lane's end state from it (the even lane's steps from a zero state, shifted over by one lane);
//   2. the lane's true states h_j from there (kept in registers);
//   3. the reverse recurrence G_j = C_j dy_j + a_{j+1} G_{j+1} of dh: from a zero dh each lane's (decay, dh it
//      passes on), scanned over the lanes from the last (lane 31 gets the carry from the window after), gives the dh
//      entering each lane; then the lane walks its steps back from it:
//        w = G a_j h_{j-1} = G (h_j - dt B u),  dA += w dt,  du = dt sum_n G B + D dy,
//        ddelta = (u sum_n G B + sum_n w A) softplus',  dB_j = sum_d G dt u,  dC_j = sum_d h dy;
//      dB and dC are summed over the block's channels in shared memory and added to memory (atomics: the other
//      blocks of the group add to the same values).
#if defined(SS_ONLY) && SS_ONLY == 3
static_assert(T % 4 == 0 && (CK == T || CK == 2 * T), "TP backward: checkpoints every T or 2 T steps");
#ifndef SS_TP_BU
#define SS_TP_BU 2                       // unrolling of the state loop (the per-state values live in shared memory)
#endif
constexpr int TP_BU = SS_TP_BU;
#define RPITCH (T + 4)                   // s_red row pitch of a lane's steps: float4 stores hit distinct bank quads
// A state's value before the lane's first step: the checkpoint hc of the lane's chunk, or with CK = 2 T for odd
// lanes the even lane's end state from it (the even lane's steps from a zero state, shifted over by one lane).
__device__ __forceinline__ float tp_bwd_start(const float *a, const float *bu, float hc, float A2k, float sum,
                                              int lane) {
    if (CK == T) return hc;
    float Hz = 0.f;
#pragma unroll
    for (int j = 0; j < T; ++j) Hz = fmaf(a[j], Hz, bu[j]);
    const float sum_prev = __shfl_up_sync(0xffffffffu, sum, 1), hz_prev = __shfl_up_sync(0xffffffffu, Hz, 1);
    return (lane & 1) ? fmaf(exp2f(A2k * sum_prev), hc, hz_prev) : hc;
}

// Adds the block's dB (s_red[0]) or dC (s_red[1]) partials of one state, summed over its channels (warps), to the
// state's rows of dB and dC at the window from t0: a 16-byte vector of 4 steps per thread and pass where L allows.
__device__ __forceinline__ void tp_add_dbc(const float (*s_red)[DB][32 * RPITCH], float *dB_k, float *dC_k, int t0,
                                           int L, int tid) {
#pragma unroll
    for (int i = tid; i < 2 * 32 * (T / 4); i += TP_THREADS) {
        const int which = i / (32 * (T / 4)), ls = (i / (T / 4)) % 32, q = 4 * (i % (T / 4));
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int w2 = 0; w2 < DB; ++w2) {
            const float4 x = *reinterpret_cast<const float4 *>(&s_red[which][w2][RPITCH * ls + q]);
            v.x += x.x; v.y += x.y; v.z += x.z; v.w += x.w;
        }
        float *row_k = which ? dC_k : dB_k;
        const int t = t0 + ls * T + q;
        if (t + 3 < L && L % 4 == 0) {
            // the 4 steps at 4 aligned positions (L % 4 == 0); reversed, position POS(t + 3) is the lowest
            float *p = row_k + (REVERSE ? POS(t + 3) : POS(t));
            const float4 m = REVERSE ? make_float4(v.w, v.z, v.y, v.x) : v;
#if __CUDA_ARCH__ >= 900
            asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" :: "l"(p), "f"(m.x), "f"(m.y), "f"(m.z),
                         "f"(m.w) : "memory");
#else
            atomicAdd(p, m.x); atomicAdd(p + 1, m.y); atomicAdd(p + 2, m.z); atomicAdd(p + 3, m.w);
#endif
        } else {
            const float f[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (t + e < L) atomicAdd(row_k + POS(t + e), f[e]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(TP_THREADS, SS_TP_MINB)
ssm_bwd_tp(const in_t *__restrict__ u, const in_t *__restrict__ dt, const float *__restrict__ A,
           const bc_t *__restrict__ Bm, const bc_t *__restrict__ Cm, const float *__restrict__ Dv,
           const in_t *__restrict__ z, const float *__restrict__ bias, const in_t *__restrict__ dout,
           const float *__restrict__ ckpt,
           in_t *__restrict__ du, in_t *__restrict__ ddt, float *__restrict__ dA, float *__restrict__ dB,
           float *__restrict__ dC, float *__restrict__ dD, in_t *__restrict__ dz, float *__restrict__ dbias,
           int dim, int L, int N, int dpg, int n_dblk, int n_ckpt, int G, int vec,
           long long s_ub, long long s_ud, long long s_tb, long long s_td, long long s_Ad, long long s_An,
           long long s_Bb, long long s_Bg, long long s_Bn, long long s_Cb, long long s_Cg, long long s_Cn,
           long long s_zb, long long s_zd, long long s_gb, long long s_gd) {
    __shared__ __align__(16) float s_B[NS][WP];
    __shared__ __align__(16) float s_C[NS][WP];
    __shared__ __align__(16) float s_red[2][DB][32 * RPITCH];    // (dB | dC, warp, lane-step) partials of a state
    // Per state (the state loop is not unrolled, so these live here rather than in registers): A log2(e) and the
    // dh carried between windows (one per channel), the lane's dA partial sum and its chunk's checkpoint.
    __shared__ float s_A2[DB][NS], s_carry[DB][NS], s_dA[DB][NS][32], s_hc[DB][NS][32];
    const int tid = threadIdx.x, lane = tid & 31, wp = tid / 32;
    const int blk = blockIdx.x, g = blk / n_dblk, c = (blk % n_dblk) * DB + wp;
    const long long b = blockIdx.y;
    const bool valid_d = c < dpg;
    const int d = g * dpg + min(c, dpg - 1);
#pragma unroll
    for (int k = 0; k < NS; ++k) {
        if (lane == 0) {
            s_A2[wp][k] = (valid_d && k < N) ? A[d * s_Ad + k * s_An] * LOG2E : 0.f;
            s_carry[wp][k] = 0.f;
        }
        s_dA[wp][k][lane] = 0.f;
    }
    const float Dd = HAS_D ? Dv[d] : 0.f;
    const float bias_d = HAS_BIAS ? bias[d] : 0.f;
    float dD_acc = 0.f, dbias_acc = 0.f;
    const in_t *p_u = u + b * s_ub + d * s_ud, *p_dt = dt + b * s_tb + d * s_td, *p_g = dout + b * s_gb + d * s_gd;
    const bc_t *Bg = Bm + b * s_Bb + g * s_Bg, *Cg = Cm + b * s_Cb + g * s_Cg;
    const long long row = (b * dim + d) * (long long)L;          // du, ddelta, dz: (b, d, L) contiguous
    float *dBg = dB + (b * G + g) * (long long)N * L, *dCg = dC + (b * G + g) * (long long)N * L;
    const bool vrow = (vec & 1) != 0;
    const int n_win = (L + WIN - 1) / WIN;
    const int col = (T + 4) * lane;          // SIDX(lane * T)
    for (int wi = n_win - 1; wi >= 0; --wi) {
        const int t0 = wi * WIN, tl = t0 + lane * T;
        uint4 rB[NBV], rC[NBV];
        tp_fetch_bc(rB, rC, Bg, Cg, s_Bn, s_Cn, t0, L, N, (vec & 2) != 0, true, tid);
        float dtv[T], uv[T], dyv[T], sg[T];
        tp_load_row(dtv, p_dt, tl, L, vrow);
        tp_load_row(uv, p_u, tl, L, vrow);
        tp_load_row(dyv, p_g, tl, L, vrow);
#pragma unroll
        for (int k = 0; k < NS; ++k)             // the checkpoint of the lane's chunk
            s_hc[wp][k][lane] =
                (valid_d && tl < L && k < N) ? ckpt[((b * dim + d) * (long long)n_ckpt + tl / CK) * N + k] : 0.f;
        __syncthreads();                         // the previous window's reads of s_B, s_C are done
        tp_stage_bc(s_B, s_C, rB, rC, true, tid);
        float dtu[T], sum = 0.f;
#pragma unroll
        for (int j = 0; j < T; ++j) {
            float v = dtv[j];
            if (HAS_BIAS) v += bias_d;
            sg[j] = SOFTPLUS ? sigmoid_f(v) : 1.f;
            if (SOFTPLUS) v = softplus_f(v);
            v = (valid_d && tl + j < L) ? v : 0.f;
            dtv[j] = v;
            dtu[j] = v * uv[j];
            sum += v;
        }
        __syncthreads();
        // One state at a time (one exp2 per state-step; no T x NS arrays).  With z, the outputs need every state's
        // states first: a pass over the states for y, then dz and dy.
        float q[T], r[T];                        // sum_n G B, sum_n w A of the lane's steps
#pragma unroll
        for (int j = 0; j < T; ++j) q[j] = r[j] = 0.f;
#if HAS_Z
        {
            float y[T], zv[T];
#pragma unroll
            for (int j = 0; j < T; ++j) y[j] = 0.f;
#pragma unroll TP_BU
            for (int k = 0; k < N; ++k) {
                float a[T], bu[T];
                const float A2k = s_A2[wp][k];
                tp_state_inputs(a, bu, s_B[k], col, dtv, dtu, A2k);
                tp_state_outputs(tp_bwd_start(a, bu, s_hc[wp][k][lane], A2k, sum, lane), a, bu, s_C[k], col, y);
            }
            tp_load_row(zv, z + b * s_zb + d * s_zd, tl, L, vrow);
#pragma unroll
            for (int j = 0; j < T; ++j) {
                const float zz = zv[j], sz = sigmoid_f(zz), gv = dyv[j];
                const float yv = HAS_D ? fmaf(Dd, uv[j], y[j]) : y[j];
                zv[j] = gv * yv * sz * (1.f + zz * (1.f - sz));        // dz
                dyv[j] = gv * zz * sz;
            }
            if (valid_d) tp_store_row(dz + row, zv, tl, L, vrow);
        }
#endif
        if (HAS_D) {
#pragma unroll
            for (int j = 0; j < T; ++j) dD_acc = fmaf(dyv[j], uv[j], dD_acc);      // zero past the end (dy = 0)
        }
#pragma unroll TP_BU
        for (int k = 0; k < N; ++k) {
            // 1, 2. The state's decays and inputs, its start state and true states over the lane's steps.
            float a[T], bu[T], hs[T], cc[T];
            const float A2k = s_A2[wp][k];
            tp_state_inputs(a, bu, s_B[k], col, dtv, dtu, A2k);
            float h = tp_bwd_start(a, bu, s_hc[wp][k][lane], A2k, sum, lane);
#pragma unroll
            for (int j = 0; j < T; ++j) hs[j] = h = fmaf(a[j], h, bu[j]);
            // 3. dh: the lane's (total decay, dh passed to the lane before) from a zero dh, scanned over the lanes
            // from the last (lane l's dh out is P_l (dh in) + H_l, dh in = lane l+1's out), ...
#pragma unroll
            for (int qq = 0; qq < T; qq += 4) {
                const float4 cq = *reinterpret_cast<const float4 *>(&s_C[k][col + qq]);
                cc[qq] = cq.x; cc[qq + 1] = cq.y; cc[qq + 2] = cq.z; cc[qq + 3] = cq.w;
            }
            float Gz = 0.f;
#pragma unroll
            for (int j = T - 1; j >= 0; --j) Gz = fmaf(cc[j], dyv[j], Gz) * a[j];
            const float carry = s_carry[wp][k];
            const float out = lane_scan<false>(exp2f(A2k * sum), Gz, carry, lane);
            const float next = __shfl_down_sync(0xffffffffu, out, 1);
            float E = lane == 31 ? carry : next;
            if (lane == 0) s_carry[wp][k] = out;     // every lane has read the old carry before the shuffle above
            // ... then the lane's steps back from the dh entering it, four at a time: w = G a_j h_{j-1} =
            // G (h_j - dt u B), and the steps' dB, dC parts (G dt u, h dy) go to shared memory as they come.
            float dA_k = 0.f;
            __syncthreads();                     // the previous state's reads of s_red are done
#pragma unroll
            for (int qq = T - 4; qq >= 0; qq -= 4) {
                const float4 bq = *reinterpret_cast<const float4 *>(&s_B[k][col + qq]);
                const float bb[4] = {bq.x, bq.y, bq.z, bq.w};
                float pb[4], pc[4];
#pragma unroll
                for (int e = 3; e >= 0; --e) {
                    const int j = qq + e;
                    E = fmaf(cc[j], dyv[j], E);
                    const float w = E * (hs[j] - bu[j]);
                    dA_k = fmaf(w, dtv[j], dA_k);
                    q[j] = fmaf(E, bb[e], q[j]);
                    r[j] = fmaf(w, A2k, r[j]);
                    pb[e] = E * dtu[j];
                    pc[e] = hs[j] * dyv[j];
                    E *= a[j];
                }
                float *red0 = &s_red[0][wp][RPITCH * lane + qq], *red1 = &s_red[1][wp][RPITCH * lane + qq];
                *reinterpret_cast<float4 *>(red0) = make_float4(pb[0], pb[1], pb[2], pb[3]);
                *reinterpret_cast<float4 *>(red1) = make_float4(pc[0], pc[1], pc[2], pc[3]);
            }
            s_dA[wp][k][lane] += dA_k;
            // dB, dC of the state: summed over the block's channels, added to memory.
            __syncthreads();
            if (k < N) tp_add_dbc(s_red, (dBg + (long long)k * L), (dCg + (long long)k * L), t0, L, tid);
        }
        // du = dt sum_n G B + D dy, ddelta = (u sum_n G B + sum_n w A) softplus'.
        // (u is read again here, a cache hit, rather than held in registers through the states.)
        float dus[T], dds[T], uw[T];
        tp_load_row(uw, p_u, tl, L, vrow);
#pragma unroll
        for (int j = 0; j < T; ++j) {
            dus[j] = fmaf(Dd, HAS_D ? dyv[j] : 0.f, dtv[j] * q[j]);
            dds[j] = fmaf(uw[j], q[j], r[j] * 0.6931471805599453f) * sg[j];
            if (tl + j < L) dbias_acc += dds[j];
        }
        if (valid_d) {
            tp_store_row(du + row, dus, tl, L, vrow);
            tp_store_row(ddt + row, dds, tl, L, vrow);
        }
    }
    // dA, dD, dbias: sums over the lanes (and, through atomics, over the batch).
#pragma unroll
    for (int m = 16; m >= 1; m /= 2) {
        dD_acc += __shfl_xor_sync(0xffffffffu, dD_acc, m);
        dbias_acc += __shfl_xor_sync(0xffffffffu, dbias_acc, m);
    }
    __syncwarp();
    if (valid_d && lane < N) {                   // lane k: state k's dA
        float v = 0.f;
#pragma unroll 8
        for (int l = 0; l < 32; ++l) v += s_dA[wp][lane][l];
        atomicAdd(dA + d * N + lane, v);
    }
    if (valid_d && lane == 0) {
        if (HAS_D) atomicAdd(dD + d, dD_acc);
        if (HAS_BIAS) atomicAdd(dbias + d, dbias_acc);
    }
}
#endif

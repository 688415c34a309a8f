#!/usr/bin/env python
"""Network-level GPU benchmark: training step and inference of the four networks, reference vs fast paths.

One call builds, checks and times everything and prints one table per section:

* **reference** (``ref``): what the official repositories run -- fp32 with TF32 off, mamba_ssm's CUDA selective
  scan (built here from its sdist with ``--mamba-src``, for this GPU's arch only, in a background process while
  the fast paths are measured), BasicSR's ``torch.optim.Adam`` with PyTorch's default (multi-tensor, not fused)
  implementation, eager execution;
* fast paths of this package, each a combination of
  ``tf32`` (TF32 tensor-core matmuls/convs), ``bf16`` (bf16 autocast), ``triton`` (our Triton scan, no compile
  step), fused Adam (``fused=True``, capturable) and ``graph`` (the whole training step -- forward, L1 loss,
  backward, Adam -- or the whole inference forward captured once in a CUDA graph and replayed), and ``compile``
  (torch.compile of the network; first call compiles, ~100 s per network on an H100).
Modes (``MODES``): ref, fp32-triton, fp32-triton-graph, tf32-triton, tf32-triton-graph, bf16-triton-graph,
tf32-triton-compile-graph, the same with ``cuda`` (our NVRTC-compiled CUDA scan) in place of ``triton``, and
tf32-mamba-graph (the fast path with mamba_ssm's scan: shows what our scan costs against mamba_ssm's).
Results: docs/benchmarks.md.

Measured per network and mode, at the issue's batch sizes (x2, LR 64x64 patches):
training step time (median of timed steps, CUDA-synchronised), images/s, peak allocated memory, GPU busy fraction
(union of GPU kernel/copy intervals over the span of 5 profiled steps, from torch.profiler), and inference latency
on one 256x256 LR image with the max |difference| of the output from the reference path (same weights).
``--curve-steps N`` also trains N steps on a fixed synthetic image bank (same batches for every run) and reports the
mean L1 loss of the last 50 steps for: reference seed 0, reference seed 1 (run-to-run noise), each fast mode seed 0.

Usage (on a CUDA machine, repository root):
    python scripts/bench_networks_gpu.py --out $OUT --mamba-src .mamba_src/mamba_ssm-2.3.2.post1
    python scripts/bench_networks_gpu.py --nets MMA-B --modes ref tf32-triton-graph --steps 20
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'scripts'))

from mamba_sr_archs.archs.mambairv2_arch import MambaIRv2, MambaIRv2Light  # noqa: E402
from mamba_sr_archs.archs.mma_arch import MMA  # noqa: E402
from mamba_sr_archs.archs.mpsi_arch import MPSI  # noqa: E402
from mamba_sr_archs.infer import PRESETS  # noqa: E402
import mamba_sr_archs.ops.selective_scan  # noqa: E402,F401  (the module; ops re-exports the function)
from bench_gpu import log, parse_override, write_results  # noqa: E402  (shared by both GPU benchmarks)

ss = sys.modules['mamba_sr_archs.ops.selective_scan']

# name -> (class, preset, training batch).  Official measurements from the issue (H100, official code, fp32,
# mamba_ssm 2.3.2.post1): training step ms, img/s, peak GB, inference ms at LR 256x256.
NETS = {
    'MambaIRv2-light': (MambaIRv2Light, PRESETS['MambaIRv2Light']['light'], 16),
    'MambaIRv2-B': (MambaIRv2, PRESETS['MambaIRv2']['B'], 4),
    'MMA-B': (MMA, PRESETS['MMA']['B'], 4),
    'MPSI': (MPSI, PRESETS['MPSI']['default'], 8),
}
OFFICIAL = {
    'MambaIRv2-light': dict(step_ms=305, img_s=52.5, peak_gb=15.0, infer_ms=135),
    'MambaIRv2-B': dict(step_ms=481, img_s=8.3, peak_gb=25.1, infer_ms=442),
    'MMA-B': dict(step_ms=218, img_s=18.3, peak_gb=13.0, infer_ms=146),
    'MPSI': dict(step_ms=159, img_s=50.3, peak_gb=6.8, infer_ms=345),
}
# mode -> settings.  'ref' is the official-equivalent path.
MODES = {
    'ref': dict(tf32=False, bf16=False, scan='mamba_ssm', fused_adam=False, graph=False),
    'tf32-triton-compile-graph': dict(tf32=True, bf16=False, scan='triton', fused_adam=True, graph=True,
                                      compile=True),
    'fp32-triton': dict(tf32=False, bf16=False, scan='triton', fused_adam=True, graph=False),
    'fp32-triton-graph': dict(tf32=False, bf16=False, scan='triton', fused_adam=True, graph=True),
    'tf32-triton': dict(tf32=True, bf16=False, scan='triton', fused_adam=True, graph=False),
    'tf32-triton-graph': dict(tf32=True, bf16=False, scan='triton', fused_adam=True, graph=True),
    'bf16-triton-graph': dict(tf32=True, bf16=True, scan='triton', fused_adam=True, graph=True),
    'tf32-mamba-graph': dict(tf32=True, bf16=False, scan='mamba_ssm', fused_adam=True, graph=True),
    # our NVRTC-compiled CUDA scan (mamba_sr_archs.ops.cuda_scan) in place of the Triton one
    'fp32-cuda-graph': dict(tf32=False, bf16=False, scan='cuda', fused_adam=True, graph=True),
    'tf32-cuda-graph': dict(tf32=True, bf16=False, scan='cuda', fused_adam=True, graph=True),
    'bf16-cuda-graph': dict(tf32=True, bf16=True, scan='cuda', fused_adam=True, graph=True),
    'tf32-cuda-compile-graph': dict(tf32=True, bf16=False, scan='cuda', fused_adam=True, graph=True,
                                    compile=True),
    # ``train: {lean_memory: true}``: MMA/MPSI Mamba directions through ops.mamba_inner (fewer saved activations)
    'tf32-cuda-graph-lean': dict(tf32=True, bf16=False, scan='cuda', fused_adam=True, graph=True, lean=True),
    'bf16-cuda-graph-lean': dict(tf32=True, bf16=True, scan='cuda', fused_adam=True, graph=True, lean=True),
    'tf32-cuda-compile-graph-lean': dict(tf32=True, bf16=False, scan='cuda', fused_adam=True, graph=True,
                                         compile=True, lean=True),
    'bf16-cuda-compile-graph-lean': dict(tf32=True, bf16=True, scan='cuda', fused_adam=True, graph=True,
                                         compile=True, lean=True),
    # lean level 1: the scan checkpoints kept from the forward (``lean_memory: 1``; True means level 2)
    'tf32-cuda-compile-graph-lean1': dict(tf32=True, bf16=False, scan='cuda', fused_adam=True, graph=True,
                                          compile=True, lean=1),
    'tf32-cuda-graph-lean1': dict(tf32=True, bf16=False, scan='cuda', fused_adam=True, graph=True, lean=1),
    # compile with AOT autograd's activation memory budget (the partitioner recomputes more, saves less)
    'tf32-cuda-compile-graph-mem50': dict(tf32=True, bf16=False, scan='cuda', fused_adam=True, graph=True,
                                          compile=True, mem_budget=0.5),
    # the Triton forward without splitting long sequences into segments (triton_scan.num_segments)
    'tf32-triton-graph-noseg': dict(tf32=True, bf16=False, scan='triton', fused_adam=True, graph=True,
                                    triton_override={'fwd': {'SEGMENTS': 1}}),
}
SCALE = 2


# --------------------------------------------------------------------------------------------------- set-up

def install_mamba_backend(ext):
    """Route the package's 'mamba_ssm' scan backend to the freshly built selective_scan_cuda extension."""
    from bench_gpu import make_mamba_fn
    fn = make_mamba_fn(ext)

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
        if return_last_state:
            raise NotImplementedError('benchmark wrapper: return_last_state is not used by the networks')
        # as mamba_ssm's selective_scan_fn does: its kernel needs unit stride along the sequence
        u, delta, B, C = (t if t.stride(-1) == 1 else t.contiguous() for t in (u, delta, B, C))
        if z is not None and z.stride(-1) != 1:
            z = z.contiguous()
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    ss._IMPORTS['mamba_ssm'] = (selective_scan_fn, None)


def apply_mode(mode):
    cfg = MODES[mode]
    torch.backends.cuda.matmul.allow_tf32 = cfg['tf32']
    torch.backends.cudnn.allow_tf32 = cfg['tf32']
    torch.backends.cudnn.benchmark = True   # BasicSR's train.py sets it too
    os.environ[ss.ENV_VAR] = cfg['scan']
    from mamba_sr_archs.ops import cuda_scan, triton_scan
    import torch._functorch.config as functorch_config
    functorch_config.activation_memory_budget = cfg.get('mem_budget', 1.0)
    cuda_scan._CONFIG_OVERRIDE.clear()
    if mode != 'ref':
        cuda_scan._CONFIG_OVERRIDE.update(SCAN_OVERRIDE)
    triton_scan._CONFIG_OVERRIDE.clear()
    triton_scan._CONFIG_OVERRIDE.update(cfg.get('triton_override', {}))
    return cfg


SCAN_OVERRIDE = {}   # --scan-override


def seg_sweep(name, settings, iters):
    """{'WARPS:MAX': ms} of compiled TF32 inference on one LR 256x256 image (one compile, one CUDA graph per
    setting: the launch configuration is fixed at capture)."""
    from mamba_sr_archs.ops import cuda_scan
    _, fwd = infer_forward(name, apply_mode('tf32-cuda-compile-graph'))
    fwd()
    res = {}
    for setting in settings:
        warps, most = (int(v) for v in setting.split(':'))
        cuda_scan._CONFIG_OVERRIDE.update(SEG_WARPS=warps, SEG_MAX=most)
        g, _ = capture_graph(fwd, 1)
        res[setting] = cuda_time_ms(g.replay, iters)
        del g
    cuda_scan._CONFIG_OVERRIDE.clear()
    return res


def build_net(name, seed=0, lean=False):
    cls, preset, _ = NETS[name]
    torch.manual_seed(seed)
    net = cls(**dict(preset, upscale=SCALE)).cuda()
    for m in net.modules():            # what MambaSRModel's train: {lean_memory: true} does
        if hasattr(m, 'lean_memory'):
            m.lean_memory = lean
    return net


def make_optimizer(net, cfg):
    # BasicSR's optim_g of the official configs: Adam, lr 2e-4, betas (0.9, 0.99), weight_decay 0.
    kw = dict(lr=2e-4, betas=(0.9, 0.99), weight_decay=0)
    if cfg['fused_adam']:
        kw.update(fused=True, capturable=cfg['graph'])
    return torch.optim.Adam([p for p in net.parameters() if p.requires_grad], **kw)


def synthetic_bank(n=48, size=192, seed=1234):
    """Deterministic bank of smooth-plus-detail RGB images in [0, 1] on the GPU (for loss curves)."""
    g = torch.Generator(device='cuda').manual_seed(seed)
    imgs = torch.zeros(n, 3, size, size, device='cuda')
    for res, amp in ((6, 0.5), (24, 0.25), (96, 0.1)):
        noise = torch.randn(n, 3, res, res, device='cuda', generator=g)
        imgs += amp * F.interpolate(noise, size=(size, size), mode='bicubic', align_corners=False)
    # a few hard edges: random half-planes
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size, device='cuda'), torch.linspace(-1, 1, size, device='cuda'),
                            indexing='ij')
    for _ in range(3):
        ang = torch.rand(n, 1, 1, device='cuda', generator=g) * 6.2832
        off = torch.rand(n, 1, 1, device='cuda', generator=g) - 0.5
        step = ((xx * torch.cos(ang) + yy * torch.sin(ang)) > off).float()
        imgs += 0.3 * (step[:, None] - 0.5) * torch.randn(n, 3, 1, 1, device='cuda', generator=g)
    return torch.sigmoid(2 * imgs)


class BatchSource:
    """Fixed sequence of (lr, hr) training batches: random crops of the bank, bicubic (antialiased) x2 LR."""

    def __init__(self, bank, batch, lr_size=64, seed=0):
        self.bank, self.batch, self.hr = bank, batch, lr_size * SCALE
        self.g = torch.Generator(device='cuda').manual_seed(seed)

    def next(self):
        n, _, h, w = self.bank.shape
        idx = torch.randint(0, n, (self.batch,), device='cuda', generator=self.g)
        top = torch.randint(0, h - self.hr + 1, (1,), device='cuda', generator=self.g)
        left = torch.randint(0, w - self.hr + 1, (1,), device='cuda', generator=self.g)
        rows = top + torch.arange(self.hr, device='cuda')
        cols = left + torch.arange(self.hr, device='cuda')
        hr = self.bank[idx][:, :, rows][:, :, :, cols]
        lr = F.interpolate(hr, scale_factor=1 / SCALE, mode='bicubic', antialias=True, align_corners=False)
        return lr.clamp(0, 1), hr


# --------------------------------------------------------------------------------------------------- training

def capture_graph(fn, warmup, before_capture=None):
    """(graph, fn's output inside it): ``warmup`` calls on a side stream (as CUDA graph capture requires), then
    ``before_capture()``, then one captured call."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    if before_capture is not None:
        before_capture()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


class Trainer:
    """One training step (forward, L1 loss, backward, Adam), eager or captured whole in a CUDA graph."""

    def __init__(self, net, cfg, batch):
        self.net, self.cfg = net.train(), cfg
        self.fwd = torch.compile(net) if cfg.get('compile') else net
        self.opt = make_optimizer(net, cfg)
        self.lr = torch.zeros(batch, 3, 64, 64, device='cuda')
        self.hr = torch.zeros(batch, 3, 64 * SCALE, 64 * SCALE, device='cuda')
        self.graph = None

    def _step(self):
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=self.cfg['bf16']):
            sr = self.fwd(self.lr)
        loss = F.l1_loss(sr.float(), self.hr)
        loss.backward()
        self.opt.step()
        return loss

    def _fresh_step(self):
        # Gradients set to None first: inside the graph the backward then allocates them in the graph's pool and
        # every replay overwrites them (no accumulation).
        self.opt.zero_grad(set_to_none=True)
        return self._step()

    def capture(self, warmup=3):
        def reset_peak():   # after the warm-up, before the capture allocates the graph's pool
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.graph, self.static_loss = capture_graph(self._fresh_step, warmup, reset_peak)

    def step(self, lr, hr):
        self.lr.copy_(lr)
        self.hr.copy_(hr)
        if self.graph is not None:
            self.graph.replay()
            return self.static_loss
        return self._fresh_step()


def busy_fraction(fn, steps=5):
    """Union of GPU activity intervals / span from the first to the last GPU activity over ``steps`` calls."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    iv = sorted((e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type == DeviceType.CUDA)
    if not iv:
        return None
    busy, cur_s, cur_e = 0, iv[0][0], iv[0][1]
    for s, e in iv[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    span = max(e for _, e in iv) - iv[0][0]
    return busy / span if span > 0 else None


def cuda_time_ms(fn, iters):
    """Median wall time per call in ms (each call CUDA-synchronised)."""
    times = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_train(name, mode, steps):
    cfg = apply_mode(mode)
    batch = NETS[name][2]
    net = build_net(name, lean=cfg.get('lean', False))
    src = BatchSource(synthetic_bank(), batch)
    tr = Trainer(net, cfg, batch)
    lr, hr = src.next()
    tr.lr.copy_(lr)
    tr.hr.copy_(hr)
    t0 = time.perf_counter()
    if cfg['graph']:
        tr.capture()   # resets the peak after its warm-up steps, before the capture allocates the graph's pool
    else:
        for _ in range(3):   # warm-up (cudnn.benchmark tries algorithms here), then the peak is reset
            tr.step(lr, hr)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    setup_s = time.perf_counter() - t0
    step_ms = cuda_time_ms(lambda: tr.step(lr, hr), steps)
    peak = torch.cuda.max_memory_allocated() / 1e9
    busy = busy_fraction(lambda: tr.step(lr, hr))
    loss = float(tr.step(lr, hr))
    del tr, net
    torch.cuda.empty_cache()
    return dict(step_ms=step_ms, img_s=batch / step_ms * 1e3, peak_gb=peak, busy=busy, setup_s=setup_s,
                loss_finite=bool(loss == loss))


def loss_curve(name, mode, steps, seed):
    """Mean L1 loss per step over ``steps`` steps; weights seeded by ``seed``, batches fixed."""
    cfg = apply_mode(mode)
    batch = NETS[name][2]
    net = build_net(name, seed=seed, lean=cfg.get('lean', False))
    bank = synthetic_bank()
    src = BatchSource(bank, batch, seed=0)
    tr = Trainer(net, cfg, batch)
    losses = []
    if cfg['graph']:
        lr, hr = src.next()
        tr.lr.copy_(lr)
        tr.hr.copy_(hr)
        # capture runs 3 warm-up steps on one batch: re-seed the weights afterwards so the curve starts fresh
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        tr.capture()
        with torch.no_grad():
            for k, v in net.state_dict().items():
                v.copy_(state[k])
        for st in tr.opt.state.values():
            for k, v in st.items():
                if torch.is_tensor(v):
                    v.zero_()
        src = BatchSource(bank, batch, seed=0)
    for _ in range(steps):
        lr, hr = src.next()
        losses.append(tr.step(lr, hr).detach().clone())
    curve = torch.stack(losses).float().cpu().tolist()
    del tr, net
    torch.cuda.empty_cache()
    return curve


# --------------------------------------------------------------------------------------------------- inference

def infer_forward(name, cfg):
    """(net, fwd): the network in eval mode and a no-grad forward of one fixed LR 256x256 image, through
    torch.compile and bf16 autocast where the mode ``cfg`` says."""
    net = build_net(name).eval()
    net_fwd = torch.compile(net) if cfg.get('compile') else net
    x = torch.rand(1, 3, 256, 256, device='cuda', generator=torch.Generator(device='cuda').manual_seed(7))

    def fwd():
        with torch.no_grad(), torch.autocast('cuda', dtype=torch.bfloat16, enabled=cfg['bf16']):
            return net_fwd(x)
    return net, fwd


def bench_infer(name, mode, iters):
    cfg = apply_mode(mode)
    net, fwd = infer_forward(name, cfg)
    out = fwd()
    torch.cuda.synchronize()
    if cfg['graph']:
        g, out = capture_graph(fwd, 1)
        run = g.replay
        g.replay()
    else:
        run = fwd
    ms = cuda_time_ms(run, iters)
    out = out.float().clone()
    res = dict(infer_ms=ms)   # the difference from the reference output is added by main()
    del net
    torch.cuda.empty_cache()
    return res, out


# --------------------------------------------------------------------------------------------------- main

def fmt(v, spec):
    return '-' if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=os.environ.get('OUT') or '/tmp/bench_networks')
    ap.add_argument('--mamba-src', help='unpacked mamba_ssm sdist (for the reference path)')
    ap.add_argument('--mamba-build-dir', default='/tmp/mamba_ss_build')
    ap.add_argument('--nets', nargs='+', default=list(NETS), choices=list(NETS))
    ap.add_argument('--modes', nargs='+', default=['ref', 'fp32-triton-graph', 'tf32-triton-graph',
                                                    'bf16-triton-graph'], choices=list(MODES))
    ap.add_argument('--steps', type=int, default=20, help='timed training steps per (net, mode)')
    ap.add_argument('--infer-iters', type=int, default=10)
    ap.add_argument('--skip-train', action='store_true')
    ap.add_argument('--skip-infer', action='store_true')
    ap.add_argument('--curve-steps', type=int, default=0)
    ap.add_argument('--curve-nets', nargs='+', default=['MambaIRv2-light'], choices=list(NETS))
    ap.add_argument('--curve-modes', nargs='*', default=['tf32-triton-graph', 'bf16-triton-graph'],
                    choices=list(MODES))
    ap.add_argument('--curve-ref', default='ref', choices=list(MODES),
                    help='fp32 baseline of the loss curves, run with seeds 0 and 1 (run-to-run noise); e.g. '
                         'fp32-cuda-graph (fp32, TF32 off, our scan) where mamba_ssm is not built')
    ap.add_argument('--curve-skip-ref', action='store_true',
                    help='only the --curve-modes runs (the baseline curves come from another run)')
    ap.add_argument('--seg-sweep', nargs='*', metavar='WARPS:MAX',
                    help='instead of the sections above: compiled TF32 inference (LR 256x256) of --nets with the '
                         "CUDA scan's segment rule at each SEG_WARPS:SEG_MAX (ops/cuda_scan._segments)")
    ap.add_argument('--scan-override', nargs='*', default=[], metavar='KEY=INT',
                    help="cuda_scan._CONFIG_OVERRIDE entries for every mode but ref (e.g. SEG_WARPS=32 SEG_MAX=128)")
    ap.add_argument('--deadline', type=float, default=560, help='stop starting new measurements after this many s')
    args = ap.parse_args()
    SCAN_OVERRIDE.update(parse_override(','.join(args.scan_override)))
    if not torch.cuda.is_available():
        sys.exit('bench_networks_gpu.py needs a CUDA GPU')
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()
    torch.backends.cudnn.deterministic = False

    build = None
    needs_mamba = any(MODES[m]['scan'] == 'mamba_ssm' for m in args.modes)
    if needs_mamba and args.mamba_src and os.path.isdir(args.mamba_src):
        from bench_gpu import start_mamba_build
        build = start_mamba_build(args.mamba_src, args.mamba_build_dir)

    import triton
    props = torch.cuda.get_device_properties(0)
    results = dict(command=' '.join(sys.argv), gpu=props.name, torch=torch.__version__, triton=triton.__version__,
                   cuda=torch.version.cuda, date=time.strftime('%Y-%m-%d %H:%M:%S'), train={}, infer={}, curves={})
    log(f'GPU {props.name}, torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}')

    def save():
        write_results(args.out, results)

    def mamba_ready():
        nonlocal build
        if build is None:
            return '_mamba_ok' in results
        proc, logf = build
        try:
            proc.wait(timeout=max(5, args.deadline - 120 - (time.time() - t_start)))
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()
        build = None
        results['mamba_build_s'] = time.time() - t_start
        if proc.returncode != 0:
            log('mamba_ssm build failed; log tail:\n' +
                open(os.path.join(args.mamba_build_dir, 'build.log')).read()[-1500:])
            return False
        from bench_gpu import load_mamba
        install_mamba_backend(load_mamba(args.mamba_src, args.mamba_build_dir))
        results['_mamba_ok'] = True
        log(f'mamba_ssm selective_scan_cuda built and loaded at {time.time() - t_start:.0f} s')
        return True

    # fast modes first (the mamba_ssm build runs meanwhile), reference last
    # compiled modes last (compile time), so that the others are measured within the deadline
    order = [m for m in args.modes if MODES[m]['scan'] != 'mamba_ssm' and not MODES[m].get('compile')] + \
            [m for m in args.modes if MODES[m]['scan'] == 'mamba_ssm'] + \
            [m for m in args.modes if MODES[m].get('compile')]

    def run_section(kind, fn):
        for mode in order:
            if MODES[mode]['scan'] == 'mamba_ssm' and not mamba_ready():
                log(f'{kind} {mode}: skipped (no mamba_ssm)')
                continue
            for name in args.nets:
                if time.time() - t_start > args.deadline:
                    log(f'{kind} {name} {mode}: skipped (deadline)')
                    continue
                try:
                    fn(name, mode)
                except Exception as exc:
                    log(f'{kind} {name} {mode}: FAILED {exc!r}')
                    traceback.print_exc()
                    results[kind].setdefault(name, {})[mode] = dict(error=repr(exc))
                save()

    if args.seg_sweep:
        for name in args.nets:
            res = seg_sweep(name, args.seg_sweep, args.infer_iters)
            results.setdefault('seg_sweep', {})[name] = res
            log(f'seg sweep {name}: ' + '  '.join(f'{k} {v:.2f} ms' for k, v in res.items()))
            save()
        args.skip_train = args.skip_infer = True

    if not args.skip_infer:
        outs = {}

        def infer_one(name, mode):
            res, out = bench_infer(name, mode, args.infer_iters)
            outs[(name, mode)] = out
            results['infer'].setdefault(name, {})[mode] = res
            log(f'infer {name:16s} {mode:18s} {res["infer_ms"]:8.2f} ms')
        run_section('infer', infer_one)
        for name in args.nets:  # differences from the reference output (same weights, same input)
            ref = outs.get((name, 'ref'))
            for mode in args.modes:
                if ref is not None and (name, mode) in outs and mode != 'ref':
                    results['infer'][name][mode]['max_abs_diff'] = float((outs[(name, mode)] - ref).abs().max())
        del outs

    if not args.skip_train:
        def train_one(name, mode):
            res = bench_train(name, mode, args.steps)
            results['train'].setdefault(name, {})[mode] = res
            log(f'train {name:16s} {mode:18s} {res["step_ms"]:8.2f} ms  {res["img_s"]:7.1f} img/s  '
                f'peak {res["peak_gb"]:5.2f} GB  busy {fmt(res["busy"], ".2f")}  setup {res["setup_s"]:.1f} s')
        run_section('train', train_one)

    if args.curve_steps:
        for name in args.curve_nets:
            runs = ([] if args.curve_skip_ref else [(args.curve_ref, 0), (args.curve_ref, 1)]) + \
                [(m, 0) for m in args.curve_modes]
            for mode, seed in runs:
                if time.time() - t_start > args.deadline:
                    log(f'curve {name} {mode} seed {seed}: skipped (deadline)')
                    continue
                if MODES[mode]['scan'] == 'mamba_ssm' and not mamba_ready():
                    mode = 'fp32-triton'   # fp32 stand-in for the reference when mamba_ssm is missing
                try:
                    c = loss_curve(name, mode, args.curve_steps, seed)
                except Exception as exc:
                    log(f'curve {name} {mode}: FAILED {exc!r}')
                    traceback.print_exc()
                    continue
                results['curves'].setdefault(name, {})[f'{mode}/seed{seed}'] = c
                tail = sum(c[-50:]) / len(c[-50:])
                log(f'curve {name:16s} {mode:18s} seed {seed}: first {c[0]:.4f}  mean of last 50 {tail:.5f}')
                save()

    # ------------------------------------------------------------------ tables
    def rows(section, key):
        """(network, mode, result, speed-up vs ref) for every measured row of a section."""
        for name in args.nets:
            per_mode = results[section].get(name, {})
            ref = per_mode.get('ref', {})
            for mode in args.modes:
                r = per_mode.get(mode)
                if r and 'error' not in r:
                    yield name, mode, r, (ref[key] / r[key] if key in ref else None)

    log('\n## Training step (x2, LR 64x64; median ms, images/s, peak allocated GB, GPU busy fraction)')
    log('| network | batch | mode | step ms | img/s | peak GB | busy | speed-up vs ref | official (issue) |')
    log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for name, mode, r, sp in rows('train', 'step_ms'):
        o = OFFICIAL[name]
        log(f"| {name} | {NETS[name][2]} | {mode} | {r['step_ms']:.1f} | {r['img_s']:.1f} | {r['peak_gb']:.2f} | "
            f"{fmt(r['busy'], '.2f')} | {fmt(sp, '.2f')} | {o['step_ms']} ms, {o['peak_gb']} GB |")
    log('\n## Inference, one LR 256x256 image (median ms; max |output - ref output|)')
    log('| network | mode | ms | speed-up vs ref | max abs diff | official (issue) |')
    log('| --- | --- | --- | --- | --- | --- |')
    for name, mode, r, sp in rows('infer', 'infer_ms'):
        log(f"| {name} | {mode} | {r['infer_ms']:.1f} | {fmt(sp, '.2f')} | {fmt(r.get('max_abs_diff'), '.1e')} | "
            f"{OFFICIAL[name]['infer_ms']} ms |")
    if results['curves']:
        log(f'\n## Loss curves ({args.curve_steps} steps, same batches; mean L1 of the last 50 steps)')
        log('| network | run | mean L1, last 50 | diff vs ref seed 0 |')
        log('| --- | --- | --- | --- |')
        for name, runs in results['curves'].items():
            tails = {k: sum(c[-50:]) / len(c[-50:]) for k, c in runs.items()}
            base = next((v for k, v in tails.items() if k.endswith('seed0') and not k.startswith(('tf32', 'bf16'))),
                        None)
            for k, v in tails.items():
                log(f"| {name} | {k} | {v:.5f} | {fmt(None if base is None else v - base, '+.5f')} |")
    results.pop('_mamba_ok', None)
    results['total_s'] = time.time() - t_start
    save()
    log(f'\ntotal {results["total_s"]:.0f} s; results in {args.out}')


if __name__ == '__main__':
    main()

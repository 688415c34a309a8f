[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
python3 -m pytest -q -m gpu tests/test_cuda_scan.py -p no:cacheprovider -k "time_parallel or reverse" > $OUT/gpu_tests.log 2>&1; grep -E "^E  |passed|failed|^FAILED" $OUT/gpu_tests.log | cut -c1-300 | tail -14
echo "tests $(( $(date +%s) - T0 )) s"
for o in "" TP=0; do for g in "" --no-grad; do python3 scripts/profile_cuda_scan.py MambaIRv2-light MMA-B --host-time $g --override "$o" 2>&1 | grep host; done; done
wait; echo "build $(( $(date +%s) - T0 )) s"
python3 - <<'PY'
import sys, time, torch
sys.path.insert(0, 'scripts')
from bench_gpu import load_mamba, make_mamba_fn, timing_inputs
fn = make_mamba_fn(load_mamba('.mamba_src/mamba_ssm-2.3.2.post1', '/tmp/mamba_ss_build'))
for name, b, d, L, N, G, z in [('MambaIRv2-light', 16, 96, 4096, 8, 1, False), ('MMA-B', 16, 384, 4096, 16, 0, True)]:
    ins = [t.requires_grad_() if t is not None else None for t in timing_inputs(b, d, L, N, G, z, torch.float32)]
    def step():
        out = fn(*ins, delta_softplus=True); out.backward(torch.ones_like(out))
        for t in ins:
            if t is not None: t.grad = None
    for _ in range(3): step()
    torch.cuda.synchronize(); t0 = time.perf_counter()
    for _ in range(50): step()
    t1 = time.perf_counter(); torch.cuda.synchronize(); t2 = time.perf_counter()
    print(f'mamba_ssm {name} fp32: host issue {(t1-t0)*20:.3f} ms/step, wall {(t2-t0)*20:.3f} ms/step')
PY
echo "end $(( $(date +%s) - T0 )) s"

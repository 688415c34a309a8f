[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
T0=$(date +%s); M=.mamba_src/mamba_ssm-2.3.2.post1
( python3 -c "import sys; sys.path.insert(0,'scripts'); from bench_gpu import start_mamba_build as s; p,l=s('$M','/tmp/mamba_ss_build'); p.wait()" > /tmp/build.log 2>&1 ) &
S="16:64 32:128 32:256 64:256 64:512 128:1024"
python3 scripts/bench_networks_gpu.py --nets MPSI --out $OUT/sweep_mpsi --seg-sweep $S --infer-iters 20 2>&1 | grep "seg sweep"
BEST=$(python3 -c "import json; r=json.load(open('$OUT/sweep_mpsi/results.json'))['seg_sweep']['MPSI']; k=min(r,key=r.get); w,m=k.split(':'); print(f'SEG_WARPS={w} SEG_MAX={m}')")
echo "best $BEST  $(( $(date +%s) - T0 )) s"; wait
python3 scripts/bench_networks_gpu.py --nets MPSI --mamba-src $M --out $OUT/net20 --skip-train --modes ref tf32-cuda-compile-graph --scan-override $BEST --deadline 300 2>&1 | grep "^infer\|^| M\|built"
echo "final $(( $(date +%s) - T0 )) s"
timeout $(( 520 - ($(date +%s) - T0) )) python3 scripts/bench_networks_gpu.py --nets MMA-B --out $OUT/sweep_mma --seg-sweep $S --infer-iters 20 2>&1 | grep "seg sweep"
echo "end $(( $(date +%s) - T0 )) s"

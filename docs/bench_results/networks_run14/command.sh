# call 14: phase A (untimed, in parallel): GPU tests, inductor-cache warm-up of the two compiled lean modes,
# fp32 baseline loss curves; phase B (alone on the GPU): timed training steps, then the fast-mode curves.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
B="python3 scripts/bench_networks_gpu.py --skip-infer"
T0=$(date +%s); L=/tmp/logs; mkdir -p $L
( $B --out /tmp/warm_mma --nets MMA-B --modes tf32-cuda-compile-graph-lean1 --steps 2 > $L/warm_mma.log 2>&1 ) &
( $B --out /tmp/warm_mpsi --nets MPSI --modes tf32-cuda-compile-graph-lean --steps 2 > $L/warm_mpsi.log 2>&1 ) &
( python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1 ) &
( $B --skip-train --out $OUT/curves_fp32 --curve-steps 300 --curve-nets MMA-B MPSI --curve-ref fp32-cuda-graph --curve-modes > $L/curves_fp32.log 2>&1 ) &
wait
echo "phase A $(( $(date +%s) - T0 )) s"; tail -3 $OUT/gpu_tests.log; tail -2 $L/warm_*.log
$B --out $OUT/net14 --nets MMA-B MPSI --modes tf32-cuda-graph tf32-cuda-graph-lean1 tf32-cuda-graph-lean tf32-cuda-compile-graph-lean1 tf32-cuda-compile-graph-lean --deadline 400 2>&1 | grep -v "^$" | tail -25
echo "phase B1 $(( $(date +%s) - T0 )) s"
tar czf $OUT/logs.tgz -C /tmp logs

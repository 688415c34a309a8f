[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
B="python3 scripts/bench_networks_gpu.py --skip-infer"
T0=$(date +%s); L=/tmp/logs; mkdir -p $L; ls /tmp/inductor_cache | head -3
$B --out $OUT/net15 --nets MPSI --modes tf32-cuda-compile-graph-lean --deadline 300 2>&1 | grep "^train"
echo "B1 $(( $(date +%s) - T0 )) s"
$B --skip-train --out $OUT/curves_fast_mpsi --curve-steps 300 --curve-nets MPSI --curve-skip-ref --curve-modes tf32-cuda-compile-graph-lean --deadline 150 > $L/curves_fast_mpsi.log 2>&1
echo "B2 $(( $(date +%s) - T0 )) s"; grep "^curve" $L/curves_fast_mpsi.log
$B --skip-train --out $OUT/curves_fast_mma --curve-steps 300 --curve-nets MMA-B --curve-skip-ref --curve-modes tf32-cuda-compile-graph-lean1 --deadline 150 > $L/curves_fast_mma.log 2>&1
echo "end $(( $(date +%s) - T0 )) s"; grep "^curve" $L/curves_*.log
rm -f $OUT/curves_*/log.txt

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
B="python3 scripts/bench_networks_gpu.py --skip-infer"
T0=$(date +%s); L=/tmp/logs; mkdir -p $L
( $B --out /tmp/warm1 --nets MPSI --modes tf32-cuda-compile-graph-lean1 --steps 2 > $L/warm1.log 2>&1 ) &
( $B --out /tmp/warm2 --nets MPSI --modes bf16-cuda-compile-graph-lean --steps 2 > $L/warm2.log 2>&1 ) &
( python3 -m pytest -q -m gpu tests/test_cuda_scan.py tests/test_mamba_inner.py -p no:cacheprovider > $OUT/gpu_tests.log 2>&1 ) &
wait
echo "phase A $(( $(date +%s) - T0 )) s"; tail -3 $OUT/gpu_tests.log; grep "^train" $L/warm*.log
$B --out $OUT/net16 --nets MPSI --modes tf32-cuda-graph-lean1 tf32-cuda-compile-graph-lean1 bf16-cuda-compile-graph-lean --deadline 300 2>&1 | grep "^train"
echo "phase B $(( $(date +%s) - T0 )) s"
$B --skip-train --out $OUT/curves16 --curve-steps 300 --curve-nets MPSI --curve-skip-ref --curve-modes tf32-cuda-compile-graph-lean1 --deadline 150 > $L/curves16.log 2>&1
echo "end $(( $(date +%s) - T0 )) s"; grep "^curve" $L/curves16.log
rm -f $OUT/curves16/log.txt; tar czf $OUT/logs.tgz -C /tmp logs

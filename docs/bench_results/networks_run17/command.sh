[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
B="python3 scripts/bench_networks_gpu.py --skip-infer --skip-train --curve-steps 300 --deadline 500"
T0=$(date +%s); L=/tmp/logs; mkdir -p $L
( $B --out $OUT/c_v2b_fp32 --curve-nets MambaIRv2-B --curve-ref fp32-cuda-graph --curve-modes > $L/c1.log 2>&1 ) &
( $B --out $OUT/c_v2b_bf16 --curve-nets MambaIRv2-B --curve-skip-ref --curve-modes bf16-cuda-graph > $L/c2.log 2>&1 ) &
( $B --out $OUT/c_mpsi --curve-nets MPSI --curve-skip-ref --curve-modes tf32-cuda-compile-graph-lean1 > $L/c3.log 2>&1 ) &
( timeout 480 python3 .whl/prof_infer.py MPSI MMA-B > $OUT/prof_infer.txt 2>&1 ) &
wait
echo "end $(( $(date +%s) - T0 )) s"; grep "^curve" $L/c*.log
rm -f $OUT/c_*/log.txt; tar czf $OUT/logs.tgz -C /tmp logs

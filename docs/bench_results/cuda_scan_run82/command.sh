[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r82; mkdir -p $R
python3 scripts/bench_gpu.py --out $R/var82 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes "MMA-B infer 256^2" --cuda-variants "" PG=16 SEG_WARPS=28 SEG_WARPS=36 SEG_WARPS=40 SEG_MAX=48 PG=16,SEG_WARPS=36 "" > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -20
echo "variants $(( $(date +%s) - T0 )) s"
tar czf $OUT/results.tgz -C $R .

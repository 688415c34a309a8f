[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/var63 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MMA-B MPSI "MMA-B infer 256^2" --cuda-variants "" NS=4 T=32 PG=8 T=32,PG=8 > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -40
echo "fwd variants $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $OUT/var63g --skip-grid --skip-sweep --skip-timing --impls cuda --shapes "MMA-B infer 256^2" --cuda-variants-grad "" SEG_WARPS=8 SEG_WARPS=32 SEG_WARPS=32,SEG_MAX=128 > $OUT/variants_grad.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants_grad.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r83; mkdir -p $R
python3 scripts/bench_gpu.py --out $R/var83 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes "MMA-B infer 256^2" MMA-B --cuda-variants "" NS=4 NS=4,PG=8 NS=4,PG=16 "" > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -20
echo "variants $(( $(date +%s) - T0 )) s"
tar czf $OUT/results.tgz -C $R .

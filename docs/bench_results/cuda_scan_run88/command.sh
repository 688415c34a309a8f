[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r88; mkdir -p $R
python3 scripts/bench_gpu.py --out $R/var88 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants "" TP_ABSORB=0 "" TP_ABSORB=0 "" TP_ABSORB=0 --cuda-variants-grad "" TP_ABSORB=0 "" TP_ABSORB=0 > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -20
echo "end $(( $(date +%s) - T0 )) s"
tar czf $OUT/results.tgz -C $R .

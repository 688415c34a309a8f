[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r86; mkdir -p $R
python3 scripts/bench_gpu.py --out $R/var86 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants "" TP_T=16,TP_PF=0,TP_GPF=1 TP_T=16,TP_PF=0,TP_GPF=0 TP_T=16,TP_PF=0,TP_GPF=1,TP_MINB=2 TP_T=16,TP_PF=2 "" > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -20
echo "end $(( $(date +%s) - T0 )) s"
tar czf $OUT/results.tgz -C $R .

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/var75 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants "" TP_GPF=1 TP_GPF=2 TP_GPF=1,TP_PF=0 TP_GPF=2,TP_PF=0 TP_GPF=2,TP_PF=2 "" TP_GPF=2 > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

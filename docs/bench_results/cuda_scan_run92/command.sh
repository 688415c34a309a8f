[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s); R=/tmp/r92; mkdir -p $R
python3 scripts/bench_gpu.py --out $R/var92a --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MambaIRv2-light --cuda-variants "" TP_FASTMASK=0 "" TP_FASTMASK=0 "" TP_FASTMASK=0 > $OUT/variants_a.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants_a.log | head -20
echo "a $(( $(date +%s) - T0 )) s"
python3 scripts/bench_gpu.py --out $R/var92b --skip-grid --skip-sweep --skip-timing --impls cuda --shapes "MMA-B infer 256^2" --cuda-variants "" P2_NOSP=1 P1_NOSP=1 P1_NOSP=1,P2_NOSP=1 "" P2_NOSP=1 > $OUT/variants_b.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants_b.log | head -20
echo "end $(( $(date +%s) - T0 )) s"
tar czf $OUT/results.tgz -C $R .

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 scripts/bench_gpu.py --out $OUT/var65 --skip-grid --skip-sweep --skip-timing --impls cuda --shapes MMA-B MPSI "MMA-B infer 256^2" --cuda-variants "" NTHREADS=64 NTHREADS=256 > $OUT/variants.log 2>&1
grep -E "^\||FAIL|rror" $OUT/variants.log | head -40
echo "end $(( $(date +%s) - T0 )) s"

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
MAMBA_SR_NVRTC_LINEINFO=1 timeout 120 ncu --kernel-name regex:ssm_fwd --launch-skip 1 --launch-count 1 --section SourceCounters --section InstructionStats --import-source yes -o $OUT/rep python3 scripts/profile_cuda_scan.py MMA-B --no-grad --dtype bf16 --iters 3 > $OUT/ncu_run.txt 2>&1
tail -3 $OUT/ncu_run.txt
timeout 120 ncu -i $OUT/rep.ncu-rep --page source --csv --print-source sass > $OUT/sass.csv 2> $OUT/sass.err; wc -l $OUT/sass.csv; head -c 600 $OUT/sass.err
timeout 120 ncu -i $OUT/rep.ncu-rep --page source --csv --print-source cuda > $OUT/cuda_src.csv 2>> $OUT/sass.err; wc -l $OUT/cuda_src.csv
head -3 $OUT/sass.csv | cut -c1-400

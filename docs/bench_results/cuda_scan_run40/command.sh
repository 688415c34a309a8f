[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -m pytest -q -m gpu tests/test_cuda_scan.py -p no:cacheprovider -k fresh 2>&1 | tail -1
MAMBA_SR_NVRTC_LINEINFO=1 timeout 120 ncu --kernel-name regex:ssm_bwd_tp --launch-skip 1 --launch-count 1 --section SourceCounters --section WarpStateStats --section InstructionStats python3 scripts/profile_cuda_scan.py MambaIRv2-light --iters 3 > $OUT/ncu_bwd_src.txt 2>&1
grep -v "^==PROF==" $OUT/ncu_bwd_src.txt | grep -v "^\s*-*\s*$" | cut -c1-180 | tail -60

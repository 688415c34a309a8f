[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MAMBA_SR_NVRTC_LINEINFO=1
T0=$(date +%s)
prof() {  # name shape dtype kernel-regex
  timeout 120 ncu --set full --import-source yes -o /tmp/$1 -f --kernel-name regex:$4 --launch-skip 1 --launch-count 1 python3 scripts/profile_cuda_scan.py $2 --no-grad --dtype $3 --iters 3 > $OUT/$1.log 2>&1
  ncu -i /tmp/$1.ncu-rep --page details --print-details all > $OUT/$1_details.txt 2>&1
  ncu -i /tmp/$1.ncu-rep --page source --csv --print-source sass > $OUT/$1_sass.csv 2>&1
  grep -E " Duration  | Executed Instructions  |Warp Cycles Per Issued|L1/TEX Cache Throughput" $OUT/$1_details.txt | head -5
  echo "$1 $(( $(date +%s) - T0 )) s"
}
prof light_bf16 MambaIRv2-light bf16 'ssm_fwd_tp$'
prof light_fp32 MambaIRv2-light fp32 'ssm_fwd_tp$'
prof mmab_bf16 MMA-B bf16 'ssm_fwd$'
ls -la $OUT

[ -d /tmp/site/basicsr ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nproc; lscpu | grep -E "Model name|MHz" | head -3; python3 -V
python3 .whl/host3.py cpu fake 2>&1 | head -30
python3 .whl/host3.py cuda fake
python3 .whl/host3.py cuda real

#!/usr/bin/env bash
# The one-command GPU check (mdm/bench_gpu.py): attention kernels vs the math kernel, the 110M-class
# model trained in bf16 with and without torch.compile (tokens/s, MFU vs the measured bf16 matmul
# peak, peak memory). <= 8 minutes on one H100/H200; results as JSON.
#
#   bench/gpu_check.sh [JSON] [mdm.bench_gpu flags, e.g. --budget 300 --cap train_compile=150]
#
# JSON defaults to $OUT/gpu_check.json (or ./gpu_check.json without $OUT). Before a run on a machine
# without our pure-Python dependencies, run bench/gpu_wheels.sh here and carry bench/.gpu_wheels
# along (the device tool: carry ["bench/.gpu_wheels"]); this script installs them from there.
# GPU_CHECK_TIMEOUT (default 480 s) kills the whole check, whatever its phases' caps.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
json="${1:-${OUT:-.}/gpu_check.json}"
[ $# -gt 0 ] && shift
names=$(sed -e 's/#.*//' -e 's/[<>=!~ ;].*//' bench/gpu_wheels.txt | grep -v '^$' | tr '\n' ' ')
if ! $py -c "import omegaconf" 2>/dev/null; then
    if [ ! -d bench/.gpu_wheels ]; then
        echo "gpu_check: omegaconf is missing and bench/.gpu_wheels/ is absent (run bench/gpu_wheels.sh first)" >&2
        exit 2
    fi
    $py -m pip install --quiet --no-index --find-links bench/.gpu_wheels $names
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout -k 10 "${GPU_CHECK_TIMEOUT:-480}" "$py" -m mdm.bench_gpu --json "$json" "$@"

#!/usr/bin/env bash
# Device check for a machine with a CUDA GPU (torch + CUDA toolkit, ninja, pybind11, pytest
# already installed; no internet, so nothing is downloaded). Run from anywhere:
#   bash benchmarks/gpu_check.sh
# Builds the extension with the CUDA kernels, runs the CUDA tests (the ops' first: tally and
# iou_histogram parity, validation, launch plan), the quick CUDA benchmarks of both ops and the
# end-to-end one, and prints a summary table last. Budget: about 8 minutes (the build takes most
# of it).
# With $OUT set, logs and RESULTS.md copies are written there.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
OUT_DIR=${OUT:-}
LOG_DIR=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$LOG_DIR"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export NDCORE_FORCE_CUDA=1
export NDCORE_REQUIRE_EXTENSION=1
export MAX_JOBS=${MAX_JOBS:-8}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # finds an in-place build too

declare -a NAMES=() STATUS=() SECONDS_TAKEN=()
step() {  # step NAME TIMEOUT_S COMMAND...: runs with a timeout, logs, records the outcome
  local name=$1 limit=$2; shift 2
  local start=$SECONDS rc
  echo "=== $name: $*"
  timeout "$limit" "$@" > >(tee "$LOG_DIR/$name.log") 2>&1
  rc=$?
  NAMES+=("$name"); SECONDS_TAKEN+=($((SECONDS - start)))
  if [ $rc -eq 0 ]; then STATUS+=("ok"); else STATUS+=("FAILED (rc=$rc)"); fi
  return $rc
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$LOG_DIR/gpu.txt" 2>&1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" >> "$LOG_DIR/gpu.txt" 2>&1
cat "$LOG_DIR/gpu.txt"

# 1. Build (editable install; fall back to an in-place build if pip cannot do it offline).
if ! step build 300 $PY -m pip install --no-build-isolation --no-deps -e .; then
  step build-inplace 300 $PY setup.py build_ext --inplace && STATUS[0]="failed, in-place ok"
fi
$PY -c "import ndcore.ops as o; print(o.extension_info())" 2>&1 | tee "$LOG_DIR/extension.txt"

# 2. CUDA tests: the ops' own first (parity with the reference and the CPU kernel, rejection of
#    bad inputs and mixed devices, launch plan, opcheck), then every other CUDA test.
step tests-ops-cuda 240 $PY -m pytest -m cuda tests/test_op.py tests/test_histogram_op.py -q
step tests-cuda 180 $PY -m pytest -m cuda tests/ -q --ignore=tests/test_op.py \
  --ignore=tests/test_histogram_op.py

# 3. Kernel benchmark on the GPU (updates benchmarks/RESULTS.md).
step bench-tally 120 $PY benchmarks/bench_tally.py --device cuda --quick

# 3b. iou_histogram benchmark on the GPU (op vs reference; updates benchmarks/RESULTS.md).
step bench-histogram 120 $PY benchmarks/bench_histogram.py --device cuda --quick

# 4. End to end: ResNet-18 layer1-4 on 2000 synthetic Broden-format images (224/112), full
#    dissection vs one forward pass, and peak memory at 200 vs 2000 images.
step bench-dissect 240 $PY benchmarks/bench_dissect.py --device cuda --images 2000 --repeats 1 \
  --workers 12 --batch-size 100

if [ -n "$OUT_DIR" ]; then
  cp benchmarks/RESULTS.md "$OUT_DIR/RESULTS.md" 2>/dev/null || true
fi

echo
echo "=== summary ($(cat "$LOG_DIR/gpu.txt" | head -1))"
printf '%-16s %-18s %s\n' step status seconds
for i in "${!NAMES[@]}"; do
  printf '%-16s %-18s %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECONDS_TAKEN[$i]}"
done
grep -E '^\| [0-9]+u .*\| ndcore \|' "$LOG_DIR/bench-tally.log" 2>/dev/null || true
grep -E '^ratio op/reference' "$LOG_DIR/bench-histogram.log" 2>/dev/null || true
for t in tests-ops-cuda tests-cuda; do
  echo "$t: $(tail -1 "$LOG_DIR/$t.log" 2>/dev/null)"
done
grep -E '^(one forward|full dissection|ratio|peak RSS|memory ratio)' "$LOG_DIR/bench-dissect.log" 2>/dev/null || true
for s in "${STATUS[@]}"; do [[ "$s" == ok || "$s" == *"in-place ok" ]] || exit 1; done

#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run (not CI: CI has no GPU).
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]
#
# Runs each step under its own time limit, so that one slow step cannot eat the
# others' time, and writes each step's log to OUT_DIR (default gpu_checks_out);
# exits 1 if any step failed:
#   1. the GPU and torch versions;
#   2. the CUDA tests (tests/test_render.py: the rasteriser on CUDA equals CPU);
#   3. the trainer on CUDA, end to end (configs/cpu_smoke.yaml, device=cuda,
#      deterministic=true): 40 steps twice, and 20 steps + --resume to 40; the
#      final weights are compared (bit-identical on CPU, tests/test_train.py);
#   4. benchmarks/train_throughput.py: the training step, fp32 vs bf16 + channels_last;
#   5. benchmarks/gpu_throughput.py at batch 256: eager fp32, eager bf16, a hand-captured
#      CUDA graph, then torch.compile in reduce-overhead mode (max-autotune, which tunes
#      every convolution, did not finish in 5 minutes on an H200 and is left out).
# Settings (environment): GPU_CHECKS_BUDGET, seconds for all steps together
# (default 900); GPU_CHECKS_STEPS, the names of the steps to run (default all);
# GPU_CHECKS_TRAIN_BATCH, step 4's batch (default 64, the paper's);
# GPU_CHECKS_DEVICE=cpu leaves out step 1, runs step 3 on the CPU and steps 4-5 as dry
# runs at tiny sizes (to try the script without a GPU; otherwise it stops at once where
# torch sees no CUDA device);
# PYTHON, the interpreter (default python3).
# Needs only torch, numpy, pillow, safetensors, tqdm, pyyaml, opencv and pytest
# (no Anny, no BlazePose, no licence-gated file): openhmr runs from src/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu_checks_out}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# A lease is short: a step's limit is cut to what is left of the budget, and a
# step with under 10 s left is skipped.
BUDGET=${GPU_CHECKS_BUDGET:-900}
ONLY=${GPU_CHECKS_STEPS:-}
FAILED=""  # the steps that did not exit 0

if [ "${GPU_CHECKS_DEVICE:-cuda}" = cuda ] \
        && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_checks: no CUDA device for torch here (GPU_CHECKS_DEVICE=cpu tries the script without one)" >&2
    exit 1
fi

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUT_DIR/NAME.txt
    local name=$1 limit=$2
    shift 2
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then
        return
    fi
    local left=$((BUDGET - SECONDS - 5))
    if [ "$left" -lt 10 ]; then
        echo "=== $name: skipped, the budget of $BUDGET s is spent"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit} s)"
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT_DIR/$name.txt" 2>&1
    local rc=$?
    tail -n 12 "$OUT_DIR/$name.txt"
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || FAILED="$FAILED $name"
}

[ "${GPU_CHECKS_DEVICE:-cuda}" = cuda ] && step gpu 30 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; \
    $PY -c 'import torch; print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, torch.cuda.get_device_name())'"
step tests 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_render.py

SMOKE=$(mktemp -d)
trap 'rm -rf "$SMOKE"' EXIT
SET="device=${GPU_CHECKS_DEVICE:-cuda} checkpoint_every=20 log_every=20 deterministic=true"
TRAIN="$PY -m openhmr train --no-progress"
COMPARE='
import sys, torch
from safetensors.torch import load_file
a, b = (load_file(sys.argv[i] + "/hmr_final.safetensors") for i in (1, 2))
worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
same = all(torch.equal(a[k], b[k]) for k in a)
print(f"{sys.argv[3]}: {len(a)} tensors, bit-identical {same}, largest difference {worst:.3g}")
'
step train_cuda 200 bash -c "$TRAIN --config configs/cpu_smoke.yaml --out $SMOKE/a $SET max_steps=40 \
    && $TRAIN --config configs/cpu_smoke.yaml --out $SMOKE/b $SET max_steps=40 \
    && $TRAIN --config configs/cpu_smoke.yaml --out $SMOKE/resumed $SET max_steps=20 \
    && $TRAIN --out $SMOKE/resumed --resume max_steps=40 \
    && $PY -c '$COMPARE' $SMOKE/a $SMOKE/b 'two runs' \
    && $PY -c '$COMPARE' $SMOKE/a $SMOKE/resumed 'resumed at step 20 vs straight'"

if [ "${GPU_CHECKS_DEVICE:-cuda}" = cuda ]; then
    TRAIN_SIZE=(--batch "${GPU_CHECKS_TRAIN_BATCH:-64}" --steps 20)
    INFER_SIZE=(--batch 256 --iters 30)
    GPU_VARIANTS=(fp32 bf16 cudagraph-bf16)
else  # a dry run of each script: its CPU sizes, and no CUDA graph
    TRAIN_SIZE=()
    INFER_SIZE=(--device cpu --batch 2 --iters 2)
    GPU_VARIANTS=(fp32 bf16)
fi
step train_throughput 200 "$PY" benchmarks/train_throughput.py "${TRAIN_SIZE[@]}"
step gpu_throughput 200 "$PY" benchmarks/gpu_throughput.py "${INFER_SIZE[@]}" --variants "${GPU_VARIANTS[@]}"
step compiled 240 "$PY" benchmarks/gpu_throughput.py "${INFER_SIZE[@]}" \
    --variants compiled-bf16 --compile-mode reduce-overhead

if [ -n "$FAILED" ]; then
    echo "gpu_checks: failed:$FAILED (logs in $OUT_DIR)" >&2
    exit 1
fi

#!/usr/bin/env bash
# Create the separate TensorFlow environment that runs the ORIGINAL HMR graph
# (tests/compat/make_tf_reference.py, benchmarks/original_graph.py).
#
# Usage: bash tests/compat/setup_tf_env.sh [ENV_DIR]     (default /work/tfenv)
#
# It lives OUTSIDE the repo and is never mixed with openhmr's .venv (which has
# torch). Everything is installed with --no-deps so pip cannot pull in keras 3,
# tensorboard, grpcio, h5py or any CUDA wheel: the list below is the minimal
# runtime set found by importing TF + tf_slim and building/running the graph.
# Idempotent: re-running only installs what is missing or at the wrong version.
set -euo pipefail

ENV_DIR="${1:-/work/tfenv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$ENV_DIR/bin/python" ]; then
    echo "creating venv $ENV_DIR"
    "$PYTHON" -m venv "$ENV_DIR"
fi

# Pinned so the reference is reproducible. numpy 2.1 is within TF 2.21's
# supported range (>=1.26, built against numpy 2); protobuf must be >=6.31.1
# (TF's generated code) and <8.
PACKAGES=(
    "tensorflow-cpu==2.21.0"
    "tf-slim==1.1.0"
    "tf-keras==2.21.0"
    "numpy==2.1.3"
    "absl-py==2.5.1"
    "protobuf==7.36.2"
    "ml_dtypes==0.6.0"
    "typing_extensions==4.16.0"
    "wrapt==2.5.2"
    "six==1.17.0"
    "gast==0.7.0"
    "astunparse==1.6.3"
    "termcolor==3.3.0"
    "opt_einsum==3.4.0"
    "packaging==26.3"
    "flatbuffers==25.12.19"
    # requests is imported by tensorflow at import time; the rest are its deps.
    "requests==2.34.2"
    "urllib3==2.8.0"
    "idna==3.20"
    "certifi==2026.10.19.post1"
    "charset-normalizer==3.5.2"
)

# pip skips already-satisfied pins, so a second run is a no-op.
"$ENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${PACKAGES[@]}"

# Smoke test: TF in graph mode + tf_slim + the tf_keras aliases (see
# tests/compat/tf_graph.py: install_tf_keras_aliases) build a BatchNorm layer.
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TF_CPP_MIN_LOG_LEVEL=2 "$ENV_DIR/bin/python" - "$SCRIPT_DIR" <<'EOF' 2>/dev/null
import sys
sys.path.insert(0, sys.argv[1])
import tf_graph
mods = tf_graph.import_tf()
x = mods.tf.placeholder(mods.tf.float32, [1, 8, 8, 4])
y = mods.slim.batch_norm(x, is_training=False)
print(f"tf env OK: tensorflow {mods.tf2.__version__}, tf_slim BatchNorm -> {y.op.type}")
EOF

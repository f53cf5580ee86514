#!/usr/bin/env bash
# The accelerator script: keras_ga on Keras' JAX backend against torch.func
# on one GPU, and a short Omniglot 5-way 1-shot MAML training run
# (benchmarks/accelerator.py), on a machine without TensorFlow, Keras or
# network. Needs build/accelerator from benchmarks/accelerator_bundle.sh.
# Installs Keras offline from its wheels into a folder of its own, then runs
# from the repository root:
#
#   bash benchmarks/accelerator_run.sh [flags of benchmarks.accelerator]
#
# Writes accelerator.md, accelerator.json and log.txt to $OUT (else
# /tmp/accelerator). `--device=cpu` with small flags checks it on a CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bundle=build/accelerator
if [[ ! -d "$bundle/wheels" ]]; then
  echo "$bundle/wheels not found: run benchmarks/accelerator_bundle.sh" >&2
  exit 2
fi
site="${TMPDIR:-/tmp}/keras_ga_site"
python="${PYTHON:-python3}"  # the interpreter with JAX and PyTorch
"$python" -m pip install --quiet --disable-pip-version-check --no-index \
  --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
  "$bundle"/wheels/*.whl
export PYTHONPATH="$site:$PWD"
export KERAS_BACKEND=jax
export KERAS_GA_DATA="$PWD/$bundle/data"
export KERAS_GA_CACHE="${TMPDIR:-/tmp}/keras_ga_cache"
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/accelerator}"
mkdir -p "$out"
"$python" - <<'PY'
import importlib.util
import jax, keras
print("python", __import__("sys").version.split()[0], "| jax", jax.__version__,
      jax.devices(), "| keras", keras.__version__, keras.backend.backend())
print("tensorflow importable:", importlib.util.find_spec("tensorflow") is not None)
PY
"$python" -m benchmarks.accelerator --output_dir="$out" "$@" 2>&1 \
  | tee "$out/log.txt"

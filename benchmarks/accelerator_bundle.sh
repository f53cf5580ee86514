#!/usr/bin/env bash
# Prepares what the accelerator script (benchmarks/accelerator_run.sh)
# carries to an air-gapped GPU machine that has Python 3.12, JAX with CUDA
# and PyTorch, but no TensorFlow, no Keras and no network:
#
#   build/accelerator/wheels/  Keras and the dependencies of Keras that such
#                              a machine lacks (namex, optree), as wheels for
#                              CPython 3.12 on x86-64 Linux, at the versions
#                              installed here;
#   build/accelerator/data/    Omniglot's two zips, for the training run.
#
# build/ is ignored by git. Run it from anywhere, with internet access to
# PyPI and Omniglot in $KERAS_GA_DATA (or ~/.keras_ga/data):
#
#   bash benchmarks/accelerator_bundle.sh
#
# Then, on the GPU machine, from a copy of the repository that holds
# build/accelerator: bash benchmarks/accelerator_run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=build/accelerator
data="${KERAS_GA_DATA:-$HOME/.keras_ga/data}"
python_version="${ACCELERATOR_PYTHON:-3.12}"
# What Keras needs beyond the accelerator image's packages (absl-py, h5py,
# ml-dtypes, numpy, packaging, rich and its dependencies are there).
packages=(keras namex optree)

rm -rf "$out"
mkdir -p "$out/wheels" "$out/data/omniglot"
for package in "${packages[@]}"; do
  version="$(python -c "import importlib.metadata as m; print(m.version('$package'))")"
  python -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --python-version "$python_version" \
    --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$out/wheels" "$package==$version"
done
for zip in images_background.zip images_evaluation.zip; do
  cp "$data/omniglot/$zip" "$out/data/omniglot/"
done
du -sh "$out"
ls "$out/wheels"

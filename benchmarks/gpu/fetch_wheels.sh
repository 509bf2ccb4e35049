#!/usr/bin/env bash
# Run HERE (a machine with pip and the package registry), in the repository
# root: downloads the wheels the GPU machine lacks into .whl/ (ignored by
# git; carried to the GPU machine). The GPU machine's image has Python 3.12,
# JAX with CUDA, torch, torchvision, numpy, pillow, pyyaml, h5py, rich,
# absl-py, ml-dtypes and packaging; keras-ssd itself runs from the source
# tree there (PYTHONPATH), so only these four are needed (about 3 MB).
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl \
    keras==3.15.1 namex==0.1.0 optree==0.20.0 defusedxml==0.7.1
ls -l .whl

#!/usr/bin/env bash
# Download here (PyPI is reachable) the wheels the GPU check needs beyond the GPU image's PyTorch,
# Triton and Lightning: the packages in bench/gpu_wheels.txt and their dependencies, for CPython 3.12
# manylinux x86_64, into bench/.gpu_wheels/ (git-ignored; it travels with the working tree). Prints
# the line that installs them there, with no network.
#
#   bench/gpu_wheels.sh [DEST]        (default bench/.gpu_wheels)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-$here/.gpu_wheels}"
pip="${PIP:-python3 -m pip}"
mkdir -p "$dest"
# binary wheels only, for the GPU machine's interpreter and platform (not this machine's)
$pip download --quiet --dest "$dest" --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --python-version 3.12 --implementation cp --abi cp312 \
    -r "$here/gpu_wheels.txt"
names=$(sed -e 's/#.*//' -e 's/[<>=!~ ;].*//' "$here/gpu_wheels.txt" | grep -v '^$' | tr '\n' ' ')
echo "wheels in $dest:"
ls -1 "$dest"
echo "install on the GPU machine (from the repository root):"
echo "  python3 -m pip install --no-index --find-links bench/.gpu_wheels $names"

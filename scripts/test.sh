#!/usr/bin/env bash
# Set up, build and test in one: installs the Debian dependencies, configures a Release build in
# build/ (the CUDA backend too when nvcc is found), builds everything and runs the whole suite.
# CUDA tests are reported as "Skipped" with the reason on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PATH:/usr/local/cuda/bin"
jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${MINIDL_CMAKE_ARGS:-}
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900

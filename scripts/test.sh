#!/usr/bin/env bash
# Set up, build and test in one: installs the Debian dependencies, configures a Release build in
# build/ (the CUDA backend too when nvcc is found), builds everything and runs the whole suite;
# then builds the CUDA backend for cudasim, the CPU emulator of CUDA, in build-sim/ and runs every
# CUDA test there (cuDNN excepted, which needs a GPU), with the race and protect modes.
# On a machine without a GPU the CUDA tests of build/ report "Skipped" with the reason; their
# hand-written kernels are exercised by build-sim/. MINIDL_SKIP_SIM=1 skips the emulator tree.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PATH:/usr/local/cuda/bin"
jobs=$(nproc)
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" ${MINIDL_CMAKE_ARGS:-}
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900
if [ "${MINIDL_SKIP_SIM:-0}" != 1 ]; then
  cmake -S . -B build-sim -G Ninja -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA_SIM=ON "${launcher[@]}" \
    ${MINIDL_CMAKE_ARGS:-}
  cmake --build build-sim -j "$jobs"
  ctest --test-dir build-sim --output-on-failure -j "$jobs" --timeout 900
fi

#!/usr/bin/env bash
# Installs minidl's build dependencies from Debian packages (run as root, or with sudo available).
# The CUDA toolkit with cuDNN and cuBLAS is expected at /usr/local/cuda (nvcc on PATH); without it
# minidl builds CPU-only.
set -euo pipefail
packages=(cmake ninja-build g++ ccache catch2 libfmt-dev libopenblas-dev libopenblas-openmp-dev libcli11-dev nlohmann-json3-dev libstb-dev libdnnl-dev openmpi-bin libopenmpi-dev libturbojpeg0-dev libpng-dev python3-onnx)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit found ($(PATH=$PATH:/usr/local/cuda/bin nvcc --version | tail -1)); the CUDA backend will be built"
else
  echo "setup: no nvcc; minidl will be built CPU-only"
fi

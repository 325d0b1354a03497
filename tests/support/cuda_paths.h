// The CUDA kernel paths a test runs on. On a GPU: all of them. Under cudasim (the CPU emulator of
// CUDA, built with -DMINIDL_CUDA_SIM=ON) cuDNN is not emulated, so the cuDNN path is left out and
// the test says so in its output (WARN); scripts/gpu-check.sh runs it on a real GPU.
#pragma once

#include <catch2/catch.hpp>

#include <initializer_list>
#include <vector>

#include "kernels/kernel_path.h"

namespace minidl::test {

inline bool path_emulated(KernelPath p) { return !(MINIDL_CUDA_SIM && p == KernelPath::Cudnn); }

inline std::vector<KernelPath> cuda_paths(std::initializer_list<KernelPath> wanted = {
                                              KernelPath::Handwritten, KernelPath::Cublas,
                                              KernelPath::Cudnn}) {
  std::vector<KernelPath> out;
  for (KernelPath p : wanted) {
    if (!path_emulated(p)) {
      WARN("skipping the " << kernel_path_name(p)
                           << " path: cuDNN is not emulated by cudasim (runs on a GPU: "
                              "scripts/gpu-check.sh)");
      continue;
    }
    out.push_back(p);
  }
  return out;
}

}  // namespace minidl::test

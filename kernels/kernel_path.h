// Which implementation an op uses on a CUDA device. On the CPU this choice is ignored; the CPU
// path is chosen once per run by kernels/cpu_kernels.h (handwritten | onednn).
//
//   Handwritten: minidl's own kernels only: im2col + our tiled SGEMM for convolution and linear
//                layers, our reductions for batchnorm, our pooling/activation/loss kernels.
//   Cublas:      as Handwritten, but every matrix product goes to cuBLAS (im2col conv on cuBLAS).
//   Cudnn:       cuDNN for convolution, batchnorm, pooling and activations; cuBLAS for matrix
//                products; our kernels for what cuDNN lacks (loss, dropout, optimizer). Default.
#pragma once

#include <string>

#include "core/error.h"

namespace minidl {

enum class KernelPath { Handwritten, Cublas, Cudnn };

inline const char* kernel_path_name(KernelPath p) {
  switch (p) {
    case KernelPath::Handwritten: return "handwritten";
    case KernelPath::Cublas: return "cublas";
    case KernelPath::Cudnn: return "cudnn";
  }
  return "?";
}

inline KernelPath parse_kernel_path(const std::string& s) {
  if (s == "handwritten") return KernelPath::Handwritten;
  if (s == "cublas") return KernelPath::Cublas;
  if (s == "cudnn") return KernelPath::Cudnn;
  throw_error(str("kernel path '", s, "': expected handwritten, cublas or cudnn"));
}

}  // namespace minidl

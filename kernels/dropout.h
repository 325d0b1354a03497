// Inverted dropout, as torch.nn.Dropout in training mode:
//   keep_i = u_i >= p with u_i = uniform_from_word(philox_word(seed, offset + i))   (core/rng.h)
//   y_i = keep_i ? x_i / (1 - p) : 0;   mask_i = keep_i (uint8)
//   dx_i = mask_i ? dy_i / (1 - p) : 0
// The mask is a pure function of (seed, offset, i), so the CPU and the GPU draw the same mask.
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

// Backends: `cpu-reference`, `cuda-handwritten` (kernels/backend.h).
const OpInfo& dropout_op();
Backend select_dropout_backend(const Device& d, DType dtype);
// Each function below comes in a selecting form and an explicit one (first argument a Backend).

void dropout_forward(Tensor& y, Tensor& mask, const Tensor& x, double p, uint64_t seed,
                     uint64_t offset);
void dropout_forward(Backend b, Tensor& y, Tensor& mask, const Tensor& x, double p, uint64_t seed,
                     uint64_t offset);
void dropout_backward(Tensor& dx, const Tensor& dy, const Tensor& mask, double p);
void dropout_backward(Backend b, Tensor& dx, const Tensor& dy, const Tensor& mask, double p);

namespace cuda {
// T: float, bf16 or f16 (instantiated in dropout.cu; 16-bit values, float32 math).
template <typename T>
void dropout_forward(T* y, uint8_t* mask, const T* x, int64_t n, float p, uint64_t seed,
                     uint64_t offset, CudaContext& ctx);
void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, float p,
                      CudaContext& ctx);
template <typename T>
void dropout_backward(T* dx, const T* dy, const uint8_t* mask, int64_t n, float p,
                      CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

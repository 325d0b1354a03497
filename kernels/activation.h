// Pointwise activations, forward and backward.
//
//   ReLU       y = max(x, 0)                    dx = dy * [x > 0]
//   LeakyReLU  y = x > 0 ? x : a x              dx = dy * (x > 0 ? 1 : a)
//   Sigmoid    y = 1 / (1 + e^-x)               dx = dy * y (1 - y)
//   Tanh       y = tanh x                       dx = dy * (1 - y^2)
//
// backward takes both x and y: ReLU/LeakyReLU read x, Sigmoid/Tanh read y (cheaper than
// recomputing). Backends: cpu-reference; cuda-handwritten (one thread per element);
// cuda-vendor = cudnnActivationForward/Backward, selected where cuDNN has the function (all but
// LeakyReLU) and the tensor has fewer than 2^31 elements.
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

enum class Activation { ReLU, LeakyReLU, Sigmoid, Tanh };
const char* activation_name(Activation a);

const OpInfo& activation_op();
Backend select_activation_backend(const Device& d, DType dtype, Activation act, int64_t numel);

void activation_forward(Tensor& y, const Tensor& x, Activation act, double slope = 0.01);
void activation_forward(Backend b, Tensor& y, const Tensor& x, Activation act, double slope = 0.01);
void activation_backward(Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                         Activation act, double slope = 0.01);
void activation_backward(Backend b, Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                         Activation act, double slope = 0.01);

namespace cuda {
// `vendor`: cuDNN (cuda-vendor) instead of our kernel (cuda-handwritten). T: float, bf16 or f16
// (instantiated in activation.cu; 16-bit values, float32 math).
template <typename T>
void activation_forward(T* y, const T* x, int64_t n, Activation act, float slope, bool vendor,
                        CudaContext& ctx);
template <typename T>
void activation_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, Activation act,
                         float slope, bool vendor, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

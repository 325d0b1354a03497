// Pointwise activations, forward and backward.
//
//   ReLU       y = max(x, 0)                    dx = dy * [x > 0]
//   LeakyReLU  y = x > 0 ? x : a x              dx = dy * (x > 0 ? 1 : a)
//   Sigmoid    y = 1 / (1 + e^-x)               dx = dy * y (1 - y)
//   Tanh       y = tanh x                       dx = dy * (1 - y^2)
//
// backward takes both x and y: ReLU/LeakyReLU read x, Sigmoid/Tanh read y (cheaper than
// recomputing). The Cudnn path uses cudnnActivationForward/Backward where cuDNN has the function
// (all but LeakyReLU); the other paths use our kernels.
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/kernel_path.h"

namespace minidl {

enum class Activation { ReLU, LeakyReLU, Sigmoid, Tanh };
const char* activation_name(Activation a);

void activation_forward(Tensor& y, const Tensor& x, Activation act, double slope = 0.01,
                        KernelPath path = KernelPath::Cudnn);
void activation_backward(Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                         Activation act, double slope = 0.01, KernelPath path = KernelPath::Cudnn);

namespace cuda {
void activation_forward(float* y, const float* x, int64_t n, Activation act, float slope,
                        KernelPath path, CudaContext& ctx);
void activation_backward(float* dx, const float* dy, const float* x, const float* y, int64_t n,
                         Activation act, float slope, KernelPath path, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

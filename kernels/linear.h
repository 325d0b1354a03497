// Fully connected layer, as torch.nn.Linear: x (N, in), w (out, in), b (out), y (N, out).
//
//   forward:  y  = x w^T + b
//   backward: dx = dy w            (overwritten)
//             dw += dy^T x         (accumulated)
//             db += sum_n dy[n]    (accumulated)
// Backends: cpu-reference, cuda-handwritten, cuda-cublas; all three products run on gemm() with
// the same backend (kernels/gemm.h). The bias is added by the layout primitive that also serves
// the convolution (knl_to_nkl with L = 1, kernels/layout.h) and db is its channel sum
// (channel_sum_accumulate with L = 1).
#pragma once

#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

const OpInfo& linear_op();
Backend select_linear_backend(const Device& d, DType dtype);

void linear_forward(Tensor& y, const Tensor& x, const Tensor& w, const Tensor* b);
void linear_forward(Backend be, Tensor& y, const Tensor& x, const Tensor& w, const Tensor* b);
void linear_backward(Tensor* dx, Tensor& dw, Tensor* db, const Tensor& dy, const Tensor& x,
                     const Tensor& w);
void linear_backward(Backend be, Tensor* dx, Tensor& dw, Tensor* db, const Tensor& dy,
                     const Tensor& x, const Tensor& w);

}  // namespace minidl

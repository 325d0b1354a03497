// Fully connected layer, as torch.nn.Linear: x (N, in), w (out, in), b (out), y (N, out).
//
//   forward:  y  = x w^T + b
//   backward: dx = dy w            (overwritten)
//             dw += dy^T x         (accumulated)
//             db += sum_n dy[n]    (accumulated)
// All three products go through gemm() (kernels/gemm.h), so the kernel path picks our SGEMM or
// cuBLAS; the bias is added by the same transposing kernel the convolution uses (knl_to_nkl with
// L = 1) and db by its channel sum (channel_sum_accumulate with L = 1).
#pragma once

#include "core/tensor.h"
#include "kernels/kernel_path.h"

namespace minidl {

void linear_forward(Tensor& y, const Tensor& x, const Tensor& w, const Tensor* b,
                    KernelPath path = KernelPath::Cudnn);
void linear_backward(Tensor* dx, Tensor& dw, Tensor* db, const Tensor& dy, const Tensor& x,
                     const Tensor& w, KernelPath path = KernelPath::Cudnn);

}  // namespace minidl

// Pooling over NCHW windows (PyTorch semantics: floor output size, padding never selected by max,
// average counts padded positions (count_include_pad=True)).
//
//   P = (H + 2 pad - k) / stride + 1, Q likewise.
//   max:  y[n,c,p,q] = max over the window;  argmax keeps the flat index h*W + w of the winner
//         (first one on ties), backward routes dy there: dx[argmax] += dy.
//   avg:  y = sum over the window / k^2;  dx[window] += dy / k^2.
//   global average: y[n,c] = mean over H*W;  dx = dy / (H*W).
// dx is overwritten. The Cudnn path uses cudnnPoolingForward/Backward (which needs x and y
// instead of argmax).
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/kernel_path.h"

namespace minidl {

struct Pool2dParams {
  int kernel = 2;
  int stride = 2;
  int pad = 0;
};

// Output shape for x (N, C, H, W); throws naming `who` when the window does not fit.
Shape pool2d_output_shape(const Shape& x, Pool2dParams p, const char* who);

void maxpool2d_forward(Tensor& y, Tensor& argmax, const Tensor& x, Pool2dParams p,
                       KernelPath path = KernelPath::Cudnn);
void maxpool2d_backward(Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                        const Tensor& argmax, Pool2dParams p, KernelPath path = KernelPath::Cudnn);
void avgpool2d_forward(Tensor& y, const Tensor& x, Pool2dParams p,
                       KernelPath path = KernelPath::Cudnn);
void avgpool2d_backward(Tensor& dx, const Tensor& dy, Pool2dParams p,
                        KernelPath path = KernelPath::Cudnn);
// y (N, C, 1, 1)
void global_avgpool_forward(Tensor& y, const Tensor& x);
void global_avgpool_backward(Tensor& dx, const Tensor& dy);

namespace cuda {
struct PoolGeometry {
  int64_t N, C, H, W, P, Q;
  int kernel, stride, pad;
};
void maxpool2d_forward(float* y, int32_t* argmax, const float* x, const PoolGeometry& g,
                       KernelPath path, CudaContext& ctx);
void maxpool2d_backward(float* dx, const float* dy, const float* x, const float* y,
                        const int32_t* argmax, const PoolGeometry& g, KernelPath path,
                        CudaContext& ctx);
void avgpool2d_forward(float* y, const float* x, const PoolGeometry& g, KernelPath path,
                       CudaContext& ctx);
void avgpool2d_backward(float* dx, const float* dy, const PoolGeometry& g, KernelPath path,
                        CudaContext& ctx);
void global_avgpool_forward(float* y, const float* x, int64_t NC, int64_t HW, CudaContext& ctx);
void global_avgpool_backward(float* dx, const float* dy, int64_t NC, int64_t HW, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

// Pooling over the H x W windows of NCHW and NHWC tensors (PyTorch semantics: floor output size,
// padding never selected by max, average counts padded positions (count_include_pad=True)).
//
// Layouts (core/tensor.h): x, y, dx, dy and argmax of one call share one layout, NCHW or NHWC
// (channels-last); outputs must be allocated in the input's (x's, or dx's for a backward) layout,
// and a mixed call is an error naming the op and both tensors. argmax means the same in both: the
// pixel h*W + w of the winner inside its (n, c) plane, stored at y's position of the window. The
// global average pool's y and dy, (N, C, 1, 1), have the same memory in both layouts (either label
// is taken; a channels-last model labels them NHWC); dx follows dx's layout. Every backend takes
// both layouts at every dtype of its row.
//
//   P = (H + 2 pad - k) / stride + 1, Q likewise.
//   max:  y[n,c,p,q] = max over the window;  argmax keeps the flat index h*W + w of the winner
//         (first one on ties), backward routes dy there: dx[argmax] += dy.
//   avg:  y = sum over the window / k^2;  dx[window] += dy / k^2.
//   global average: y[n,c] = mean over H*W;  dx = dy / (H*W).
// dx is overwritten.
// Backends: cpu-reference; cuda-handwritten (one thread per output, resp. input, element; a warp
// per plane for the global average, one thread per (n, c) in NHWC); cuda-vendor =
// cudnnPoolingForward/Backward for max and average pooling. cuDNN's max-pooling backward needs x
// and y instead of argmax (its forward leaves argmax unwritten), and its average backward would
// need them too, so avgpool2d_backward runs our kernel on both CUDA backends. Global average
// pooling is ours on every path.
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

struct Pool2dParams {
  int kernel = 2;
  int stride = 2;
  int pad = 0;
};

// Output shape for x (N, C, H, W); throws naming `who` when the window does not fit.
Shape pool2d_output_shape(const Shape& x, Pool2dParams p, const char* who);

const OpInfo& maxpool2d_op();
const OpInfo& avgpool2d_op();
const OpInfo& global_avgpool_op();
// The shared rule of each op (kernels/backend.h), from x's device and dtype.
Backend select_maxpool2d_backend(const Device& d, DType dtype);
Backend select_avgpool2d_backend(const Device& d, DType dtype);
Backend select_global_avgpool_backend(const Device& d, DType dtype);

void maxpool2d_forward(Tensor& y, Tensor& argmax, const Tensor& x, Pool2dParams p);
void maxpool2d_forward(Backend b, Tensor& y, Tensor& argmax, const Tensor& x, Pool2dParams p);
void maxpool2d_backward(Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                        const Tensor& argmax, Pool2dParams p);
void maxpool2d_backward(Backend b, Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                        const Tensor& argmax, Pool2dParams p);
void avgpool2d_forward(Tensor& y, const Tensor& x, Pool2dParams p);
void avgpool2d_forward(Backend b, Tensor& y, const Tensor& x, Pool2dParams p);
void avgpool2d_backward(Tensor& dx, const Tensor& dy, Pool2dParams p);
void avgpool2d_backward(Backend b, Tensor& dx, const Tensor& dy, Pool2dParams p);
// y (N, C, 1, 1)
void global_avgpool_forward(Tensor& y, const Tensor& x);
void global_avgpool_forward(Backend b, Tensor& y, const Tensor& x);
void global_avgpool_backward(Tensor& dx, const Tensor& dy);
void global_avgpool_backward(Backend b, Tensor& dx, const Tensor& dy);

namespace cuda {
struct PoolGeometry {
  int64_t N, C, H, W, P, Q;
  int kernel, stride, pad;
  Layout layout;  // of x, y, dx, dy and argmax
};
// `vendor`: cuDNN (cuda-vendor) instead of our kernel (cuda-handwritten). T: float, bf16 or f16
// (instantiated in pooling.cu; 16-bit values, float32 math).
template <typename T>
void maxpool2d_forward(T* y, int32_t* argmax, const T* x, const PoolGeometry& g, bool vendor,
                       CudaContext& ctx);
template <typename T>
void maxpool2d_backward(T* dx, const T* dy, const T* x, const T* y, const int32_t* argmax,
                        const PoolGeometry& g, bool vendor, CudaContext& ctx);
template <typename T>
void avgpool2d_forward(T* y, const T* x, const PoolGeometry& g, bool vendor, CudaContext& ctx);
template <typename T>
void avgpool2d_backward(T* dx, const T* dy, const PoolGeometry& g, CudaContext& ctx);
// x / dx (N, C, H, W) with HW = H*W in `layout`; y / dy (N, C).
template <typename T>
void global_avgpool_forward(T* y, const T* x, int64_t N, int64_t C, int64_t HW, Layout layout,
                            CudaContext& ctx);
template <typename T>
void global_avgpool_backward(T* dx, const T* dy, int64_t N, int64_t C, int64_t HW, Layout layout,
                             CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

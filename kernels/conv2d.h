// 2-D convolution (cross-correlation, as in PyTorch), dilation 1, groups 1; activations NCHW or
// NHWC (channels-last).
//
//   x (N, C, H, W), w (K, C, R, S), bias (K) or none, y (N, K, P, Q)
//   P = (H + 2 pad - R) / stride + 1,  Q = (W + 2 pad - S) / stride + 1
//   y[n,k,p,q] = bias[k] + sum_{c,r,s} w[k,c,r,s] x[n, c, p*stride - pad + r, q*stride - pad + s]
//
// Layouts (core/tensor.h): shapes are always the logical (N, C, H, W). The activations of one call
// (x, y, dx, dy) share one layout, NCHW or NHWC, and the output takes the input's; a mixed call is
// an error naming the op and both tensors. The weight w and its gradient dw are (K, C, R, S) in
// NCHW (PyTorch's OIHW) in both modes, so checkpoints and the optimizer never see a layout; a
// backend that wants another filter layout transposes inside the backend (cuDNN: KRSC, below).
// bias, db: 1-D. Every backend takes both layouts at every dtype it computes.
//
// im2col turns the sum into one matrix product. For a chunk of nb images (L = P*Q, CRS = C*R*S),
// NCHW:
//   col (CRS, nb*L):  col[(c,r,s), (n,p,q)] = x[n, c, p*stride-pad+r, q*stride-pad+s] (0 outside)
//   forward          Y' (K, nb*L)   = W (K, CRS) * col             then Y' -> y (n,k,pq) + bias
//   backward data    dcol (CRS, nbL) = W^T * dY'                    then col2im (scatter-add) -> dx
//   backward weight  dW (K, CRS)    += dY' * col^T
// where dY' is dy rearranged to (K, nb*L). NHWC: one row of col per output pixel, its columns in
// w's own (c, r, s) order, so no weight copy is needed and y, dy are (nb*L, K) matrices as they
// lie:
//   col (nb*L, CRS):  col[(n,p,q), (c,r,s)] = x[n, c, p*stride-pad+r, q*stride-pad+s] (0 outside)
//   forward          Y' (K, nb*L)   = W * col^T                     then Y'^T + bias -> y (nbL, K)
//   backward data    dcol (nbL, CRS) = dY (nbL, K) * W               then col2im -> dx
//   backward weight  dW (K, CRS)    += dY^T * col
// backward bias (both):  db[k] += sum_{n,p,q} dy[n,k,p,q]. Derivation: docs/backprop/conv2d.md.
//
// Backends (kernels/backend.h; conv2d_op() lists them):
//   cpu-reference, cuda-handwritten, cuda-cublas   the algorithm above, written once (conv2d.cpp)
//       over device-generic primitives (im2col, col2im in either arrangement, the (n,k,pq) <->
//       (k,n,pq) rearrangements of kernels/layout.h, gemm on the same backend). On the CPU a 1x1
//       stride-1 unpadded convolution skips im2col (col would be x itself): NCHW per image,
//       Y_n = W X_n, dX_n = W^T dY_n, dW += dY_n X_n^T; NHWC x is the (N*H*W, C) matrix col
//       would be, so Y = X W^T, dX = dY W, dW += dY^T X over the whole batch.
//   cpu-fast      oneDNN, float32 and bfloat16 (conv2d_onednn.cpp, primitives cached per shape,
//                 dtype and layout; bfloat16 only on CPUs with AVX512_BF16, kernels/backend.h).
//
// bfloat16/float16 (mixed precision): x, w, y, dy, dx are 16-bit; bias, dw and db are float32
// (the master weights' side), every sum accumulates in float32 and each output is rounded once.
// cpu-reference computes them as float32 copies (exact) through the float32 algorithm.
// cuda-handwritten and cuda-cublas run the algorithm on the 16-bit tensors: im2col in 16 bits (a
// copy), the products on gemm_lowp (16-bit operands, float32 results: tensor cores, or cuBLAS's
// GemmEx), bias, col2im and the layout changes in float32 on those results, each 16-bit output
// rounded once. NCHW backward data reads dy in place (one strided-batched product per chunk, W
// repeated); NCHW backward weight rearranges dy to (k, n, l) in 16 bits (kernels/layout.h); NHWC
// reads dy in place in both.
//   cuda-vendor   cuDNN (conv2d.cu; algorithms chosen once per shape and layout, cached with the
//                 workspace). NHWC describes x, y, dx, dy as CUDNN_TENSOR_NHWC and the
//                 filter as NHWC (KRSC), a copy of w transposed per call into the workspace; dw is
//                 computed into a KRSC scratch and added back transposed. bfloat16/float16: cuDNN
//                 runs the forward without bias and backward data (16-bit data, float32 compute,
//                 tensor-op math); the weight gradient (cuDNN would write it in 16 bits) and a
//                 biased forward (cuDNN would round y before the bias) run as cuda-cublas computes
//                 them. Never run on a GPU yet.
// select_conv2d_backend applies the shared rule with no condition of its own.
//
// Gradient rule: dx is overwritten, dw and db accumulate.
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"
#include "kernels/layout.h"

namespace minidl {

struct Conv2dParams {
  int stride = 1;
  int pad = 0;
};

struct ConvGeometry {
  int64_t N, C, H, W;  // input
  int64_t K, R, S;     // filters
  int64_t P, Q;        // output spatial
  int stride, pad;
  Layout layout = Layout::NCHW;  // of the activations x, y, dx, dy (w is always KCRS)
  // Validates shapes and computes P, Q; errors name `who`.
  static ConvGeometry make(const Shape& x, const Shape& w, Conv2dParams p, const char* who,
                           Layout layout = Layout::NCHW);
};

const OpInfo& conv2d_op();
Backend select_conv2d_backend(const Device& d, DType dtype);

// Selecting (from x's, resp. dy's, device, dtype and the device's settings) and explicit forms.
void conv2d_forward(Tensor& y, const Tensor& x, const Tensor& w, const Tensor* bias,
                    Conv2dParams p);
void conv2d_forward(Backend b, Tensor& y, const Tensor& x, const Tensor& w, const Tensor* bias,
                    Conv2dParams p);
void conv2d_backward_data(Tensor& dx, const Tensor& dy, const Tensor& w, Conv2dParams p);
void conv2d_backward_data(Backend b, Tensor& dx, const Tensor& dy, const Tensor& w, Conv2dParams p);
void conv2d_backward_weight(Tensor& dw, const Tensor& dy, const Tensor& x, Conv2dParams p);
void conv2d_backward_weight(Backend b, Tensor& dw, const Tensor& dy, const Tensor& x,
                            Conv2dParams p);
// db += the channel sum of dy, on every backend (kernels/layout.h).
void conv2d_backward_bias(Tensor& db, const Tensor& dy);

// ---- primitives (device-generic; `x`/`col` etc. are raw pointers on `dev`) ----
// In g.layout's arrangement (above): NCHW col (C*R*S, nb*P*Q) gets image n at column offset
// n*P*Q; NHWC col (nb*P*Q, C*R*S) gets output pixel (n, p, q) as row (n*P + p)*Q + q.
template <typename T>
void im2col(Device dev, T* col, const T* x, int64_t nb, const ConvGeometry& g);
// dx (nb images, g.layout) = scatter-add of col (g.layout's arrangement); dx is overwritten.
template <typename T>
void col2im(Device dev, T* dx, const T* col, int64_t nb, const ConvGeometry& g);
#if MINIDL_HAVE_DNNL
// oneDNN path on the CPU (raw host pointers, shapes as in `g`; same rules as above). x, w, y, dx,
// dy have dtype `t` (float32 or bfloat16); bias and dw are float32 (accumulation in float32).
namespace onednn {
void conv2d_forward(void* y, const void* x, const void* w, const float* bias,
                    const ConvGeometry& g, DType t);
void conv2d_backward_data(void* dx, const void* dy, const void* w, const ConvGeometry& g, DType t);
void conv2d_backward_weight(float* dw, const void* dy, const void* x, const ConvGeometry& g,
                            DType t);
}  // namespace onednn
#endif

namespace cuda {
// The primitives above (arrangement by g.layout).
void im2col(float* col, const float* x, int64_t nb, const ConvGeometry& g, CudaContext& ctx);
// The same for bfloat16/float16 (the 16-bit patterns copied, exact).
void im2col16(uint16_t* col, const uint16_t* x, int64_t nb, const ConvGeometry& g,
              CudaContext& ctx);
void col2im(float* dx, const float* col, int64_t nb, const ConvGeometry& g, CudaContext& ctx);
// cuDNN path: y = conv(x, w) (+ bias); dx = conv^T(dy, w); dw += ...; (accumulate as above).
void conv2d_forward_cudnn(float* y, const float* x, const float* w, const float* bias,
                          const ConvGeometry& g, CudaContext& ctx);
void conv2d_backward_data_cudnn(float* dx, const float* dy, const float* w, const ConvGeometry& g,
                                CudaContext& ctx);
void conv2d_backward_weight_cudnn(float* dw, const float* dy, const float* x, const ConvGeometry& g,
                                  CudaContext& ctx);
// The same forward (without bias) and backward data in bfloat16/float16 (t): 16-bit x, w, y, dy,
// dx, float32 accumulation on tensor-op math (cuda-vendor's 16-bit row; conv2d.cpp says which
// parts of a 16-bit convolution run here).
void conv2d_forward_cudnn16(void* y, const void* x, const void* w_kcrs, DType t,
                            const ConvGeometry& g, CudaContext& ctx);
void conv2d_backward_data_cudnn16(void* dx, const void* dy, const void* w_kcrs, DType t,
                                  const ConvGeometry& g, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

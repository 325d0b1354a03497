// Batch normalisation over (N, H, W) per channel, as torch.nn.BatchNorm2d, in NCHW and NHWC.
//
// Layouts (core/tensor.h): x, y, dx and dy of one call share one layout, NCHW or NHWC
// (channels-last), and the outputs must be allocated in x's layout; a mixed call is an error
// naming the op and both tensors. The per-channel vectors (gamma, beta, their gradients, the saved
// and running statistics) are 1-D and have no layout. The statistics are the same in both: per
// channel over the M = N*H*W values, the running variance unbiased with that same M. Every
// backend takes both layouts at every dtype of its row (an NHWC tensor is exactly the
// (N*H*W, C, 1) case of an (N, C, HW) one; the CPU loops walk its rows with the channels
// innermost and the CUDA kernels reduce with consecutive threads on consecutive channels:
// batchnorm.cpp, batchnorm.cu).
//
// Train:  mean_c = E[x],  var_c = E[(x - mean_c)^2] (biased, used to normalise)
//         invstd_c = 1 / sqrt(var_c + eps),  xhat = (x - mean_c) invstd_c,  y = gamma_c xhat +
//         beta_c running_mean = (1 - m) running_mean + m mean_c running_var  = (1 - m) running_var
//         + m var_c * M / (M - 1)   (unbiased; M = N*H*W) save_mean, save_invstd keep mean_c and
//         invstd_c for backward.
// Eval:   y = gamma_c (x - running_mean_c) / sqrt(running_var_c + eps) + beta_c
//
// Backward (train), with M = N*H*W and sums over (n, h, w) of channel c:
//   dbeta_c  += sum dy
//   dgamma_c += sum dy * xhat
//   dx = gamma_c invstd_c / M * (M dy - sum dy - xhat sum(dy xhat))
// Backward (eval): the statistics are constants, so dx = dy gamma_c / sqrt(running_var_c + eps).
// Derivation: docs/backprop/batchnorm.md. dx is overwritten; dgamma and dbeta accumulate.
//
// Backends: cpu-reference; cuda-handwritten (batchnorm.cu: per-channel partial sums in float64,
// then an elementwise pass); cuda-vendor = cudnnBatchNormalizationForwardTraining/Inference and
// Backward (spatial mode), selected only when eps >= CUDNN_BN_MIN_EPSILON (0 in cuDNN 9, 1e-5 in
// cuDNN 7), by one rule for forward and backward so that a step never mixes the two. cuDNN has no
// eval-mode backward: batchnorm_backward_eval runs our kernel for every CUDA backend.
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

struct BatchNormParams {
  double momentum = 0.1;
  double eps = 1e-5;
};

// CUDNN_BN_MIN_EPSILON of the cuDNN minidl is built with (9.x), for code that does not include
// cudnn.h; batchnorm.cu checks the copy at compile time.
inline constexpr double kCudnnBnMinEpsilon = 0.0;

const OpInfo& batchnorm_op();
Backend select_batchnorm_backend(const Device& d, DType dtype, BatchNormParams p);

// Each op in a selecting form (select_batchnorm_backend on x) and an explicit one.
void batchnorm_forward_train(Tensor& y, Tensor& save_mean, Tensor& save_invstd,
                             Tensor& running_mean, Tensor& running_var, const Tensor& x,
                             const Tensor& gamma, const Tensor& beta, BatchNormParams p);
void batchnorm_forward_train(Backend b, Tensor& y, Tensor& save_mean, Tensor& save_invstd,
                             Tensor& running_mean, Tensor& running_var, const Tensor& x,
                             const Tensor& gamma, const Tensor& beta, BatchNormParams p);
void batchnorm_forward_eval(Tensor& y, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var,
                            BatchNormParams p);
void batchnorm_forward_eval(Backend b, Tensor& y, const Tensor& x, const Tensor& gamma,
                            const Tensor& beta, const Tensor& running_mean,
                            const Tensor& running_var, BatchNormParams p);
void batchnorm_backward_train(Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy,
                              const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
                              const Tensor& save_invstd, BatchNormParams p);
void batchnorm_backward_train(Backend b, Tensor& dx, Tensor& dgamma, Tensor& dbeta,
                              const Tensor& dy, const Tensor& x, const Tensor& gamma,
                              const Tensor& save_mean, const Tensor& save_invstd,
                              BatchNormParams p);
void batchnorm_backward_eval(Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy,
                             const Tensor& x, const Tensor& gamma, const Tensor& running_mean,
                             const Tensor& running_var, BatchNormParams p);
void batchnorm_backward_eval(Backend b, Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy,
                             const Tensor& x, const Tensor& gamma, const Tensor& running_mean,
                             const Tensor& running_var, BatchNormParams p);

// num_batches_tracked += 1 on the counter's own device without synchronising (BatchNorm2d, train
// mode). The counter is a 0-dim int32 tensor, as in PyTorch's state_dict.
void batchnorm_count_batch(Tensor& num_batches_tracked);

namespace cuda {
void batchnorm_count_batch(int32_t* count, CudaContext& ctx);
// Shapes: x, y, dy, dx (N, C, H, W) with HW = H*W, laid out as `layout` says (NCHW: (N, C, HW)
// planes; NHWC: (N*HW, C) rows); per-channel vectors of length C. T: float, bf16 or f16 for
// x, y, dy, dx (instantiated in batchnorm.cu); the statistics and parameters are always float.
// cuda-handwritten.
template <typename T>
void batchnorm_forward_train(T* y, float* save_mean, float* save_invstd, float* running_mean,
                             float* running_var, const T* x, const float* gamma, const float* beta,
                             int64_t N, int64_t C, int64_t HW, Layout layout, BatchNormParams p,
                             CudaContext& ctx);
template <typename T>
void batchnorm_forward_eval(T* y, const T* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, int64_t N,
                            int64_t C, int64_t HW, Layout layout, BatchNormParams p,
                            CudaContext& ctx);
template <typename T>
void batchnorm_backward_train(T* dx, float* dgamma, float* dbeta, const T* dy, const T* x,
                              const float* gamma, const float* save_mean, const float* save_invstd,
                              int64_t N, int64_t C, int64_t HW, Layout layout, CudaContext& ctx);
template <typename T>
void batchnorm_backward_eval(T* dx, float* dgamma, float* dbeta, const T* dy, const T* x,
                             const float* gamma, const float* running_mean,
                             const float* running_var, int64_t N, int64_t C, int64_t HW,
                             Layout layout, BatchNormParams p, CudaContext& ctx);
// cuda-vendor (never run on a GPU so far: compiled only).
template <typename T>
void batchnorm_forward_train_cudnn(T* y, float* save_mean, float* save_invstd, float* running_mean,
                                   float* running_var, const T* x, const float* gamma,
                                   const float* beta, int64_t N, int64_t C, int64_t HW,
                                   Layout layout, BatchNormParams p, CudaContext& ctx);
template <typename T>
void batchnorm_forward_eval_cudnn(T* y, const T* x, const float* gamma, const float* beta,
                                  const float* running_mean, const float* running_var, int64_t N,
                                  int64_t C, int64_t HW, Layout layout, BatchNormParams p,
                                  CudaContext& ctx);
template <typename T>
void batchnorm_backward_train_cudnn(T* dx, float* dgamma, float* dbeta, const T* dy, const T* x,
                                    const float* gamma, const float* save_mean,
                                    const float* save_invstd, int64_t N, int64_t C, int64_t HW,
                                    Layout layout, BatchNormParams p, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

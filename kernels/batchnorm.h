// Batch normalisation over (N, H, W) per channel, NCHW, as torch.nn.BatchNorm2d.
//
// Train:  mean_c = E[x],  var_c = E[(x - mean_c)^2] (biased, used to normalise)
//         invstd_c = 1 / sqrt(var_c + eps),  xhat = (x - mean_c) invstd_c,  y = gamma_c xhat + beta_c
//         running_mean = (1 - m) running_mean + m mean_c
//         running_var  = (1 - m) running_var  + m var_c * M / (M - 1)   (unbiased; M = N*H*W)
//         save_mean, save_invstd keep mean_c and invstd_c for backward.
// Eval:   y = gamma_c (x - running_mean_c) / sqrt(running_var_c + eps) + beta_c
//
// Backward (train), with M = N*H*W and sums over (n, h, w) of channel c:
//   dbeta_c  += sum dy
//   dgamma_c += sum dy * xhat
//   dx = gamma_c invstd_c / M * (M dy - sum dy - xhat sum(dy xhat))
// Backward (eval): the statistics are constants, so dx = dy gamma_c / sqrt(running_var_c + eps).
// Derivation: docs/backprop/batchnorm.md. dx is overwritten; dgamma and dbeta accumulate.
//
// The Cudnn path uses cudnnBatchNormalizationForwardTraining/Inference and Backward (spatial mode).
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/kernel_path.h"

namespace minidl {

struct BatchNormParams {
  double momentum = 0.1;
  double eps = 1e-5;
};

void batchnorm_forward_train(Tensor& y, Tensor& save_mean, Tensor& save_invstd,
                             Tensor& running_mean, Tensor& running_var, const Tensor& x,
                             const Tensor& gamma, const Tensor& beta, BatchNormParams p,
                             KernelPath path = KernelPath::Cudnn);
void batchnorm_forward_eval(Tensor& y, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var,
                            BatchNormParams p, KernelPath path = KernelPath::Cudnn);
void batchnorm_backward_train(Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy,
                              const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
                              const Tensor& save_invstd, KernelPath path = KernelPath::Cudnn);
void batchnorm_backward_eval(Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy,
                             const Tensor& x, const Tensor& gamma, const Tensor& running_mean,
                             const Tensor& running_var, BatchNormParams p,
                             KernelPath path = KernelPath::Cudnn);

// num_batches_tracked += 1 on the counter's own device without synchronising (BatchNorm2d, train
// mode). The counter is a 0-dim int32 tensor, as in PyTorch's state_dict.
void batchnorm_count_batch(Tensor& num_batches_tracked);

namespace cuda {
void batchnorm_count_batch(int32_t* count, CudaContext& ctx);
// Shapes: x, y, dy, dx (N, C, HW); per-channel vectors of length C.
void batchnorm_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                             float* running_var, const float* x, const float* gamma,
                             const float* beta, int64_t N, int64_t C, int64_t HW,
                             BatchNormParams p, KernelPath path, CudaContext& ctx);
void batchnorm_forward_eval(float* y, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, int64_t N,
                            int64_t C, int64_t HW, BatchNormParams p, KernelPath path,
                            CudaContext& ctx);
void batchnorm_backward_train(float* dx, float* dgamma, float* dbeta, const float* dy,
                              const float* x, const float* gamma, const float* save_mean,
                              const float* save_invstd, int64_t N, int64_t C, int64_t HW,
                              KernelPath path, CudaContext& ctx);
void batchnorm_backward_eval(float* dx, float* dgamma, float* dbeta, const float* dy,
                             const float* x, const float* gamma, const float* running_mean,
                             const float* running_var, int64_t N, int64_t C, int64_t HW,
                             BatchNormParams p, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

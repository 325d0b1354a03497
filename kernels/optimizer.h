// Optimizer updates, each one pass over a flat array of parameters (the model keeps all its
// parameters in one buffer, layers/parameters.h, so on a GPU a step is one launch). Formulas are those of
// torch.optim (single-tensor implementations), step t counted from 1:
//
// SGD:      g = grad + wd p
//           buf = g (t = 1)   |   buf = momentum buf + (1 - dampening) g (t > 1)     [momentum > 0]
//           g = nesterov ? g + momentum buf : buf                                     [momentum > 0]
//           p -= lr g
// Adam:     g = grad + wd p   (Adam)   |   p *= 1 - lr wd   (AdamW, decoupled)
//           m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//           p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Adagrad:  g = grad + wd p;  clr = lr / (1 + (t - 1) lr_decay)
//           sum += g^2;  p -= clr g / (sqrt(sum) + eps)
//
// The scalars that depend only on t (bias corrections, clr) are computed once per step on the host
// in double precision. Every update is purely memory-bound; bytes moved per element in float32:
//   SGD without momentum 12 (read p, grad; write p), SGD with momentum 20 (+ read/write buf),
//   Adam/AdamW 28 (read p, grad, m, v; write p, m, v), Adagrad 20 (read p, grad, sum; write p, sum).
//
// The grad tensor is only read; param and the state tensors are updated in place.
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

struct SgdParams {
  double lr = 0.1, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};
struct AdamParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled = false;  // AdamW
};
struct AdagradParams {
  double lr = 1e-2, lr_decay = 0.0, weight_decay = 0.0, eps = 1e-10;
};

// param, grad and state tensors have the same number of elements, dtype and device (float32 or
// float64 on the CPU, float32 on a GPU). step >= 1. momentum_buf may be undefined when
// momentum == 0 (plain SGD keeps no state).
// Backends: `cpu-reference`, `cuda-handwritten` (kernels/backend.h).
const OpInfo& optimizer_op();
Backend select_optimizer_backend(const Device& d, DType dtype);
// Each function below comes in a selecting form and an explicit one (first argument a Backend).

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const SgdParams& p,
                int64_t step);
void sgd_update(Backend b, Tensor& param, const Tensor& grad, Tensor& momentum_buf,
                const SgdParams& p, int64_t step);
void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                 int64_t step);
void adam_update(Backend b, Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                 const AdamParams& p, int64_t step);
void adagrad_update(Tensor& param, const Tensor& grad, Tensor& sum, const AdagradParams& p,
                    int64_t step);
void adagrad_update(Backend b, Tensor& param, const Tensor& grad, Tensor& sum,
                    const AdagradParams& p, int64_t step);

namespace cuda {
// buf may be nullptr when p.momentum == 0.
void sgd_update(float* param, const float* grad, float* buf, int64_t n, const SgdParams& p,
                int64_t step, CudaContext& ctx);
void adam_update(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamParams& p, int64_t step, CudaContext& ctx);
void adagrad_update(float* param, const float* grad, float* sum, int64_t n, const AdagradParams& p,
                    int64_t step, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

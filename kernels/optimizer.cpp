// Optimizer updates: argument checks, device dispatch and the CPU reference (formulas in
// optimizer.h). The CUDA kernels are in optimizer.cu.
#include "kernels/optimizer.h"

#include <cmath>

namespace minidl {

namespace {

// `other` must match `param` in element count, dtype and device.
void check_state(const char* who, const Tensor& param, const Tensor& other, const char* what) {
  MINIDL_CHECK(other.defined(), who, ": ", what, " is undefined, expected ", param.describe());
  MINIDL_CHECK(other.numel() == param.numel() && other.dtype() == param.dtype() &&
                   other.device() == param.device(),
               who, ": ", what, " is ", other.describe(), " but the parameter is ",
               param.describe(), " (expected the same element count, dtype and device)");
}

void check_param(const char* who, const Tensor& param, int64_t step) {
  MINIDL_CHECK(param.defined(), who, ": parameter tensor is undefined");
  MINIDL_CHECK(step >= 1, who, ": step must be >= 1 (counted from 1 as in torch.optim), got ",
               step);
}

}  // namespace

namespace cpu {

template <typename T>
void sgd_update(T* p, const T* grad, T* buf, int64_t n, const SgdParams& s, int64_t step) {
  const T lr = T(s.lr), wd = T(s.weight_decay), mom = T(s.momentum), damp = T(s.dampening);
  const bool use_momentum = s.momentum != 0.0;
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i] + wd * p[i];
    if (use_momentum) {
      const T b = step == 1 ? g : mom * buf[i] + (T(1) - damp) * g;
      buf[i] = b;
      g = s.nesterov ? g + mom * b : b;
    }
    p[i] -= lr * g;
  }
}

template <typename T>
void adam_update(T* p, const T* grad, T* m, T* v, int64_t n, const AdamParams& a, int64_t step) {
  const double t = static_cast<double>(step);
  const T b1 = T(a.beta1), b2 = T(a.beta2), eps = T(a.eps), wd = T(a.weight_decay);
  const T step_size = T(a.lr / (1.0 - std::pow(a.beta1, t)));
  const T bc2_sqrt = T(std::sqrt(1.0 - std::pow(a.beta2, t)));
  const T decay = T(1.0 - a.lr * a.weight_decay);  // AdamW's decoupled shrink
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i];
    if (a.decoupled)
      p[i] *= decay;
    else
      g += wd * p[i];
    m[i] = b1 * m[i] + (T(1) - b1) * g;
    v[i] = b2 * v[i] + (T(1) - b2) * g * g;
    p[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
  }
}

template <typename T>
void adagrad_update(T* p, const T* grad, T* sum, int64_t n, const AdagradParams& a, int64_t step) {
  const T clr = T(a.lr / (1.0 + static_cast<double>(step - 1) * a.lr_decay));
  const T wd = T(a.weight_decay), eps = T(a.eps);
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i] + wd * p[i];
    sum[i] += g * g;
    p[i] -= clr * g / (std::sqrt(sum[i]) + eps);
  }
}

}  // namespace cpu

const OpInfo& optimizer_op() {
  static const OpInfo op{"optimizer",
                         "`sgd_update`, `adam_update`, `adagrad_update`",
                         {{Backend::CpuReference, "one loop over the flat parameters"},
                          {Backend::CudaHandwritten, "one fused kernel over the flat parameters"}}};
  return op;
}

Backend select_optimizer_backend(const Device& d, DType dtype) {
  return select_backend(optimizer_op(), d, dtype);
}

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, const SgdParams& p,
                int64_t step) {
  sgd_update(select_optimizer_backend(param.device(), param.dtype()), param, grad, momentum_buf, p,
             step);
}

void sgd_update(Backend b, Tensor& param, const Tensor& grad, Tensor& momentum_buf,
                const SgdParams& p, int64_t step) {
  const char* who = "sgd_update";
  check_param(who, param, step);
  check_state(who, param, grad, "gradient");
  const bool use_momentum = p.momentum != 0.0;
  if (use_momentum) check_state(who, param, momentum_buf, "momentum buffer");
  check_backend(optimizer_op(), b, param.device(), param.dtype(), who);
  if (b == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(cuda::sgd_update(param.data<float>(), grad.data<float>(),
                                    use_momentum ? momentum_buf.data<float>() : nullptr,
                                    param.numel(), p, step, cuda_context(param.device())));
    return;
  }
  dispatch_floating(param.dtype(), who, [&]<typename T>() {
    cpu::sgd_update<T>(param.data<T>(), grad.data<T>(),
                       use_momentum ? momentum_buf.data<T>() : nullptr, param.numel(), p, step);
  });
}

void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                 int64_t step) {
  adam_update(select_optimizer_backend(param.device(), param.dtype()), param, grad, m, v, p, step);
}

void adam_update(Backend b, Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                 const AdamParams& p, int64_t step) {
  const char* who = p.decoupled ? "adamw_update" : "adam_update";
  check_param(who, param, step);
  check_state(who, param, grad, "gradient");
  check_state(who, param, m, "first moment (exp_avg)");
  check_state(who, param, v, "second moment (exp_avg_sq)");
  check_backend(optimizer_op(), b, param.device(), param.dtype(), who);
  if (b == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(cuda::adam_update(param.data<float>(), grad.data<float>(), m.data<float>(),
                                     v.data<float>(), param.numel(), p, step,
                                     cuda_context(param.device())));
    return;
  }
  dispatch_floating(param.dtype(), who, [&]<typename T>() {
    cpu::adam_update<T>(param.data<T>(), grad.data<T>(), m.data<T>(), v.data<T>(), param.numel(),
                        p, step);
  });
}

void adagrad_update(Tensor& param, const Tensor& grad, Tensor& sum, const AdagradParams& p,
                    int64_t step) {
  adagrad_update(select_optimizer_backend(param.device(), param.dtype()), param, grad, sum, p,
                 step);
}

void adagrad_update(Backend b, Tensor& param, const Tensor& grad, Tensor& sum,
                    const AdagradParams& p, int64_t step) {
  const char* who = "adagrad_update";
  check_param(who, param, step);
  check_state(who, param, grad, "gradient");
  check_state(who, param, sum, "squared-gradient sum");
  check_backend(optimizer_op(), b, param.device(), param.dtype(), who);
  if (b == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(cuda::adagrad_update(param.data<float>(), grad.data<float>(), sum.data<float>(),
                                        param.numel(), p, step, cuda_context(param.device())));
    return;
  }
  dispatch_floating(param.dtype(), who, [&]<typename T>() {
    cpu::adagrad_update<T>(param.data<T>(), grad.data<T>(), sum.data<T>(), param.numel(), p, step);
  });
}

}  // namespace minidl

// BatchNorm2d: parameters "weight"/"bias", running statistics as buffers, the batch statistics of
// the last train forward kept for backward (save_mean_, save_invstd_). As every layer: dL/dweight
// and dL/dbias ACCUMULATE into .grad, dL/dx OVERWRITES dx_. Backward uses the mode of the last
// forward: train mode differentiates through the batch mean and variance, eval mode treats the
// running statistics as constants (kernels/batchnorm.h, docs/backprop/batchnorm.md).
#include "layers/batchnorm.h"

#include <algorithm>
#include <cmath>

#include "kernels/elementwise.h"

namespace minidl {

namespace {

// A per-channel vector (float32 or float64, any device) as host doubles, and back.
std::vector<double> to_double(const Tensor& t) {
  if (t.dtype() == DType::F64) return t.to_vector<double>();
  const std::vector<float> f = t.to_vector<float>();
  return std::vector<double>(f.begin(), f.end());
}

void from_double(Tensor& t, const std::vector<double>& v) {
  if (t.dtype() == DType::F64) return t.copy_(Tensor::from_vector(v, t.shape()));
  t.copy_(Tensor::from_vector(std::vector<float>(v.begin(), v.end()), t.shape()));
}

}  // namespace

BatchNorm2d::BatchNorm2d(const BatchNorm2dConfig& cfg) : Module("BatchNorm2d"), cfg_(cfg) {
  MINIDL_CHECK(cfg.channels >= 1, "BatchNorm2d: channels must be >= 1, got ", cfg.channels);
  MINIDL_CHECK(cfg.momentum >= 0 && cfg.momentum <= 1, "BatchNorm2d(", cfg.channels,
               "): momentum must be in [0, 1], got ", cfg.momentum);
  MINIDL_CHECK(cfg.eps > 0, "BatchNorm2d(", cfg.channels, "): eps must be > 0, got ", cfg.eps);
  MINIDL_CHECK(cfg.dtype == DType::F32 || cfg.dtype == DType::F64, "BatchNorm2d(", cfg.channels,
               "): dtype must be float32 or float64, got ", cfg.dtype);
  const Shape c{cfg.channels};
  gamma_ = register_parameter("weight", Tensor::full(c, 1.0, cfg.dtype));
  beta_ = register_parameter("bias", Tensor::zeros(c, cfg.dtype));
  running_mean_ = register_buffer("running_mean", Tensor::zeros(c, cfg.dtype));
  running_var_ = register_buffer("running_var", Tensor::full(c, 1.0, cfg.dtype));
  // A 0-dim counter, as torch's (there int64; int32 here, which no training run can overflow).
  num_batches_tracked_ = register_buffer("num_batches_tracked", Tensor::zeros(Shape{}, DType::I32));
}

std::string BatchNorm2d::describe() const {
  return str("BatchNorm2d(", cfg_.channels, ", eps=", cfg_.eps, ", momentum=", cfg_.momentum, ")");
}

Shape BatchNorm2d::output_shape(const Shape& in) const {
  MINIDL_CHECK(in.dim() == 4 && in[1] == cfg_.channels, who(), ": expected input (N, ",
               cfg_.channels, ", H, W), got ", in);
  return in;
}

// Train mode: sum and sum of squared deviations for the statistics (2 per element), then one
// subtract and one multiply-add to normalise (3 per element); eval mode only needs the last 3.
int64_t BatchNorm2d::forward_flops(const Shape& in) const { return 5 * in.numel(); }

Tensor BatchNorm2d::forward(const Tensor& x, Mode mode) {
  check_input(x);
  output_shape(x.shape());
  ensure_tensor(y_, x.shape(), x.dtype(), x.device(), x.layout());
  const BatchNormParams p{cfg_.momentum, cfg_.eps};
  if (mode == Mode::Train) {
    // Statistics in the parameters' dtype: float32 also for a bfloat16/float16 input.
    ensure_tensor(save_mean_, Shape{cfg_.channels}, gamma_->value.dtype(), x.device());
    ensure_tensor(save_invstd_, Shape{cfg_.channels}, gamma_->value.dtype(), x.device());
    if (sync_) {
      forward_sync(x, p);
    } else {
      batchnorm_forward_train(y_, save_mean_, save_invstd_, *running_mean_, *running_var_, x,
                              gamma_->value, beta_->value, p);
    }
    batchnorm_count_batch(*num_batches_tracked_);
  } else {
    batchnorm_forward_eval(y_, x, gamma_->value, beta_->value, *running_mean_, *running_var_, p);
  }
  x_ = x;
  last_mode_ = mode;
  return y_;
}

Tensor BatchNorm2d::backward(const Tensor& dy) {
  MINIDL_CHECK(x_.defined(), who(), ": backward called before forward");
  check_shape(dy, x_.shape(), who().c_str(), "output gradient");
  ensure_tensor(dx_, x_.shape(), x_.dtype(), x_.device(), x_.layout());
  const BatchNormParams p{cfg_.momentum, cfg_.eps};
  if (last_mode_ == Mode::Train && sync_) {
    backward_sync(dy, p);
  } else if (last_mode_ == Mode::Train) {
    batchnorm_backward_train(dx_, gamma_->grad, beta_->grad, dy, x_, gamma_->value, save_mean_,
                             save_invstd_, p);
  } else {
    batchnorm_backward_eval(dx_, gamma_->grad, beta_->grad, dy, x_, gamma_->value, *running_mean_,
                            *running_var_, p);
  }
  return dx_;
}

// ---------------------------------------------------------------- synchronised (SyncBatchNorm)
//
// Built from the op table's batchnorm functions and three small all-reduces of per-channel
// vectors (host vectors of C doubles); docs/backprop/sync_batchnorm.md derives it.

// Forward: this rank's mean and variance (a local train forward into scratch statistics with
// momentum 1: the scratch running_var is then the unbiased local variance), turned into the
// channel sum, the sum of squares and the count, summed over the ranks; from those the global mean
// and (biased) variance, which normalise x through the eval-mode forward.
void BatchNorm2d::forward_sync(const Tensor& x, const BatchNormParams& p) {
  const int64_t C = cfg_.channels;
  const auto Cs = static_cast<size_t>(C);
  ensure_tensor(scratch_mean_, Shape{C}, x.dtype(), x.device());
  ensure_tensor(scratch_var_, Shape{C}, x.dtype(), x.device());
  ensure_tensor(sync_var_, Shape{C}, x.dtype(), x.device());
  // Momentum 1 still reads the old values ((1 - 1) x old): they must be finite.
  scratch_mean_.zero_();
  scratch_var_.zero_();
  batchnorm_forward_train(y_, save_mean_, save_invstd_, scratch_mean_, scratch_var_, x,
                          gamma_->value, beta_->value, BatchNormParams{1.0, p.eps});
  const double m = static_cast<double>(x.numel() / C);  // this rank's N x H x W
  const std::vector<double> mean = to_double(scratch_mean_), uvar = to_double(scratch_var_);
  std::vector<double> v(2 * Cs + 1);
  for (size_t c = 0; c < Cs; ++c) {
    const double var = m > 1 ? uvar[c] * (m - 1) / m : 0.0;  // biased
    v[c] = m * mean[c];                                      // sum x
    v[Cs + c] = m * (var + mean[c] * mean[c]);               // sum x^2
  }
  v[2 * Cs] = m;
  sync_(v);
  const double M = v[2 * Cs];
  sync_count_ = M;
  sync_mean_.resize(Cs);
  sync_invstd_.resize(Cs);
  std::vector<double> var(Cs), rm = to_double(*running_mean_), rv = to_double(*running_var_);
  for (size_t c = 0; c < Cs; ++c) {
    sync_mean_[c] = v[c] / M;
    var[c] = std::max(0.0, v[Cs + c] / M - sync_mean_[c] * sync_mean_[c]);
    sync_invstd_[c] = 1.0 / std::sqrt(var[c] + p.eps);
    rm[c] = (1 - p.momentum) * rm[c] + p.momentum * sync_mean_[c];
    rv[c] = (1 - p.momentum) * rv[c] + p.momentum * (M > 1 ? var[c] * M / (M - 1) : var[c]);
  }
  from_double(*running_mean_, rm);
  from_double(*running_var_, rv);
  from_double(save_mean_, sync_mean_);
  from_double(save_invstd_, sync_invstd_);
  from_double(sync_var_, var);
  batchnorm_forward_eval(y_, x, gamma_->value, beta_->value, save_mean_, sync_var_, p);
}

// Backward: the local sums sum dy and sum dy * xhat (the train backward with the global mean and
// invstd, into scratch gradients) are this rank's dbias and dweight; summed over the ranks they
// give dx = gamma invstd (dy - (sum dy + xhat sum dy xhat) / M), computed as the eval backward
// (gamma invstd dy) plus the per-channel affine term a_c + b_c x, which is an eval forward with
// weight b_c, bias a_c, mean 0 and variance 1 - eps.
void BatchNorm2d::backward_sync(const Tensor& dy, const BatchNormParams& p) {
  const int64_t C = cfg_.channels;
  const auto Cs = static_cast<size_t>(C);
  const Tensor& x = x_;
  for (Tensor* t : {&dgamma_, &dbeta_}) ensure_tensor(*t, Shape{C}, x.dtype(), x.device());
  ensure_tensor(scratch_dx_, x.shape(), x.dtype(), x.device(), x.layout());
  ensure_tensor(tmp_, x.shape(), x.dtype(), x.device(), x.layout());
  dgamma_.zero_();
  dbeta_.zero_();
  batchnorm_backward_train(scratch_dx_, dgamma_, dbeta_, dy, x, gamma_->value, save_mean_,
                           save_invstd_, p);
  add(gamma_->grad, gamma_->grad, dgamma_);
  add(beta_->grad, beta_->grad, dbeta_);
  std::vector<double> v = to_double(dgamma_);  // sum dy * xhat, then sum dy
  const std::vector<double> db = to_double(dbeta_);
  v.insert(v.end(), db.begin(), db.end());
  sync_(v);
  const double M = sync_count_;
  const std::vector<double> gamma = to_double(gamma_->value);
  // The eval forward divides by sqrt(var + eps) with var as stored in x's dtype: undo that exactly.
  scratch_var_.fill_(1.0 - p.eps);
  const double var1 = to_double(scratch_var_)[0];
  const double unscale = std::sqrt(var1 + p.eps);
  std::vector<double> a(Cs), b(Cs);
  for (size_t c = 0; c < Cs; ++c) {
    const double g = gamma[c] * sync_invstd_[c] / M, sdyx = v[c], sdy = v[Cs + c];
    b[c] = -g * sync_invstd_[c] * sdyx * unscale;
    a[c] = -g * (sdy - sync_mean_[c] * sync_invstd_[c] * sdyx);
  }
  from_double(dgamma_, b);
  from_double(dbeta_, a);
  scratch_mean_.zero_();
  batchnorm_forward_eval(tmp_, x, dgamma_, dbeta_, scratch_mean_, scratch_var_, p);
  // gamma invstd dy; the eval backward's parameter sums go to scratch (a, b are spent).
  batchnorm_backward_eval(dx_, dgamma_, dbeta_, dy, x, gamma_->value, save_mean_, sync_var_, p);
  add(dx_, dx_, tmp_);
}

}  // namespace minidl

// BatchNorm2d: parameters "weight"/"bias", running statistics as buffers, the batch statistics of
// the last train forward kept for backward (save_mean_, save_invstd_). As every layer: dL/dweight
// and dL/dbias ACCUMULATE into .grad, dL/dx OVERWRITES dx_. Backward uses the mode of the last
// forward: train mode differentiates through the batch mean and variance, eval mode treats the
// running statistics as constants (kernels/batchnorm.h, docs/backprop/batchnorm.md).
#include "layers/batchnorm.h"

namespace minidl {

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
  ensure_tensor(y_, x.shape(), x.dtype(), x.device());
  const BatchNormParams p{cfg_.momentum, cfg_.eps};
  if (mode == Mode::Train) {
    // Statistics in the parameters' dtype: float32 also for a bfloat16/float16 input.
    ensure_tensor(save_mean_, Shape{cfg_.channels}, gamma_->value.dtype(), x.device());
    ensure_tensor(save_invstd_, Shape{cfg_.channels}, gamma_->value.dtype(), x.device());
    batchnorm_forward_train(y_, save_mean_, save_invstd_, *running_mean_, *running_var_, x,
                            gamma_->value, beta_->value, p);
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
  ensure_tensor(dx_, x_.shape(), x_.dtype(), x_.device());
  const BatchNormParams p{cfg_.momentum, cfg_.eps};
  if (last_mode_ == Mode::Train) {
    batchnorm_backward_train(dx_, gamma_->grad, beta_->grad, dy, x_, gamma_->value, save_mean_,
                             save_invstd_, p);
  } else {
    batchnorm_backward_eval(dx_, gamma_->grad, beta_->grad, dy, x_, gamma_->value, *running_mean_,
                            *running_var_, p);
  }
  return dx_;
}

}  // namespace minidl

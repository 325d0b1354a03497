// Conv2d layer: parameters, shape checks and bookkeeping; the math is in kernels/conv2d.cpp.
// Gradient rule (layers/module.h): dx is overwritten, weight.grad and bias.grad accumulate.
#include "layers/conv2d.h"

#include "kernels/convert.h"

#include "core/init.h"

namespace minidl {

Conv2d::Conv2d(const Conv2dConfig& cfg, Generator& gen) : Module("Conv2d"), cfg_(cfg) {
  MINIDL_CHECK(cfg.in_channels >= 1 && cfg.out_channels >= 1,
               "Conv2d: in_channels and "
               "out_channels must be >= 1, got ",
               cfg.in_channels, " and ", cfg.out_channels);
  MINIDL_CHECK(cfg.kernel >= 1 && cfg.stride >= 1 && cfg.pad >= 0,
               "Conv2d: kernel and stride must "
               "be >= 1 and pad >= 0, got kernel ",
               cfg.kernel, ", stride ", cfg.stride, ", pad ", cfg.pad);
  MINIDL_CHECK(cfg.dtype == DType::F32 || cfg.dtype == DType::F64,
               "Conv2d: dtype must be float32 or float64, got ", cfg.dtype);
  Tensor w =
      Tensor::empty(Shape{cfg.out_channels, cfg.in_channels, cfg.kernel, cfg.kernel}, cfg.dtype);
  Tensor b = cfg.bias ? Tensor::empty(Shape{cfg.out_channels}, cfg.dtype) : Tensor();
  init::pytorch_default(w, cfg.bias ? &b : nullptr, gen);
  weight_ = register_parameter("weight", w);
  if (cfg.bias) bias_ = register_parameter("bias", b);
}

std::string Conv2d::describe() const {
  return str("Conv2d(", cfg_.in_channels, ", ", cfg_.out_channels, ", k=", cfg_.kernel,
             ", s=", cfg_.stride, ", p=", cfg_.pad, cfg_.bias ? "" : ", bias=False", ")");
}

Shape Conv2d::output_shape(const Shape& in) const {
  MINIDL_CHECK(in.dim() == 4, who(), ": expected input (N, ", cfg_.in_channels,
               ", H, W), got shape ", in);
  MINIDL_CHECK(in[1] == cfg_.in_channels, who(), ": expected input (N, ", cfg_.in_channels,
               ", H, W), got shape ", in, " with ", in[1], " channels");
  const int64_t hp = in[2] + 2 * cfg_.pad, wp = in[3] + 2 * cfg_.pad;
  MINIDL_CHECK(hp >= cfg_.kernel && wp >= cfg_.kernel, who(), ": input ", in, " padded by ",
               cfg_.pad, " is smaller than the ", cfg_.kernel, "x", cfg_.kernel, " kernel");
  return Shape{in[0], cfg_.out_channels, (hp - cfg_.kernel) / cfg_.stride + 1,
               (wp - cfg_.kernel) / cfg_.stride + 1};
}

// 2 flops per multiply-add, C*R*S of them per output element, plus one add per output for the bias.
int64_t Conv2d::forward_flops(const Shape& in) const {
  const Shape out = output_shape(in);
  const int64_t macs = out.numel() * cfg_.in_channels * cfg_.kernel * cfg_.kernel;
  return 2 * macs + (cfg_.bias ? out.numel() : 0);
}

Tensor Conv2d::forward(const Tensor& x, Mode) {
  check_input(x);
  ensure_tensor(y_, output_shape(x.shape()), x.dtype(), x.device(), x.layout());
  if (is_low_precision(x.dtype())) {
    ensure_tensor(weight_lp_, weight_->value.shape(), x.dtype(), x.device());
    convert(weight_lp_, weight_->value);
  } else {
    weight_lp_ = weight_->value;
  }
  conv2d_forward(y_, x, weight_lp_, bias_ ? &bias_->value : nullptr, {cfg_.stride, cfg_.pad});
  x_ = x;
  return y_;
}

Tensor Conv2d::backward(const Tensor& dy) {
  MINIDL_CHECK(x_.defined(), who(), ": backward called before forward");
  check_shape(dy, y_.shape(), who().c_str(), "output gradient");
  const Conv2dParams p{cfg_.stride, cfg_.pad};
  conv2d_backward_weight(weight_->grad, dy, x_, p);
  if (bias_) conv2d_backward_bias(bias_->grad, dy);
  if (!needs_input_grad_) return Tensor();
  ensure_tensor(dx_, x_.shape(), x_.dtype(), x_.device(), x_.layout());
  conv2d_backward_data(dx_, dy, weight_lp_, p);
  return dx_;
}

}  // namespace minidl

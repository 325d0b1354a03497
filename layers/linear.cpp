// Linear layer: parameters, shape checks and the flattening of (N, ...) inputs; the math is in
// kernels/linear.cpp. Gradient rule (layers/module.h): dx is overwritten, weight.grad and
// bias.grad accumulate.
#include "layers/linear.h"

#include "kernels/convert.h"

#include "core/init.h"

namespace minidl {

Linear::Linear(const LinearConfig& cfg, Generator& gen) : Module("Linear"), cfg_(cfg) {
  MINIDL_CHECK(cfg.in_features >= 1 && cfg.out_features >= 1,
               "Linear: in_features and "
               "out_features must be >= 1, got ",
               cfg.in_features, " and ", cfg.out_features);
  MINIDL_CHECK(cfg.dtype == DType::F32 || cfg.dtype == DType::F64,
               "Linear: dtype must be float32 or float64, got ", cfg.dtype);
  Tensor w = Tensor::empty(Shape{cfg.out_features, cfg.in_features}, cfg.dtype);
  Tensor b = cfg.bias ? Tensor::empty(Shape{cfg.out_features}, cfg.dtype) : Tensor();
  init::pytorch_default(w, cfg.bias ? &b : nullptr, gen);
  weight_ = register_parameter("weight", w);
  if (cfg.bias) bias_ = register_parameter("bias", b);
}

std::string Linear::describe() const {
  return str("Linear(", cfg_.in_features, ", ", cfg_.out_features, cfg_.bias ? "" : ", bias=False",
             ")");
}

// (N, ...) with in_features elements per sample, e.g. (N, 512, 1, 1) after global pooling.
Shape Linear::output_shape(const Shape& in) const {
  MINIDL_CHECK(in.dim() >= 2 && in[0] > 0 && in.numel() / in[0] == cfg_.in_features, who(),
               ": expected input (N, ", cfg_.in_features, ") or (N, ...) with ", cfg_.in_features,
               " features per sample, got shape ", in);
  return Shape{in[0], cfg_.out_features};
}

int64_t Linear::forward_flops(const Shape& in) const {
  const int64_t n = output_shape(in)[0];
  return 2 * n * cfg_.in_features * cfg_.out_features + (cfg_.bias ? n * cfg_.out_features : 0);
}

Tensor Linear::forward(const Tensor& x, Mode) {
  check_input(x);
  const Shape out = output_shape(x.shape());
  // A channels-last (N, C, H, W) with H*W > 1 holds its features in (h, w, c) order, not
  // PyTorch's (c, h, w): Flatten converts it (layers/basic.h); (N, C, 1, 1) is the same memory.
  MINIDL_CHECK(x.layout() == Layout::NCHW || layouts_coincide(x.shape()), who(), ": input ",
               x.describe(), " is channels-last with H*W > 1, so its features are not in "
               "PyTorch's (C, H, W) order: put a Flatten before this layer (it converts them)");
  in_shape_ = x.shape();
  in_layout_ = x.layout();
  x2d_ = x.view(Shape{out[0], cfg_.in_features});
  ensure_tensor(y_, out, x.dtype(), x.device());
  if (is_low_precision(x.dtype())) {
    ensure_tensor(weight_lp_, weight_->value.shape(), x.dtype(), x.device());
    convert(weight_lp_, weight_->value);
  } else {
    weight_lp_ = weight_->value;
  }
  linear_forward(y_, x2d_, weight_lp_, bias_ ? &bias_->value : nullptr);
  return y_;
}

Tensor Linear::backward(const Tensor& dy) {
  MINIDL_CHECK(x2d_.defined(), who(), ": backward called before forward");
  check_shape(dy, y_.shape(), who().c_str(), "output gradient");
  Tensor* db = bias_ ? &bias_->grad : nullptr;
  if (!needs_input_grad_) {
    linear_backward(nullptr, weight_->grad, db, dy, x2d_, weight_lp_);
    return Tensor();
  }
  ensure_tensor(dx_, x2d_.shape(), x2d_.dtype(), x2d_.device());
  linear_backward(&dx_, weight_->grad, db, dy, x2d_, weight_lp_);
  return dx_.view(in_shape_).relabel(in_layout_);  // the input's layout (they coincide here)
}

}  // namespace minidl

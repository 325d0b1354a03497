#include "layers/activation.h"

namespace minidl {

ActivationLayer::ActivationLayer(Activation act, double slope)
    : Module(activation_name(act)), act_(act), slope_(slope) {}

std::string ActivationLayer::describe() const {
  return act_ == Activation::LeakyReLU ? str("LeakyReLU(", slope_, ")") : str(activation_name(act_), "()");
}

Tensor ActivationLayer::forward(const Tensor& x, Mode) {
  check_input(x);
  ensure_tensor(y_, x.shape(), x.dtype(), x.device(), x.layout());
  activation_forward(y_, x, act_, slope_);
  x_ = x;
  return y_;
}

Tensor ActivationLayer::backward(const Tensor& dy) {
  MINIDL_CHECK(x_.defined(), who(), ": backward called before forward");
  check_shape(dy, y_.shape(), who().c_str(), "output gradient");
  ensure_tensor(dx_, dy.shape(), dy.dtype(), dy.device(), dy.layout());
  activation_backward(dx_, dy, x_, y_, act_, slope_);
  return dx_;
}

}  // namespace minidl

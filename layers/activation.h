// Pointwise activation layers: ReLU, LeakyReLU, Sigmoid, Tanh (formulas in kernels/activation.h).
// No parameters. Backward needs the input (ReLU-like) or the output (Sigmoid/Tanh); the layer keeps
// handles to both from the last forward.
#pragma once

#include "kernels/activation.h"
#include "layers/module.h"

namespace minidl {

class ActivationLayer : public Module {
 public:
  explicit ActivationLayer(Activation act, double slope = 0.01);
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override { return in; }
  int64_t forward_flops(const Shape& in) const override { return in.numel(); }
  std::string describe() const override;
  Activation activation() const { return act_; }
  double slope() const { return slope_; }

 private:
  Activation act_;
  double slope_;
  Tensor x_, y_, dx_;
};

class ReLU : public ActivationLayer {
 public:
  ReLU() : ActivationLayer(Activation::ReLU) {}
};
class LeakyReLU : public ActivationLayer {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : ActivationLayer(Activation::LeakyReLU, negative_slope) {}
};
class Sigmoid : public ActivationLayer {
 public:
  Sigmoid() : ActivationLayer(Activation::Sigmoid) {}
};
class Tanh : public ActivationLayer {
 public:
  Tanh() : ActivationLayer(Activation::Tanh) {}
};

}  // namespace minidl

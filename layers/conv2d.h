// Conv2d layer (torch.nn.Conv2d, dilation 1, groups 1): parameters "weight" (K, C, R, S) and,
// when bias is on, "bias" (K). Math in kernels/conv2d.h; gradients checked in
// tests/layers/conv2d_test.cpp.
#pragma once

#include "core/rng.h"
#include "kernels/conv2d.h"
#include "layers/module.h"

namespace minidl {

struct Conv2dConfig {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int kernel = 3;
  int stride = 1;
  int pad = 0;
  bool bias = true;
  DType dtype = DType::F32;
};

// Initialisation: PyTorch's nn.Conv2d default (kaiming_uniform a=sqrt(5), bias U(+-1/sqrt(fan_in)));
// models re-initialise as torchvision does (see models/).
class Conv2d : public Module {
 public:
  Conv2d(const Conv2dConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;

  const Conv2dConfig& config() const { return cfg_; }
  Parameter& weight() { return *weight_; }
  Parameter* bias() { return bias_; }  // nullptr without bias

 private:
  Conv2dConfig cfg_;
  Parameter* weight_ = nullptr;
  Parameter* bias_ = nullptr;
  Tensor x_, y_, dx_;
  // Mixed precision (a bfloat16/float16 input, autocast's policy): the float32 weight rounded to
  // the input's dtype, once per forward; its gradient accumulates into the float32 weight.grad.
  Tensor weight_lp_;
};

}  // namespace minidl

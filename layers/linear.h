// Linear layer (torch.nn.Linear): parameters "weight" (out, in) and "bias" (out). Accepts (N, in)
// or any (N, ...) whose trailing size is in_features (flattened). Math in kernels/linear.h.
#pragma once

#include "core/rng.h"
#include "kernels/linear.h"
#include "layers/module.h"

namespace minidl {

struct LinearConfig {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = true;
  DType dtype = DType::F32;
};

class Linear : public Module {
 public:
  Linear(const LinearConfig& cfg, Generator& gen);  // nn.Linear default initialisation
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;

  Parameter& weight() { return *weight_; }
  Parameter* bias() { return bias_; }

 private:
  LinearConfig cfg_;
  Parameter* weight_ = nullptr;
  Parameter* bias_ = nullptr;
  Shape in_shape_;
  Layout in_layout_ = Layout::NCHW;
  Tensor x2d_, y_, dx_;
  // Mixed precision: the float32 weight rounded to a bfloat16/float16 input's dtype (as Conv2d).
  Tensor weight_lp_;
};

}  // namespace minidl

// Pooling layers (torch.nn.MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1)). No parameters. Math in
// kernels/pooling.h.
#pragma once

#include "kernels/pooling.h"
#include "layers/module.h"

namespace minidl {

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Pool2dParams p);
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;
  const Pool2dParams& params() const { return p_; }

 private:
  Pool2dParams p_;
  Tensor x_, y_, argmax_, dx_;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Pool2dParams p);
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;
  const Pool2dParams& params() const { return p_; }

 private:
  Pool2dParams p_;
  Shape in_shape_;
  Layout in_layout_ = Layout::NCHW;  // dx_ is allocated in the input's layout
  Tensor y_, dx_;
};

// (N, C, H, W) -> (N, C, 1, 1)
class GlobalAvgPool : public Module {
 public:
  GlobalAvgPool();
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override { return "GlobalAvgPool()"; }

 private:
  Shape in_shape_;
  Layout in_layout_ = Layout::NCHW;  // dx_ is allocated in the input's layout
  Tensor y_, dx_;
};

}  // namespace minidl

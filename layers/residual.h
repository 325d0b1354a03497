// Residual blocks of He et al. (torchvision.models.resnet.BasicBlock / Bottleneck, the v1.5
// variant with the stride on the 3x3 convolution).
//
// BasicBlock:  out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),   expansion 1
//   conv1 3x3 stride s, conv2 3x3; children "conv1", "bn1", "conv2", "bn2", "downsample".
// Bottleneck:  out = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)), expansion 4
//   conv1 1x1, conv2 3x3 stride s, conv3 1x1 to planes*4.
// shortcut(x) = x, or downsample(x) = bn(conv1x1 stride s (x)) ("downsample.0", "downsample.1")
// when the stride is not 1 or the channel count changes.
//
// Backward: the gradient at the sum flows unchanged into both branches (d(a+b)/da = 1), so
// dx = dx_main + dx_shortcut. Convolutions have no bias (BatchNorm follows them).
#pragma once

#include <memory>

#include "core/rng.h"
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"

namespace minidl {

struct BlockConfig {
  int64_t in_channels = 0;
  int64_t planes = 0;  // width of the block; output channels = planes * expansion
  int stride = 1;
  DType dtype = DType::F32;
};

class BasicBlock : public Module {
 public:
  static constexpr int64_t expansion = 1;
  BasicBlock(const BlockConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;
  // The BN whose weight torchvision zeroes with zero_init_residual=True.
  BatchNorm2d& last_bn() { return *bn2_; }

 private:
  BlockConfig cfg_;
  std::unique_ptr<Conv2d> conv1_, conv2_;
  std::unique_ptr<BatchNorm2d> bn1_, bn2_;
  std::unique_ptr<ReLU> relu1_, relu_out_;
  std::unique_ptr<Sequential> downsample_;  // null when the shortcut is the identity
  Tensor sum_, dx_;
};

class Bottleneck : public Module {
 public:
  static constexpr int64_t expansion = 4;
  Bottleneck(const BlockConfig& cfg, Generator& gen);
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;
  BatchNorm2d& last_bn() { return *bn3_; }

 private:
  BlockConfig cfg_;
  std::unique_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::unique_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
  std::unique_ptr<ReLU> relu1_, relu2_, relu_out_;
  std::unique_ptr<Sequential> downsample_;
  Tensor sum_, dx_;
};

}  // namespace minidl

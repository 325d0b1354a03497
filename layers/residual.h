// Residual connections: the Residual combinator, and the blocks of He et al. built from it
// (torchvision.models.resnet.BasicBlock / Bottleneck, the v1.5 variant with the stride on the 3x3
// convolution).
//
// Residual(main, shortcut):  out = main(x) + shortcut(x),   shortcut(x) = x when none is given.
//   Backward: d(a + b)/da = d(a + b)/db = 1, so dL/dout flows unchanged into both branches, and
//   x, which fed both, receives both contributions: dx = dx_main + dx_shortcut.
//
// BasicBlock:  out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),   expansion 1
//   conv1 3x3 stride s, conv2 3x3.
// Bottleneck:  out = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)), expansion 4
//   conv1 1x1, conv2 3x3 stride s, conv3 1x1 to planes*4.
// shortcut(x) = x, or downsample(x) = bn(conv1x1 stride s (x)) ("downsample.0", "downsample.1")
// when the stride is not 1 or the channel count changes. Convolutions have no bias (BatchNorm
// follows them).
//
// A block is Sequential{ Residual(main, downsample), relu_out } with main = Sequential{ conv1,
// bn1, relu1, conv2, bn2 (, relu2, conv3, bn3) }. The Residual and main are transparent (module.h),
// so the names are torchvision's: "conv1", "bn1", ..., "downsample.0", with parameters in the order
// conv1, bn1, conv2, bn2, (conv3, bn3,) downsample.
#pragma once

#include <memory>
#include <string>

#include "core/rng.h"
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"

namespace minidl {

// out = main(x) + shortcut(x). main's children are named directly under the Residual (main is
// registered transparently, as torchvision's blocks hold conv1, bn1, ... themselves); the shortcut,
// when there is one, under `shortcut_name`. Both branches must give the same shape.
class Residual : public Module {
 public:
  Residual(std::unique_ptr<Module> main, std::unique_ptr<Module> shortcut,
           const std::string& shortcut_name = "shortcut");
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  // The branches' FLOPs plus one addition per output element.
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;
  Module& main() { return *main_; }
  Module* shortcut() { return shortcut_.get(); }  // null: the identity

 private:
  std::unique_ptr<Module> main_;
  std::unique_ptr<Module> shortcut_;
  std::string shortcut_name_;
  Tensor sum_, dx_;  // the output and the input gradient, owned here
};

struct BlockConfig {
  int64_t in_channels = 0;
  int64_t planes = 0;  // width of the block; output channels = planes * expansion
  int stride = 1;
  DType dtype = DType::F32;
};

class BasicBlock : public Sequential {
 public:
  static constexpr int64_t expansion = 1;
  BasicBlock(const BlockConfig& cfg, Generator& gen);
  Shape output_shape(const Shape& in) const override;
  std::string describe() const override;
  // The BN whose weight torchvision zeroes with zero_init_residual=True.
  BatchNorm2d& last_bn() { return *last_bn_; }

 private:
  BlockConfig cfg_;
  BatchNorm2d* last_bn_ = nullptr;  // owned by the main branch
  bool projection_ = false;
};

class Bottleneck : public Sequential {
 public:
  static constexpr int64_t expansion = 4;
  Bottleneck(const BlockConfig& cfg, Generator& gen);
  Shape output_shape(const Shape& in) const override;
  std::string describe() const override;
  BatchNorm2d& last_bn() { return *last_bn_; }

 private:
  BlockConfig cfg_;
  BatchNorm2d* last_bn_ = nullptr;
  bool projection_ = false;
};

}  // namespace minidl

// Small layers and containers: Flatten, Dropout, Sequential.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "layers/module.h"

namespace minidl {

// (N, C, H, W) -> (N, C*H*W) in PyTorch's order (c, h, w): a view, no copy forward or backward,
// for an NCHW input, and for any input whose layouts coincide (H*W == 1: a ResNet's global pool,
// only relabelled). A channels-last input with H*W > 1 (AlexNet's (N, 256, 2, 2) features under
// --channels-last) is converted to NCHW first, into a buffer of the layer (one pass,
// kernels/convert.h), so the linear layer after it sees the same features in the same order in
// both layouts; backward converts the gradient back to channels-last.
class Flatten : public Module {
 public:
  Flatten() : Module("Flatten") {}
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  std::string describe() const override { return "Flatten()"; }

 private:
  Shape in_shape_;
  Layout in_layout_ = Layout::NCHW;
  Tensor nchw_, dx_;  // a channels-last input converted to NCHW, and its gradient converted back
};

// Inverted dropout (kernels/dropout.h). Train mode draws a fresh mask each forward from the
// layer's generator (seeded at construction); eval mode is the identity.
class Dropout : public Module {
 public:
  Dropout(double p, uint64_t seed);
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override { return in; }
  std::string describe() const override;
  Generator& generator() { return gen_; }

 private:
  double p_;
  Generator gen_;
  Mode last_mode_ = Mode::Train;
  Tensor y_, mask_, dx_;
};

// Runs children in order; backward in reverse: the one place a chain of layers is written down.
// A composite built as a Sequential (a residual block, a whole model) states its layer order once,
// in its constructor, and gets its output shape, FLOPs, forward and backward from here:
//
//   output_shape(x) = f_n(... f_1(x))          forward_flops = sum of the children's, along the shapes
//   y  = f_n(... f_1(x))                       dx = f_1.backward(... f_n.backward(dy))
//
// Children are named "0", "1", ... (as torch.nn.Sequential), or by the name they are added under,
// which becomes part of their parameters' names ("conv1" -> "conv1.weight"). A composite class
// derives from Sequential to add its own input check (output_shape) and describe().
class Sequential : public Module {
 public:
  Sequential() : Sequential("Sequential") {}
  // Appends a layer named by its position and returns it (typed), e.g.
  //   auto& c = seq.add(std::make_unique<Conv2d>(...));   // "0"
  template <typename L>
  L& add(std::unique_ptr<L> layer) {
    return add(std::to_string(layers_.size()), std::move(layer));
  }
  // Appends a layer under `name` (unique among the children).
  template <typename L>
  L& add(const std::string& name, std::unique_ptr<L> layer) {
    check_name(name);
    return append(name, std::move(layer));
  }
  // Appends a layer that adds no name of its own: its parameters and children are named as if
  // they were this Sequential's (module.h, transparent children). For a combinator that only
  // groups layers, e.g. the Residual of a BasicBlock, whose "conv1" stays "layer1.0.conv1".
  template <typename L>
  L& add_transparent(std::unique_ptr<L> layer) {
    return append("", std::move(layer));
  }

  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;
  size_t size() const { return layers_.size(); }
  Module& operator[](size_t i) { return *layers_.at(i); }

 protected:
  // For composites deriving from Sequential: the type name shows in errors and the summary.
  explicit Sequential(std::string type_name) : Module(std::move(type_name)) {}

 private:
  void check_name(const std::string& name) const;
  template <typename L>
  L& append(const std::string& name, std::unique_ptr<L> layer) {
    L& ref = *layer;
    register_module(name, layer.get());
    layers_.push_back(std::move(layer));
    return ref;
  }

  std::vector<std::unique_ptr<Module>> layers_;
  Shape out_shape_;         // of the last forward, to check the gradient backward receives
  bool forwarded_ = false;
};

}  // namespace minidl

// Small layers and containers: Flatten, Dropout, Sequential.
#pragma once

#include <memory>
#include <vector>

#include "core/rng.h"
#include "layers/module.h"

namespace minidl {

// (N, C, H, W) -> (N, C*H*W), a view: no copy forward or backward.
class Flatten : public Module {
 public:
  Flatten() : Module("Flatten") {}
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  std::string describe() const override { return "Flatten()"; }

 private:
  Shape in_shape_;
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

// Runs children in order; backward in reverse. Children are named "0", "1", ... (as
// torch.nn.Sequential) unless a name is given.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  // Appends a layer and returns a reference to it (typed), e.g. auto& c = seq.add(std::make_unique<Conv2d>(...));
  template <typename L>
  L& add(std::unique_ptr<L> layer, std::string name = "") {
    L& ref = *layer;
    if (name.empty()) name = std::to_string(layers_.size());
    register_module(name, layer.get());
    layers_.push_back(std::move(layer));
    return ref;
  }
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;
  size_t size() const { return layers_.size(); }
  Module& operator[](size_t i) { return *layers_.at(i); }

 private:
  std::vector<std::unique_ptr<Module>> layers_;
};

}  // namespace minidl

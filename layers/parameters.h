// A model's parameters in two flat buffers: every parameter value in one contiguous tensor and
// every gradient in another, each Parameter's value/grad re-pointed at its slice.
//
//   values: [ conv1.weight | bn1.weight | bn1.bias | ... | fc.bias ]     (state_dict order)
//   grads:  [ same layout                                          ]
//
// Layers keep Parameter* and read p->value / p->grad at every forward and backward, so they see
// the slices without knowing about the flat buffers. What the flat layout buys:
//   - zero_grad is one memset;
//   - an optimizer step is one pass (one kernel launch on a GPU) over all parameters, with its
//     state (momentum, Adam moments) in buffers of the same layout (optim/optimizer.h).
//
// The model owns this object (Module::flat_parameters() on the root module) and keeps it valid
// across Module::to(device): to() moves the two buffers and re-points every parameter. A parameter
// replaced by other code (p->value = something else) is no longer in the buffers: check_bound()
// finds it and names it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace minidl {

struct Parameter {
  Tensor value;
  Tensor grad;  // same shape, dtype and device as value; accumulated by backward
};

struct NamedParameter {
  std::string name;
  Parameter* param;
};

class FlatParameters {
 public:
  // Copies every parameter's value into the flat value buffer (in the order given) and re-points
  // value and grad at their slices; the gradients start at zero. Throws, naming the parameter,
  // when the parameters do not share one device and dtype, when one has no value, or when one is
  // listed twice.
  explicit FlatParameters(std::vector<NamedParameter> params);
  FlatParameters(const FlatParameters&) = delete;
  FlatParameters& operator=(const FlatParameters&) = delete;

  const Tensor& values() const { return values_; }
  const Tensor& grads() const { return grads_; }
  const std::vector<NamedParameter>& parameters() const { return params_; }
  // parameters()[i] occupies [offset(i), offset(i + 1)) of both buffers; offset(size()) = numel().
  int64_t offset(size_t i) const { return offsets_[i]; }
  size_t size() const { return params_.size(); }
  int64_t numel() const { return offsets_.back(); }
  Device device() const { return values_.device(); }
  DType dtype() const { return values_.dtype(); }

  // Sets every gradient to zero: one memset.
  void zero_grad() { grads_.zero_(); }
  // Moves both buffers to `d` (a copy; nothing when already there) and re-points every parameter.
  void to(Device d);
  // Throws when a parameter's value or grad no longer views its slice, naming the parameter and
  // starting the message with `who` (e.g. "optimizer sgd").
  void check_bound(const std::string& who) const;

 private:
  void bind();  // points every parameter's value/grad at its slice

  std::vector<NamedParameter> params_;
  std::vector<int64_t> offsets_;
  Tensor values_, grads_;
};

}  // namespace minidl

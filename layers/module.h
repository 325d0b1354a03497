// The layer contract.
//
//   y  = forward(x, mode)   computes the output and keeps what backward needs (the input, BN
//                           statistics, pooling argmax) in named members of the layer.
//   dx = backward(dy)       for the most recent forward: returns dL/dx, OVERWRITING the layer's
//                           input-gradient buffer, and ACCUMULATES (+=) dL/dW into every
//                           parameter's .grad. Call zero_grad() before each step's backward.
//
// Accumulating parameter gradients is what lets one parameter be used twice (and a batch be split);
// overwriting activation gradients is what lets the buffers be reused without clearing them.
//
// Buffers (outputs, input gradients, caches) belong to the layer and are allocated once per input
// shape (ensure_tensor), so the returned tensors are valid until the layer's next forward/backward.
// Layers call ops from kernels/ and never branch on the device or name a backend: the same code
// runs on the CPU and on a GPU, the tensors' device decides, and each op selects its backend from
// that device's run-wide settings (core/device_settings.h, kernels/backend.h).
//
// Layouts (core/tensor.h). A layer's outputs and input gradients take its input's layout: a model
// given a channels-last (NHWC) batch keeps every 4-D activation and gradient channels-last
// (`train --channels-last`), and only Flatten changes it back, to PyTorch's (C, H, W) order.
// Parameters have no layout: a convolution's weight and its gradient are (K, C, R, S) as PyTorch's
// in both modes, so checkpoints, --pretrained, ONNX export and the optimizer never see one.
//
// Parameters and buffers carry PyTorch state_dict names ("layer1.0.conv1.weight",
// "bn1.running_mean") built from the names children are registered under. A child registered
// under the empty name is transparent: it adds no level to the names, so a combinator can group
// layers (a residual block's main branch) while they keep the names torchvision gives them.
//
// The model (the root module) owns its parameters' flat buffers (layers/parameters.h):
// flat_parameters() gathers every parameter into one value and one gradient buffer on first use;
// from then on zero_grad() is one memset and to(device) moves the two buffers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/parameters.h"

namespace minidl {

enum class Mode { Train, Eval };

struct NamedBuffer {
  std::string name;
  Tensor* tensor;
};

class Module {
 public:
  explicit Module(std::string type_name) : type_(std::move(type_name)) {}
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x, Mode mode) = 0;
  virtual Tensor backward(const Tensor& dy) = 0;

  // Output shape for an input shape, without computing anything; throws naming the layer and the
  // shape when the input does not fit. Used by forward's checks and by the model summary.
  virtual Shape output_shape(const Shape& in) const = 0;
  // Floating-point operations of one forward pass on an input of shape `in` (2 per multiply-add).
  virtual int64_t forward_flops(const Shape& in) const;
  // One-line description with the constructor's settings, e.g. "Conv2d(3, 64, k=3, s=1, p=1)".
  virtual std::string describe() const { return type_; }

  const std::string& type_name() const { return type_; }
  // Dotted path from the root ("layer1.0.conv1"); "" for the root itself.
  const std::string& path() const { return path_; }
  // How error messages name this layer: "Conv2d 'layer1.0.conv1'".
  std::string who() const;

  std::vector<NamedParameter> named_parameters();
  std::vector<NamedBuffer> named_buffers();
  const std::vector<std::pair<std::string, Module*>>& children() const { return children_; }
  int64_t parameter_count();

  // The parameters of this module and its children in one flat value and one flat gradient buffer,
  // made on the first call and kept by this module (see the top). Call it on the model, the root
  // module: a part of a model cannot take its parameters into buffers of its own.
  FlatParameters& flat_parameters();
  bool has_flat_parameters() const { return flat_ != nullptr; }

  // Sets every parameter gradient to zero (one memset once the flat buffers exist).
  void zero_grad();
  // Moves parameters, gradients and buffers (and children's) to `d`; the flat buffers, when made,
  // move as a whole and the parameters stay their slices. Layer-owned scratch buffers are
  // reallocated on the next forward.
  virtual void to(Device d);
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }

  // When false the layer may skip computing dL/dx (the first layer of a network): backward then
  // returns an undefined tensor. Parameter gradients are still accumulated.
  void set_needs_input_grad(bool v) { needs_input_grad_ = v; }
  bool needs_input_grad() const { return needs_input_grad_; }

  // Called with each child as soon as its backward has returned (by Sequential and Residual), so
  // that the child's parameter gradients are known to be complete: data-parallel training
  // (dist/grad_sync.h) starts all-reducing a bucket of them while backward goes on. Set on the
  // model; it reaches every module below. An empty function removes it.
  using BackwardHook = std::function<void(Module& done)>;
  void set_backward_hook(const BackwardHook& hook);

 protected:
  // Registers a parameter (grad allocated as zeros alongside); the pointer stays valid for the
  // module's life.
  Parameter* register_parameter(const std::string& name, Tensor value);
  Tensor* register_buffer(const std::string& name, Tensor value);
  // Registers a child that the derived class owns (as a member or in a container). An empty
  // name makes it transparent: its parameters and children are named as if they were this
  // module's own ("conv1.weight", not "<name>.conv1.weight").
  void register_module(const std::string& name, Module* child);
  // Throws, naming the layer, when x is not on this layer's device and dtype.
  void check_input(const Tensor& x) const;
  // A combinator calls this after a child's backward (see set_backward_hook).
  void backward_done(Module& child) const {
    if (backward_hook_) backward_hook_(child);
  }

  Device device_ = Device::cpu();
  DType dtype_ = DType::F32;
  bool needs_input_grad_ = true;
  bool has_state_ = false;  // owns parameters or buffers (itself or a child): then device matters

 private:
  void set_path(const std::string& path);

  std::string type_;
  std::string path_;
  std::vector<std::pair<std::string, std::unique_ptr<Parameter>>> params_;
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  std::unique_ptr<FlatParameters> flat_;  // made by flat_parameters()
  BackwardHook backward_hook_;
};

}  // namespace minidl

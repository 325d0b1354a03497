// One training step of a whole model from given float32 weights: the setup that the whole-model
// tests share (tests/cuda/model_cuda_test.cpp, tests/engine/mixed_precision_test.cpp,
// tests/cuda/mixed_precision_cuda_test.cpp), so that every one of them builds, seeds and steps a
// model the same way.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "engine/mixed_precision.h"
#include "layers/module.h"

namespace minidl::test {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// The seed every whole-model test builds its models with.
constexpr uint64_t kModelInitSeed = 7;

// Model `name`'s initial float32 parameters (built with kModelInitSeed), by name.
NamedTensors initial_parameters(const std::string& name);
// Model `name` in `dtype` holding `init` (names checked, values converted to dtype), on `dev`.
std::unique_ptr<Module> model_from(const std::string& name, DType dtype, const NamedTensors& init,
                                   Device dev);

// `init` with every value rounded to `dtype` (bfloat16/float16) and back to float32.
NamedTensors rounded_parameters(const NamedTensors& init, DType dtype);

struct PrecisionStep {
  double loss = 0;
  NamedTensors grads;  // float64 CPU copies of the parameter gradients
};
// One SGD step (momentum 0.9, lr 0.05) of `model`, moved to `dev`, through the engine's train_step
// under precision p with 4-D activations in `layout` (NHWC: train --channels-last), with dev's
// current settings; x (NCHW) and labels are CPU tensors, moved to `dev`.
PrecisionStep step_module(Module& model, Precision p, const Tensor& x, const Tensor& labels,
                          Device dev, Layout layout = Layout::NCHW);
// The same step of model `name` built from `init` (engine/mixed_precision.h): in float64 (dtype
// F64, p FP32: the reference) or with float32 master weights (dtype F32) under p. x is cast to
// dtype.
PrecisionStep precision_step(const std::string& name, DType dtype, Precision p,
                             const NamedTensors& init, const Tensor& x, const Tensor& labels,
                             Device dev = Device::cpu(), Layout layout = Layout::NCHW);

}  // namespace minidl::test

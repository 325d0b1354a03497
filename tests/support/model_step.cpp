#include "model_step.h"

#include <catch2/catch.hpp>

#include "models/models.h"
#include "optim/optimizer.h"
#include "test_util.h"

namespace minidl::test {

NamedTensors initial_parameters(const std::string& name) {
  ModelConfig mc;
  mc.name = name;
  mc.seed = kModelInitSeed;
  NamedTensors init;
  const auto model = make_model(mc);
  for (auto& np : model->named_parameters()) init.emplace_back(np.name, np.param->value);
  return init;
}

std::unique_ptr<Module> model_from(const std::string& name, DType dtype, const NamedTensors& init,
                                   Device dev) {
  ModelConfig mc;
  mc.name = name;
  mc.seed = kModelInitSeed;
  mc.dtype = dtype;
  auto model = make_model(mc);
  auto params = model->named_parameters();
  REQUIRE(params.size() == init.size());
  for (size_t i = 0; i < params.size(); ++i) {
    REQUIRE(params[i].name == init[i].first);
    params[i].param->value.copy_(cast(init[i].second, dtype));
  }
  model->to(dev);
  return model;
}

NamedTensors rounded_parameters(const NamedTensors& init, DType dtype) {
  NamedTensors out;
  for (const auto& [name, value] : init)
    out.emplace_back(name, cast(cast(value, dtype), DType::F32));
  return out;
}

PrecisionStep step_module(Module& model, Precision p, const Tensor& x, const Tensor& labels,
                          Device dev, Layout layout) {
  model.to(dev);
  OptimizerConfig oc;
  oc.momentum = 0.9;
  auto opt = make_optimizer(model.flat_parameters(), oc);
  SoftmaxCrossEntropy criterion;
  GradScaler scaler = make_grad_scaler(p);
  // Outside REQUIRE, so that an op's error reaches the caller as an exception.
  const bool stepped =
      train_step(model, criterion, *opt, scaler, StepPolicy{p, layout}, x.to(dev), labels.to(dev),
                 0.05);
  REQUIRE(stepped);
  PrecisionStep s;
  s.loss = to_doubles(criterion.loss())[0];
  for (auto& np : model.named_parameters())
    s.grads.emplace_back(np.name, cast(np.param->grad, DType::F64));
  return s;
}

PrecisionStep precision_step(const std::string& name, DType dtype, Precision p,
                             const NamedTensors& init, const Tensor& x, const Tensor& labels,
                             Device dev, Layout layout) {
  auto model = model_from(name, dtype, init, Device::cpu());
  return step_module(*model, p, cast(x, dtype), labels, dev, layout);
}

}  // namespace minidl::test

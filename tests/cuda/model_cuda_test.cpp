// Whole-model checks on the GPU: one ResNet-18 (and AlexNet, with dropout) training step on the
// GPU, on every kernel path, matches the same step on the CPU from the same initial weights and
// inputs: logits, loss, every parameter gradient, and the parameters after an SGD step.
#include <catch2/catch.hpp>

#include "layers/loss.h"
#include "models/models.h"
#include "optim/optimizer.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct StepResult {
  Tensor logits, loss;
  std::vector<std::pair<std::string, Tensor>> grads, params_after;
};

StepResult train_step(const std::string& model_name, Device dev, KernelPath path, const Tensor& x,
                      const Tensor& labels) {
  ModelConfig mc;
  mc.name = model_name;
  mc.seed = 7;  // same seed on both devices: identical initial weights (drawn on the host)
  auto model = make_model(mc);
  model->to(dev);
  model->set_kernel_path(path);
  OptimizerConfig oc;
  oc.lr = 0.05;
  oc.momentum = 0.9;
  oc.weight_decay = 5e-4;
  auto opt = make_optimizer(model->named_parameters(), oc);
  SoftmaxCrossEntropy loss;
  opt->zero_grad();
  StepResult r;
  const Tensor logits = model->forward(x.to(dev), Mode::Train);
  r.logits = logits.to(Device::cpu());
  r.loss = loss.forward(logits, labels.to(dev)).to(Device::cpu());
  model->backward(loss.backward());
  for (auto& np : model->named_parameters()) r.grads.emplace_back(np.name, np.param->grad.to(Device::cpu()));
  opt->step();
  for (auto& np : model->named_parameters())
    r.params_after.emplace_back(np.name, np.param->value.to(Device::cpu()));
  return r;
}

}  // namespace

TEST_CASE("cuda model: a ResNet-18 and AlexNet training step matches the CPU step", "[cuda][model]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor x = normal_tensor(Shape{4, 3, 32, 32}, g, 1.0, DType::F32);
  const Tensor labels = label_tensor(4, 10, g);
  for (const std::string name : {"resnet18", "alexnet"}) {
    // AlexNet's dropout draws from Philox counters, so the GPU and CPU masks are identical.
    const StepResult cpu = train_step(name, Device::cpu(), KernelPath::Cudnn, x, labels);
    for (KernelPath path : {KernelPath::Handwritten, KernelPath::Cublas, KernelPath::Cudnn}) {
      INFO(name << " on path " << kernel_path_name(path));
      const StepResult gpu = train_step(name, Device::cuda(0), path, x, labels);
      // Tolerances: ~20 layers of fp32 arithmetic in different summation orders (cuDNN's algorithms,
      // our tiles, BN reductions) compound to ~1e-5 relative; batch statistics over 4 images amplify
      // differences in small-variance channels, so gradients get 1e-3 relative L2.
      const Comparison lg = compare(gpu.logits, cpu.logits, 1e-3, 1e-3);
      INFO("logits: " << lg.report);
      CHECK(lg.rel_l2_error < 1e-4);
      CHECK(gpu.loss.item<float>() == Approx(cpu.loss.item<float>()).epsilon(1e-4));
      for (size_t i = 0; i < cpu.grads.size(); ++i) {
        const Comparison c = compare(gpu.grads[i].second, cpu.grads[i].second, 1e-2, 1e-2);
        INFO("grad " << cpu.grads[i].first << ": " << c.report);
        CHECK(c.rel_l2_error < 1e-3);
        const Comparison p = compare(gpu.params_after[i].second, cpu.params_after[i].second, 1e-5, 1e-4);
        INFO("param " << cpu.params_after[i].first << ": " << p.report);
        CHECK(p.ok);
      }
    }
  }
}

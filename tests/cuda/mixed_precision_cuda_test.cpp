// --precision bf16|fp16 on CUDA (engine/mixed_precision.h): a training step runs where every op it
// calls has a 16-bit row on the CUDA backend the settings select (the op table's dtype column),
// and stops at the first op that has none, with an error naming the op, the backend and the fix.
//
// 1. A network of the memory-bound ops only (batchnorm, ReLU, a residual add, dropout, max and
//    average pooling, global average pooling): its bf16/fp16 step runs on CUDA and agrees with the
//    same step on the CPU (cpu-reference's 16-bit rows). Both compute every op in float32 from
//    the same 16-bit values and round each output once, so they differ only where two float32
//    results that differ in their last bits (the GPU's batchnorm statistics are merged in another
//    order, its exp is another implementation) fall on two sides of a 16-bit rounding boundary:
//    such an element moves by one 16-bit ulp (<= 2u relative), and a gradient made of many
//    elements moves by far less than 2u in relative L2. Bound: 2u for the loss and each gradient.
// 2. A CIFAR ResNet-20 (convolutions and a linear layer first and last): its 16-bit step either
//    runs, when the op table lists 16-bit CUDA rows for every op it calls, or throws the op
//    table's error naming an op whose row lacks the dtype and the backend.
#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <string>

#include "../support/backends.h"
#include "../support/model_step.h"
#include "../support/test_util.h"
#include "engine/mixed_precision.h"
#include "kernels/activation.h"
#include "kernels/backend.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "kernels/pooling.h"
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/loss.h"
#include "layers/pooling.h"
#include "layers/residual.h"
#include "models/models.h"
#include "optim/optimizer.h"

using namespace minidl;
using namespace minidl::test;

namespace {

constexpr int64_t kC = 10;  // channels = classes: the pooled map is the logits

std::unique_ptr<Module> memory_bound_net() {
  auto net = std::make_unique<Sequential>();
  net->add(std::make_unique<BatchNorm2d>(BatchNorm2dConfig{kC}));
  net->add(std::make_unique<ReLU>());
  auto main = std::make_unique<Sequential>();
  main->add(std::make_unique<BatchNorm2d>(BatchNorm2dConfig{kC}));
  main->add(std::make_unique<Dropout>(0.25, 99));
  net->add(std::make_unique<Residual>(std::move(main), nullptr));
  net->add(std::make_unique<MaxPool2d>(Pool2dParams{3, 2, 1}));
  net->add(std::make_unique<AvgPool2d>(Pool2dParams{2, 1, 0}));
  net->add(std::make_unique<GlobalAvgPool>());
  net->add(std::make_unique<Flatten>());
  return net;
}

// One SGD step of `model` on `dev` under precision p, from the model's own initial weights
// (tests/support/model_step.h; an op's error reaches the caller as an exception).
PrecisionStep step_on(Module& model, Device dev, Precision p, const Tensor& x,
                      const Tensor& labels) {
  return step_module(model, p, x, labels, dev);
}

}  // namespace

TEST_CASE("bf16/fp16 step of the memory-bound ops on CUDA matches the CPU's 16-bit step",
          "[cuda][mixed_precision][half]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // 8 x 8 maps of 10 channels, batch 6: 3,840 values, more than the tests' 4-block grid.
  const Tensor x = normal_tensor(Shape{6, kC, 8, 8}, g, 1.0, DType::F32);
  const Tensor labels = label_tensor(6, kC, g);
  for (const BackendCase& c : low_precision_cases(batchnorm_op())) {
    if (c.backend == Backend::CudaVendor) continue;  // as the training run: settings pick it
    const Precision p = c.dtype == DType::BF16 ? Precision::BF16 : Precision::FP16;
    const double u = c.dtype == DType::BF16 ? 0x1p-8 : 0x1p-11;
    INFO(precision_name(p) << " on " << c.name());
    auto cpu_net = memory_bound_net(), gpu_net = memory_bound_net();
    const PrecisionStep cpu = step_on(*cpu_net, Device::cpu(), p, x, labels);
    ScopedDeviceSettings scope(settings_selecting(c.backend));
    const PrecisionStep gpu = step_on(*gpu_net, c.device, p, x, labels);
    // The derivation is at the top of the file: 2u for the loss and each gradient.
    CHECK(std::fabs(gpu.loss - cpu.loss) <= 2 * u * std::fabs(cpu.loss));
    REQUIRE(gpu.grads.size() == cpu.grads.size());
    for (size_t i = 0; i < cpu.grads.size(); ++i) {
      const Comparison cmp = compare(gpu.grads[i].second, cpu.grads[i].second, 0, 0);
      INFO("gradient " << i << ": " << cmp.report);
      CHECK(cmp.rel_l2_error <= 2 * u);
    }
  }
}

TEST_CASE(
    "bf16/fp16 step of a ResNet-20 on CUDA runs, or names the op and backend without a "
    "16-bit row",
    "[cuda][mixed_precision][half]") {
  const uint64_t seed = test_seed();
  Generator g(seed);
  const Tensor x = normal_tensor(Shape{2, 3, 8, 8}, g, 1.0, DType::F32);
  const Tensor labels = label_tensor(2, 10, g);
  for (const BackendCase& c : backend_cases(conv2d_op())) {
    if (c.dtype != DType::F32) continue;  // one case per CUDA kernel setting
    ScopedDeviceSettings scope(settings_selecting(c.backend));
    for (const Precision p : {Precision::BF16, Precision::FP16}) {
      const DType dt = activation_dtype(p);
      INFO(precision_name(p) << ", kernels of " << c.name());
      ModelConfig mc;
      mc.name = "resnet20";
      mc.seed = 7;
      auto model = make_model(mc);
      // The ops the step calls with 16-bit tensors, and whether the selected backend of each
      // computes the dtype.
      bool all_16bit = true;
      std::string missing;
      const OpInfo* ops[] = {&conv2d_op(),      &batchnorm_op(),      &activation_op(),
                             &elementwise_op(), &global_avgpool_op(), &linear_op()};
      for (const OpInfo* op : ops) {
        const Backend b = select_backend(*op, c.device, dt);
        if (!op->computes(b, dt)) {
          all_16bit = false;
          missing += str(" ", op->name);
        }
      }
      INFO("ops without a 16-bit row:" << (missing.empty() ? " none" : missing));
      if (all_16bit) {
        CHECK_NOTHROW(step_on(*model, c.device, p, x, labels));
      } else {
        // check_backend's error: "<fn>: the <backend> backend of <op> computes in ..., got <dt>".
        try {
          step_on(*model, c.device, p, x, labels);
          FAIL("the step ran, but the op table lists no 16-bit CUDA row for" << missing);
        } catch (const Error& e) {
          const std::string what = e.what();
          INFO(what);
          bool named = false;
          for (const OpInfo* op : op_table())
            for (const Backend b : runnable_backends(*op, DeviceType::CUDA))
              if (what.find(str("the ", backend_name(b), " backend of ", op->name,
                                " computes in")) != std::string::npos) {
                named = true;
                CHECK_FALSE(op->computes(b, dt));
              }
          CHECK(named);
          CHECK(what.find(dtype_name(dt)) != std::string::npos);
          CHECK(what.find("--precision fp32") != std::string::npos);
        }
      }
    }
  }
}

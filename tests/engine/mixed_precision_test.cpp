// --precision (engine/mixed_precision.h): the loss scaler's state machine (GradScaler's rules), an
// fp16 step whose gradients overflow is skipped and never reaches the weights, the scaler's state
// through a checkpoint, and whole bf16 training steps of ResNet-18 and AlexNet against the float64
// step.
#include "engine/mixed_precision.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>

#include <unistd.h>

#include "../support/model_step.h"
#include "../support/test_util.h"
#include "io/checkpoint.h"
#include "kernels/grad_scale.h"
#include "models/models.h"

using namespace minidl;
using namespace minidl::test;
namespace fs = std::filesystem;

TEST_CASE("GradScaler: GradScaler's state machine (65536, x2 after 2000 clean steps, x0.5 on inf)",
          "[mixed_precision][grad_scaler]") {
  GradScaler s(true);
  CHECK(s.scale() == 65536.0);
  for (int i = 0; i < 1999; ++i) s.update(false);
  CHECK(s.scale() == 65536.0);
  CHECK(s.state().growth_tracker == 1999);
  s.update(false);  // the 2000th clean step doubles the scale and restarts the count
  CHECK(s.scale() == 131072.0);
  CHECK(s.state().growth_tracker == 0);
  for (int i = 0; i < 1500; ++i) s.update(false);
  s.update(true);  // an overflow halves it and restarts the count
  CHECK(s.scale() == 65536.0);
  CHECK(s.state().growth_tracker == 0);
  s.update(true);
  CHECK(s.scale() == 32768.0);
  for (int i = 0; i < 2000; ++i) s.update(false);
  CHECK(s.scale() == 65536.0);

  // Disabled (bf16, fp32): scale 1, update does nothing.
  GradScaler off(false);
  off.update(true);
  CHECK(off.scale() == 1.0);
  // A saved state comes back; an impossible one is refused by name.
  GradScaler t(true);
  t.load_state({1024.0, 17});
  CHECK(t.scale() == 1024.0);
  CHECK(t.state().growth_tracker == 17);
  CHECK_THROWS_WITH(t.load_state({-1.0, 0}), Catch::Contains("loss_scale"));
  CHECK_THROWS_WITH(t.load_state({1024.0, 2000}), Catch::Contains("growth tracker"));
}

TEST_CASE("GradScaler: scales the loss gradient, unscales the gradients and finds inf/NaN",
          "[mixed_precision][grad_scaler]") {
  GradScaler s(true);
  Tensor dloss = Tensor::from_vector<float>({1.0f, -0.5f, 0x1p-20f}, Shape{3});
  s.scale_loss_grad(dloss);
  CHECK(dloss.to_vector<float>() == std::vector<float>{65536.0f, -32768.0f, 0x1p-4f});
  Tensor g = Tensor::from_vector<float>({65536.0f, 3.0f, -0.0f}, Shape{3});
  CHECK_FALSE(s.unscale(g));
  CHECK(g.to_vector<float>() == std::vector<float>{1.0f, 3.0f / 65536.0f, -0.0f});
  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                    -std::numeric_limits<float>::infinity()}) {
    Tensor h = Tensor::from_vector<float>({1.0f, bad, 2.0f}, Shape{3});
    CHECK(s.unscale(h));
  }
  // The op refuses what it cannot check.
  Tensor flag = Tensor::zeros(Shape{}, DType::I32);
  Tensor bf = Tensor::zeros(Shape{2}, DType::BF16);
  CHECK_THROWS_WITH(scale_and_check_finite(bf, 2.0, flag),
                    Catch::Contains("scale_and_check_finite") && Catch::Contains("bfloat16"));
}

namespace {

std::vector<float> parameters_of(Module& m) { return m.flat_parameters().values().to_vector<float>(); }

}  // namespace

TEST_CASE("fp16: a step whose gradients overflow is skipped and never reaches the weights",
          "[mixed_precision][fp16]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  ModelConfig mc;
  mc.name = "plain";
  mc.seed = 3;
  auto model = make_model(mc);
  OptimizerConfig oc;
  oc.momentum = 0.9;
  oc.weight_decay = 5e-4;
  auto opt = make_optimizer(model->flat_parameters(), oc);
  SoftmaxCrossEntropy criterion;
  const Tensor x = normal_tensor(Shape{8, 3, 32, 32}, g, 1.0, DType::F32);
  const Tensor labels = label_tensor(8, 10, g);

  // A scale of 2^60: the loss gradient (|dz| <= 1/8) times 2^60 is finite in float32 but far
  // beyond float16's 65504, so the 16-bit gradients are infinite.
  GradScalerConfig big;
  big.init_scale = 0x1p60;
  GradScaler scaler(true, big);
  const std::vector<float> before = parameters_of(*model);
  CHECK_FALSE(train_step(*model, criterion, *opt, scaler, Precision::FP16, x, labels, 0.1));
  CHECK(parameters_of(*model) == before);  // bit for bit: no step, no weight decay, no NaN
  CHECK(opt->step_count() == 0);           // the optimizer state did not move either
  CHECK(scaler.scale() == 0x1p59);
  CHECK(scaler.state().growth_tracker == 0);

  // With the default scale the same step is taken, and trains.
  GradScaler normal(true);
  const float loss0 = criterion.loss().item<float>();
  CHECK(train_step(*model, criterion, *opt, normal, Precision::FP16, x, labels, 0.1));
  CHECK(opt->step_count() == 1);
  CHECK(normal.state().growth_tracker == 1);
  const std::vector<float> after = parameters_of(*model);
  CHECK(after != before);
  CHECK(std::all_of(after.begin(), after.end(), [](float v) { return std::isfinite(v); }));
  for (int i = 0; i < 5; ++i) train_step(*model, criterion, *opt, normal, Precision::FP16, x, labels, 0.1);
  INFO("loss " << loss0 << " -> " << criterion.loss().item<float>());
  CHECK(criterion.loss().item<float>() < loss0);
}

TEST_CASE("the loss scaler's state goes through a checkpoint", "[mixed_precision][checkpoint]") {
  ModelConfig mc;
  mc.name = "plain";
  auto model = make_model(mc);
  const fs::path path =
      fs::temp_directory_path() / ("minidl_mp_ckpt_" + std::to_string(getpid()) + ".safetensors");
  TrainState st;
  st.loss_scale = 8192.0;
  st.loss_scale_growth_tracker = 1234;
  save_checkpoint(path.string(), *model, nullptr, st);
  const TrainState back = load_checkpoint(path.string(), *model, nullptr);
  CHECK(back.loss_scale == 8192.0);
  CHECK(back.loss_scale_growth_tracker == 1234);
  // Without a scaler (fp32/bf16 runs) nothing is written and nothing comes back.
  save_checkpoint(path.string(), *model, nullptr, TrainState{});
  CHECK(load_checkpoint(path.string(), *model, nullptr).loss_scale == 0.0);
  fs::remove(path);
}

namespace {

uint64_t model_seed() { return std::getenv("MINIDL_TEST_SEED") ? test_seed() : 20261205; }

}  // namespace

// The bound, derived from the network's own sensitivity. bf16 rounds to 8 significant bits: each
// rounding multiplies a value by (1 + d), |d| <= u = 2^-8. The step rounds the input and every
// weight once, and then, layer by layer, each output and (backward) each input gradient. A
// network at initialisation, trained in train-mode batchnorm on a tiny batch, amplifies such
// perturbations strongly (ReLUs and max-pool windows that flip, batch statistics of 16 values), so
// instead of a per-stage error model the test measures the amplification: `pert`, the float64 step
// from the input and weights rounded to bf16 (the first rounding stage, alone, with everything
// after it exact). Every later stage rounds by the same u at a point that perturbation already
// passes through, and their contributions add like independent errors; with 4 kinds of rounding
// point per layer (weight, output, batchnorm output, input gradient) the bf16 step's error is
// about sqrt(4) = 2 times pert's, and the bound is 3 times pert's (per parameter gradient, with
// pert's median over the parameters as its floor: a gradient that pert happens to leave almost
// unchanged does not make the bound zero). The loss is a forward quantity, far better conditioned: |bf16 - f64| <= 3
// times pert's difference, with a floor of 4 u |loss| (one rounding of the logits, and the input's).
// PyTorch's torch.autocast(bfloat16) step on the same models shows the same magnitudes (median
// gradient errors 0.3 for ResNet-18, 0.13 for AlexNet; benchmarks in docs/BENCHMARKS.md).
TEST_CASE("bf16: a ResNet-18 and AlexNet training step against the float64 step",
          "[mixed_precision][bf16][model]") {
  const uint64_t seed = model_seed();
  INFO("seed " << seed << " (MINIDL_TEST_SEED repeats another)");
  Generator g(seed);
  const double u = 0x1p-8;
  struct ModelCase {
    const char* name;
    Shape x;
  };
  for (const ModelCase mcase :
       {ModelCase{"resnet18", Shape{4, 3, 16, 16}}, ModelCase{"alexnet", Shape{4, 3, 32, 32}}}) {
    INFO(mcase.name);
    const Tensor x = normal_tensor(mcase.x, g, 1.0, DType::F32);
    const Tensor labels = label_tensor(mcase.x[0], 10, g);
    const NamedTensors init = initial_parameters(mcase.name);
    const NamedTensors init_rounded = rounded_parameters(init, DType::BF16);
    const Tensor x_rounded = cast(cast(x, DType::BF16), DType::F32);

    using P = PrecisionStep;
    const P ref = precision_step(mcase.name, DType::F64, Precision::FP32, init, x, labels);
    const P pert =
        precision_step(mcase.name, DType::F64, Precision::FP32, init_rounded, x_rounded, labels);
    const P bf = precision_step(mcase.name, DType::F32, Precision::BF16, init, x, labels);
    const double loss_bound = std::max(3 * std::fabs(pert.loss - ref.loss), 4 * u * std::fabs(ref.loss));
    INFO("loss " << bf.loss << " vs float64 " << ref.loss << " (rounded input and weights: "
                 << pert.loss << ")");
    CHECK(std::fabs(bf.loss - ref.loss) <= loss_bound);
    std::vector<double> pert_err;
    for (size_t i = 0; i < ref.grads.size(); ++i)
      pert_err.push_back(compare(pert.grads[i].second, ref.grads[i].second, 0, 0).rel_l2_error);
    std::vector<double> sorted = pert_err;
    std::sort(sorted.begin(), sorted.end());
    const double floor = sorted[sorted.size() / 2];  // the median parameter's
    double worst = 0;
    for (size_t i = 0; i < ref.grads.size(); ++i) {
      const Comparison c = compare(bf.grads[i].second, ref.grads[i].second, 0, 0);
      const double bound = 3 * std::max(pert_err[i], floor);
      INFO(ref.grads[i].first << " gradient: relative L2 error " << c.rel_l2_error
                              << ", float64 from rounded input and weights " << pert_err[i]
                              << ", bound " << bound);
      CHECK(c.rel_l2_error < bound);
      worst = std::max(worst, c.rel_l2_error / bound);
    }
    WARN(mcase.name << ": worst gradient error / bound " << worst << ", rounded-input floor " << floor);
  }
}

// train --channels-last on whole models: one training step of ResNet-20 and AlexNet through the
// engine's train_step (engine/mixed_precision.h) with NHWC activations against the same step in
// NCHW, in float64 on cpu-reference and in float32 on every CPU kernel setting; and checkpoints,
// whose weights never see a layout. These need the NHWC forms of conv2d, batchnorm and pooling
// ([channels_last_ops]).
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "../support/backends.h"
#include "../support/model_step.h"
#include "../support/test_util.h"
#include "engine/mixed_precision.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "kernels/conv2d.h"
#include "kernels/convert.h"
#include "layers/forward_observer.h"
#include "models/models.h"

using namespace minidl;
using namespace minidl::test;
namespace fs = std::filesystem;

namespace {

// A fixed seed unless MINIDL_TEST_SEED asks for another (tests/models/cpu_paths_test.cpp says why:
// a pre-activation within float32 rounding of 0 would make the float32 steps' error, which the
// bounds below scale with, unrepresentative).
uint64_t model_seed() { return std::getenv("MINIDL_TEST_SEED") ? test_seed() : 20261205; }

double rel_l2(const Tensor& a, const Tensor& ref) { return compare(a, ref, 0, 0).rel_l2_error; }

struct ModelCase {
  const char* name;
  Shape x;  // awkward: odd and unequal H, W (ResNet-20: 11 -> 6 -> 3, 10 -> 5 -> 3), N = 3
};
const ModelCase kModels[] = {{"resnet20", Shape{3, 3, 11, 10}}, {"alexnet", Shape{2, 3, 32, 32}}};

}  // namespace

// The bounds. A channels-last step computes the same values as the NCHW step with every sum in a
// possibly different order (a convolution's C*R*S products, batchnorm's N*H*W, the pools'
// windows), and nothing else; in particular no extra rounding: the NHWC conversions at the input
// and at Flatten move values without changing them. Summation-order differences are roundoff of
// the arithmetic's own precision, amplified by the network like any other roundoff. The test
// measures that amplification on the same inputs: the float32 NCHW step's relative L2 distance to
// the float64 step, err32 (per parameter gradient; the median over the parameters as a floor, as
// tests/engine/mixed_precision_test.cpp does), is the network's response to float32 roundoff in
// every sum and every stored value (u32 = 2^-24). Every order of a sum has the same worst case,
// (n-1) u sum|t_i|, but not the same typical error: a running sum of n terms errs like u sqrt(n),
// a blocked or pairwise one like u sqrt(log2 n), and an NHWC kernel may well sum the other way
// (oneDNN's NHWC bias gradient runs along the N*H*W pixels of a channel, its NCHW one in blocks:
// 4x the NCHW error measured, seed 2). The largest such sum here has n = N*H*W = 2048 terms
// (AlexNet's input), so the ratio is at most sqrt(n / log2 n) = 13.6 < 16; with 3 for errors that
// add independently:
//   float32 NHWC vs float64:   <= 3 * 16 max(err32, floor)
//   float64 NHWC vs float64:   <= 3 * 16 (u64 / u32) max(err32, floor),  u64 / u32 = 2^-29
// and the loss within 3 * 16 max(|loss32 - loss64|, u32 |loss64|) resp. 2^-29 times that
// (measured: at most 0.07 resp. 0.05 of these over seeds 1-6 and the default). A step that reads
// channels-last memory as NCHW anywhere errs by order 1, 10^4 times the float32 bound.
TEST_CASE("channels-last: a ResNet-20 and AlexNet step equals the NCHW step on every CPU path",
          "[models][channels_last][channels_last_ops]") {
  const uint64_t seed = model_seed();
  INFO("seed " << seed << " (MINIDL_TEST_SEED repeats another)");
  const double u32 = 0x1p-24, u64_over_u32 = 0x1p-29;
  const double k = 3 * 16;  // independent errors x the summation-pattern factor (above)
  Generator g(seed);
  for (const ModelCase& m : kModels) {
    INFO(m.name << ", input " << m.x);
    const Tensor x = uniform_tensor(m.x, g);
    const Tensor labels = label_tensor(m.x[0], 10, g);
    const NamedTensors init = initial_parameters(m.name);  // float32: exact in float64 too
    const PrecisionStep ref = precision_step(m.name, DType::F64, Precision::FP32, init, x, labels);
    const PrecisionStep ref_cl = precision_step(m.name, DType::F64, Precision::FP32, init, x,
                                                labels, Device::cpu(), Layout::NHWC);
    for (const BackendCase& c : backend_cases(conv2d_op())) {
      if (c.dtype != DType::F32) continue;
      INFO("float32 convolutions on " << c.name());
      ScopedDeviceSettings scope(settings_selecting(c.backend));
      const PrecisionStep f32 =
          precision_step(m.name, DType::F32, Precision::FP32, init, x, labels);
      const PrecisionStep f32_cl = precision_step(m.name, DType::F32, Precision::FP32, init, x,
                                                  labels, Device::cpu(), Layout::NHWC);
      std::vector<double> err32;
      for (size_t i = 0; i < ref.grads.size(); ++i)
        err32.push_back(rel_l2(f32.grads[i].second, ref.grads[i].second));
      std::vector<double> sorted = err32;
      std::sort(sorted.begin(), sorted.end());
      const double floor = sorted[sorted.size() / 2];
      const double loss32 = std::max(std::fabs(f32.loss - ref.loss), u32 * std::fabs(ref.loss));
      INFO("loss: NCHW float64 " << ref.loss << ", NHWC float64 " << ref_cl.loss
                                 << ", NCHW float32 " << f32.loss << ", NHWC float32 "
                                 << f32_cl.loss);
      CHECK(std::fabs(f32_cl.loss - ref.loss) <= k * loss32);
      CHECK(std::fabs(ref_cl.loss - ref.loss) <= k * u64_over_u32 * loss32);
      double worst32 = 0, worst64 = 0;
      for (size_t i = 0; i < ref.grads.size(); ++i) {
        const double bound = k * std::max(err32[i], floor);
        const double e32 = rel_l2(f32_cl.grads[i].second, ref.grads[i].second);
        const double e64 = rel_l2(ref_cl.grads[i].second, ref.grads[i].second);
        INFO(ref.grads[i].first << " gradient: NHWC float32 " << e32 << ", NHWC float64 " << e64
                                << " from float64 NCHW; NCHW float32 " << err32[i] << ", bound "
                                << bound << " resp. " << u64_over_u32 * bound);
        CHECK(e32 <= bound);
        CHECK(e64 <= u64_over_u32 * bound);
        worst32 = std::max(worst32, e32 / bound);
        worst64 = std::max(worst64, e64 / (u64_over_u32 * bound));
      }
      WARN(m.name << " on " << c.name() << ": worst gradient error / bound: float32 NHWC "
                  << worst32 << ", float64 NHWC " << worst64);
    }
  }
}

// Parameters have no layout (layers/module.h): a channels-last forward and backward leave the
// weights as they were, and a checkpoint saved from that model holds exactly the bytes one saved
// from an NCHW model with the same weights (PyTorch's names, (K, C, R, S) convolution weights); it
// loads into a model run either way, which then computes the same logits.
TEST_CASE("channels-last: checkpoints hold the same NCHW weights and load into either layout",
          "[models][channels_last][channels_last_ops][checkpoint]") {
  const fs::path dir = fs::temp_directory_path() / str("minidl_cl_ckpt_", ::getpid());
  fs::create_directories(dir);
  Generator g(model_seed());
  const Tensor x = uniform_tensor(Shape{3, 3, 11, 10}, g, -1, 1, DType::F32);
  const Tensor x_cl = to_layout(x, Layout::NHWC);
  ModelConfig mc;
  mc.name = "resnet20";
  mc.seed = kModelInitSeed;
  auto nchw = make_model(mc), nhwc = make_model(mc);
  for (auto* m : {nchw.get(), nhwc.get()}) m->zero_grad();
  nchw->backward(uniform_tensor(nchw->forward(x, Mode::Train).shape(), g, -1, 1, DType::F32));
  const Tensor y_cl = nhwc->forward(x_cl, Mode::Train);
  nhwc->backward(uniform_tensor(y_cl.shape(), g, -1, 1, DType::F32));

  // The weights only: the BN running statistics were updated by either forward (sums in another
  // order) and are compared as values below.
  const std::string a = (dir / "nchw.safetensors").string(),
                    b = (dir / "nhwc.safetensors").string();
  save_checkpoint(a, *nchw, nullptr, TrainState{});
  save_checkpoint(b, *nhwc, nullptr, TrainState{});
  const SafetensorsFile fa = load_safetensors(a), fb = load_safetensors(b);
  REQUIRE(fa.tensors.size() == fb.tensors.size());
  auto params = nchw->named_parameters();
  size_t weights = 0;
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    const auto& [name, ta] = fa.tensors[i];
    const auto& [name_b, tb] = fb.tensors[i];
    INFO(name);
    REQUIRE(name == name_b);
    CHECK(ta.shape() == tb.shape());
    CHECK(tb.layout() == Layout::NCHW);
    const bool is_param = std::any_of(params.begin(), params.end(),
                                      [&](const NamedParameter& p) { return p.name == name; });
    if (is_param) {
      ++weights;
      CHECK(tensor_content_hash(ta) == tensor_content_hash(tb));  // byte for byte
    } else if (ta.dtype() == DType::F32) {
      expect_close("buffer", tb, ta, 1e-6, 1e-5);  // float32 sums in another order
    }
  }
  CHECK(weights == params.size());
  CHECK(fb.find("conv1.weight")->shape() == Shape{16, 3, 3, 3});  // OIHW, as PyTorch's

  // The NHWC run's checkpoint into fresh models, one run each way: the same logits.
  auto c1 = make_model(mc), c2 = make_model(mc);
  load_checkpoint(b, *c1, nullptr);
  load_checkpoint(b, *c2, nullptr);
  const Tensor l1 = c1->forward(x, Mode::Eval);
  const Tensor l2 = c2->forward(x_cl, Mode::Eval);
  // float32 sums in another order through 20 layers: ~1e-6 relative (the float32 error the step
  // test above measures is of that size); 1e-5 leaves margin, a misread layout errs by order 1.
  expect_close("eval logits, NHWC vs NCHW from one checkpoint", l2, l1, 1e-5, 1e-5);
  fs::remove_all(dir);
}

// The step really runs channels-last: every 4-D activation of the model, watched through the
// forward observer (layers/forward_observer.h, as --trace-steps does), is NHWC under
// StepPolicy{p, NHWC}, in float32 and in bf16 (where the input conversion also casts), and NCHW
// without it. (The value comparisons above cannot tell a step that silently stayed NCHW.)
TEST_CASE("channels-last: train_step keeps every 4-D activation NHWC, fp32 and bf16",
          "[models][channels_last][channels_last_ops]") {
  Generator g(model_seed());
  const Tensor x = uniform_tensor(Shape{2, 3, 9, 9}, g, -1, 1, DType::F32);
  const Tensor labels = label_tensor(2, 10, g);
  for (const Precision p : {Precision::FP32, Precision::BF16}) {
    for (const Layout layout : {Layout::NCHW, Layout::NHWC}) {
      INFO(precision_name(p) << ", " << layout_name(layout));
      ModelConfig mc;
      mc.name = "resnet20";
      auto model = make_model(mc);
      int64_t four_d = 0, in_layout = 0, flat = 0;
      set_forward_observer([&](const Module&, const Tensor& y) {
        if (y.dim() != 4) return ++flat, void();
        ++four_d;
        in_layout += y.layout() == layout;
        CHECK(y.dtype() == activation_dtype(p));
      });
      OptimizerConfig oc;
      auto opt = make_optimizer(model->flat_parameters(), oc);
      SoftmaxCrossEntropy xent;
      GradScaler scaler = make_grad_scaler(p);
      try {
        train_step(*model, xent, *opt, scaler, StepPolicy{p, layout}, x, labels, 0.01);
      } catch (...) {
        set_forward_observer({});
        throw;
      }
      set_forward_observer({});
      CHECK(four_d >= 10);  // stem, 3 stages of blocks, the global pool
      CHECK(in_layout == four_d);
      CHECK(flat == 2);  // flatten, fc
    }
  }
}

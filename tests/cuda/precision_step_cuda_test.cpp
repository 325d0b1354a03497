// --precision bf16|fp16 on CUDA: one ResNet-20 training step through the engine's train_step
// (engine/mixed_precision.h, the step `train --device cuda --precision bf16|fp16` runs), on every
// CUDA kernel setting whose convolution computes 16 bits (cuda-handwritten: the WMMA product,
// cuda-cublas: cublasGemmEx; cuda-vendor where cuDNN is there), against the same step on the CPU
// and in float64.
//
// The bound. tests/engine/mixed_precision_test.cpp derives it for the CPU's bf16 step: `pert`, the
// float64 step from the input and weights rounded to 16 bits, measures how much this network
// amplifies one rounding stage, and a 16-bit step (4 kinds of rounding point per layer, adding like
// independent errors) lies within 3 x pert's error of float64, per parameter gradient (with pert's
// median over the parameters as a floor), and its loss within max(3 |pert - f64|, 4 u |f64|). The
// CUDA step rounds at the same points with the same u (only the order of the float32 sums
// differs), so the same bound holds for it against float64; and since the CPU step meets it too,
// the two 16-bit steps are within the sum of the two bounds of each other (triangle inequality):
//   ||g_cuda - g_cpu|| <= ||g_cuda - g_f64|| + ||g_cpu - g_f64|| <= 2 x 3 max(pert, floor)
//   ||g_f64||.
// A wrong kernel (a missed tile, a transposed operand, an unconverted or NaN buffer) errs by order
// 1; each op is also checked alone on awkward shapes (tests/ops/low_precision_test.cpp).
//
// --channels-last: the CUDA step runs with NHWC activations (the CPU and float64 steps stay NCHW).
// It rounds at the same points with the same u, only its float32 sums run in another order (the
// NHWC conversions move values without rounding them), so the same bounds hold unchanged.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>

#include "../support/backends.h"
#include "../support/model_step.h"
#include "../support/test_util.h"
#include "kernels/conv2d.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// ||a - b|| / ||ref||, over every element.
double rel_distance(const Tensor& a, const Tensor& b, const Tensor& ref) {
  const auto x = to_doubles(a), y = to_doubles(b), r = to_doubles(ref);
  REQUIRE(x.size() == r.size());
  REQUIRE(y.size() == r.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += r[i] * r[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace

// One model's 16-bit step on every CUDA kernel setting whose convolution computes 16 bits, against
// the CPU's 16-bit step and float64, with the bound derived at the top of this file.
static void check_cuda_precision_step(const std::string& name, const Shape& xs,
                                      Layout layout = Layout::NCHW) {
  const uint64_t seed = std::getenv("MINIDL_TEST_SEED") ? test_seed() : 20261205;
  INFO(name << ", seed " << seed << " (MINIDL_TEST_SEED repeats another), CUDA activations "
            << layout_name(layout));
  Generator g(seed);
  const Tensor x = normal_tensor(xs, g, 1.0, DType::F32);
  const Tensor labels = label_tensor(xs[0], 10, g);
  const NamedTensors init = initial_parameters(name);
  const PrecisionStep ref = precision_step(name, DType::F64, Precision::FP32, init, x, labels);
  for (const Precision p : {Precision::BF16, Precision::FP16}) {
    const DType t = activation_dtype(p);
    const double u = t == DType::BF16 ? 0x1p-8 : 0x1p-11;
    INFO("--precision " << precision_name(p));
    const PrecisionStep pert =
        precision_step(name, DType::F64, Precision::FP32, rounded_parameters(init, t),
                       cast(cast(x, t), DType::F32), labels);
    const PrecisionStep cpu = precision_step(name, DType::F32, p, init, x, labels);
    const double loss_bound =
        std::max(3 * std::fabs(pert.loss - ref.loss), 4 * u * std::fabs(ref.loss));
    std::vector<double> pert_err;
    for (size_t i = 0; i < ref.grads.size(); ++i)
      pert_err.push_back(
          rel_distance(pert.grads[i].second, ref.grads[i].second, ref.grads[i].second));
    std::vector<double> sorted = pert_err;
    std::sort(sorted.begin(), sorted.end());
    const double floor = sorted[sorted.size() / 2];

    size_t cases = 0;
    for (const BackendCase& c : low_precision_cases(conv2d_op())) {
      if (c.dtype != t) continue;
      ++cases;
      const DeviceSettings settings = settings_selecting(c.backend);
      INFO("on the GPU, kernels " << kernel_path_name(settings.kernels));
      ScopedDeviceSettings scope(settings);
      const PrecisionStep gpu =
          precision_step(name, DType::F32, p, init, x, labels, c.device, layout);
      INFO("loss " << gpu.loss << ", CPU " << cpu.loss << ", float64 " << ref.loss
                   << " (rounded input and weights: " << pert.loss << ")");
      CHECK(std::fabs(gpu.loss - ref.loss) <= loss_bound);
      CHECK(std::fabs(gpu.loss - cpu.loss) <= 2 * loss_bound);
      for (size_t i = 0; i < ref.grads.size(); ++i) {
        const double bound = 3 * std::max(pert_err[i], floor);
        const double to_ref =
            rel_distance(gpu.grads[i].second, ref.grads[i].second, ref.grads[i].second);
        const double to_cpu =
            rel_distance(gpu.grads[i].second, cpu.grads[i].second, ref.grads[i].second);
        INFO(ref.grads[i].first << " gradient: relative L2 distance to float64 " << to_ref
                                << ", to the CPU step " << to_cpu << "; rounded-input error "
                                << pert_err[i] << ", bound " << bound);
        CHECK(to_ref <= bound);
        CHECK(to_cpu <= 2 * bound);
      }
    }
    CHECK(cases >= 2);  // cuda-handwritten and cuda-cublas at least
  }
}

TEST_CASE("cuda --precision bf16/fp16: a ResNet-20 step matches the CPU's 16-bit step",
          "[cuda][model][half]") {
  check_cuda_precision_step("resnet20", Shape{4, 3, 8, 8});  // 8x8: ~4x less emulation
}

// train --device cuda --precision bf16|fp16 --channels-last: the same steps with NHWC activations
// on the GPU (about 3 s on cudasim for both).
TEST_CASE("cuda --precision bf16/fp16 --channels-last: a ResNet-20 step matches the CPU's step",
          "[cuda][model][half][channels_last][channels_last_ops]") {
  check_cuda_precision_step("resnet20", Shape{4, 3, 8, 8}, Layout::NHWC);
}

// Issue 20's ResNet-18 and AlexNet steps, at the shapes tests/engine/mixed_precision_test.cpp
// checks on the CPU. The emulator needs minutes for them (its WMMA costs ~0.2 CPU seconds per 10^7
// multiply-adds, and ResNet-18's step at 16x16 is ~2e9 per precision and backend), so they run
// on a GPU (scripts/gpu-check.sh's tests step) and skip visibly on cudasim, where the ResNet-20
// case above checks the same code. Both passed once on cudasim with the skip removed (2026-12-05,
// about 70 s each). Each runs in NCHW and with --channels-last (NHWC activations on the GPU).
TEST_CASE("cuda --precision bf16/fp16: ResNet-18 and AlexNet steps match the CPU's 16-bit step",
          "[cuda][model][half][gpu_only]") {
#if MINIDL_CUDA_SIM
  WARN("skipped on cudasim (minutes of emulated WMMA): runs on a GPU, in scripts/gpu-check.sh");
  return;
#endif
  for (const Layout layout : {Layout::NCHW, Layout::NHWC}) {
    check_cuda_precision_step("resnet18", Shape{4, 3, 16, 16}, layout);
    check_cuda_precision_step("alexnet", Shape{4, 3, 32, 32}, layout);
  }
}

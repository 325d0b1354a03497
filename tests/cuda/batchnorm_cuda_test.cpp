// CUDA batch normalisation on every KernelPath against the CPU reference, which runs in float64 on
// the same float32 inputs. Shapes: ResNet's (4,64,32,32), (3,256,8,8), (1,512,4,4) (float4 path,
// one slice per channel), (32,16,32,32) (several slices per channel), and awkward (3,5,7,9) and
// (13,16,31,31) (odd HW: scalar path; slices that end inside a plane and a shorter last slice).
//
// Tolerances: the GPU computes in float32, the reference in float64 from the same inputs, so the
// differences are float32 rounding: a few ulps per element for y and dx (|y| <= ~8 here, 1 ulp =
// 6e-8 relative), ~1e-6 relative for the statistics (float per-thread partial sums, merged in
// double by our kernels; cuDNN's own order otherwise). atol = rtol = 1e-5 leaves a margin of ~10x
// over that and still catches any formula error (those are O(1e-2) and larger). Per-channel sums
// over M elements (dgamma, dbeta) have size ~sqrt(M) and rounding that grows alike, hence
// atol = 1e-5 sqrt(M) there. Every comparison also requires a relative L2 error below 1e-5.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/batchnorm.h"
#include "layers/batchnorm.h"
#include "../support/cuda_paths.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

const Device kGpu = Device::cuda(0);
const Shape kShapes[] = {Shape{4, 64, 32, 32}, Shape{3, 256, 8, 8},   Shape{1, 512, 4, 4},
                         Shape{32, 16, 32, 32}, Shape{3, 5, 7, 9},     Shape{13, 16, 31, 31}};

// float32 CPU tensor of N(mean, std^2) values.
Tensor normal_f32(const Shape& s, Generator& g, double mean, double std) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& e : v) e = static_cast<float>(mean + std * g.normal());
  return Tensor::from_vector(v, s);
}

Tensor poisoned_gpu(const Shape& s) {
  Tensor t = Tensor::empty(s, DType::F32, kGpu);
  poison(t);
  return t;
}

void expect_close(const char* what, const Tensor& out, const Tensor& ref, double atol, double rtol) {
  const Comparison c = compare(out, ref, atol, rtol);
  INFO(what << ": " << c.report);
  CHECK(c.ok);
  CHECK(c.rel_l2_error < 1e-5);
}

// Per-channel inputs shared by the tests: gamma, beta, running stats (non-trivial values).
struct Channels {
  Tensor gamma, beta, running_mean, running_var;
  explicit Channels(int64_t C, Generator& g)
      : gamma(uniform_tensor(Shape{C}, g, 0.5, 1.5, DType::F32)),
        beta(uniform_tensor(Shape{C}, g, -1.0, 1.0, DType::F32)),
        running_mean(uniform_tensor(Shape{C}, g, -0.5, 0.5, DType::F32)),
        running_var(uniform_tensor(Shape{C}, g, 0.5, 2.0, DType::F32)) {}
};

}  // namespace

TEST_CASE("batchnorm CUDA train mode matches the float64 CPU reference", "[cuda][batchnorm][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const BatchNormParams p{};
  for (const Shape& s : kShapes) {
    for (KernelPath path : cuda_paths()) {
      INFO("shape " << s << ", path " << kernel_path_name(path));
      const int64_t C = s[1];
      const double M = static_cast<double>(s.numel() / C);
      const Shape cs{C};
      // A mean offset and a spread != 1, so that a kernel that skipped the centring or the
      // scaling could not match.
      const Tensor x = normal_f32(s, g, 0.5, 2.0), dy = normal_f32(s, g, 0.0, 1.0);
      const Channels ch(C, g);
      // Gradients start non-zero: backward must add to them.
      const Tensor dgamma0 = uniform_tensor(cs, g, -1, 1, DType::F32);
      const Tensor dbeta0 = uniform_tensor(cs, g, -1, 1, DType::F32);

      // float64 reference
      Tensor ry = Tensor::empty(s, DType::F64), rmean = Tensor::empty(cs, DType::F64),
             rinvstd = Tensor::empty(cs, DType::F64);
      Tensor rrm = cast(ch.running_mean, DType::F64), rrv = cast(ch.running_var, DType::F64);
      const Tensor x64 = cast(x, DType::F64), gamma64 = cast(ch.gamma, DType::F64);
      batchnorm_forward_train(ry, rmean, rinvstd, rrm, rrv, x64, gamma64,
                              cast(ch.beta, DType::F64), p);
      Tensor rdx = Tensor::empty(s, DType::F64), rdg = cast(dgamma0, DType::F64),
             rdb = cast(dbeta0, DType::F64);
      batchnorm_backward_train(rdx, rdg, rdb, cast(dy, DType::F64), x64, gamma64, rmean, rinvstd);

      // GPU
      const Tensor gx = x.to(kGpu), ggamma = ch.gamma.to(kGpu);
      Tensor gy = poisoned_gpu(s), gmean = poisoned_gpu(cs), ginvstd = poisoned_gpu(cs);
      Tensor grm = ch.running_mean.to(kGpu), grv = ch.running_var.to(kGpu);
      batchnorm_forward_train(gy, gmean, ginvstd, grm, grv, gx, ggamma, ch.beta.to(kGpu), p, path);
      Tensor gdx = poisoned_gpu(s), gdg = dgamma0.to(kGpu), gdb = dbeta0.to(kGpu);
      batchnorm_backward_train(gdx, gdg, gdb, dy.to(kGpu), gx, ggamma, gmean, ginvstd, path);

      expect_close("y", gy, ry, 1e-5, 1e-5);
      expect_close("save_mean", gmean, rmean, 1e-6, 1e-5);
      expect_close("save_invstd", ginvstd, rinvstd, 1e-7, 1e-5);
      expect_close("running_mean", grm, rrm, 1e-6, 1e-5);
      expect_close("running_var (unbiased)", grv, rrv, 1e-7, 1e-5);
      expect_close("dx", gdx, rdx, 1e-5, 1e-5);
      expect_close("dgamma", gdg, rdg, 1e-5 * std::sqrt(M), 1e-5);
      expect_close("dbeta", gdb, rdb, 1e-5 * std::sqrt(M), 1e-5);
    }
  }
}

TEST_CASE("batchnorm CUDA eval mode matches the float64 CPU reference", "[cuda][batchnorm][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const BatchNormParams p{};
  for (const Shape& s : kShapes) {
    for (KernelPath path : cuda_paths()) {
      INFO("shape " << s << ", path " << kernel_path_name(path));
      const int64_t C = s[1];
      const double M = static_cast<double>(s.numel() / C);
      const Shape cs{C};
      const Tensor x = normal_f32(s, g, 0.5, 2.0), dy = normal_f32(s, g, 0.0, 1.0);
      const Channels ch(C, g);
      const Tensor dgamma0 = uniform_tensor(cs, g, -1, 1, DType::F32);
      const Tensor dbeta0 = uniform_tensor(cs, g, -1, 1, DType::F32);

      const Tensor x64 = cast(x, DType::F64), gamma64 = cast(ch.gamma, DType::F64);
      const Tensor rm64 = cast(ch.running_mean, DType::F64), rv64 = cast(ch.running_var, DType::F64);
      Tensor ry = Tensor::empty(s, DType::F64);
      batchnorm_forward_eval(ry, x64, gamma64, cast(ch.beta, DType::F64), rm64, rv64, p);
      Tensor rdx = Tensor::empty(s, DType::F64), rdg = cast(dgamma0, DType::F64),
             rdb = cast(dbeta0, DType::F64);
      batchnorm_backward_eval(rdx, rdg, rdb, cast(dy, DType::F64), x64, gamma64, rm64, rv64, p);

      const Tensor gx = x.to(kGpu), ggamma = ch.gamma.to(kGpu);
      const Tensor grm = ch.running_mean.to(kGpu), grv = ch.running_var.to(kGpu);
      Tensor gy = poisoned_gpu(s);
      batchnorm_forward_eval(gy, gx, ggamma, ch.beta.to(kGpu), grm, grv, p, path);
      Tensor gdx = poisoned_gpu(s), gdg = dgamma0.to(kGpu), gdb = dbeta0.to(kGpu);
      batchnorm_backward_eval(gdx, gdg, gdb, dy.to(kGpu), gx, ggamma, grm, grv, p, path);

      expect_close("y", gy, ry, 1e-5, 1e-5);
      expect_close("dx", gdx, rdx, 1e-5, 1e-5);
      expect_close("dgamma", gdg, rdg, 1e-5 * std::sqrt(M), 1e-5);
      expect_close("dbeta", gdb, rdb, 1e-5 * std::sqrt(M), 1e-5);
      // Eval must leave the running statistics alone.
      CHECK(grm.to_vector<float>() == ch.running_mean.to_vector<float>());
      CHECK(grv.to_vector<float>() == ch.running_var.to_vector<float>());
    }
  }
}

TEST_CASE("BatchNorm2d on CUDA: running statistics and num_batches_tracked on the device",
          "[cuda][batchnorm]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Shape s{3, 5, 7, 9};
  for (KernelPath path : cuda_paths()) {
    INFO("path " << kernel_path_name(path));
    BatchNorm2d cpu(BatchNorm2dConfig{5, 0.1, 1e-5, DType::F64});
    BatchNorm2d gpu(BatchNorm2dConfig{5});
    gpu.to(kGpu);
    gpu.set_kernel_path(path);
    for (int step = 0; step < 2; ++step) {
      const Tensor x = normal_f32(s, g, 1.0, 3.0);
      cpu.forward(cast(x, DType::F64), Mode::Train);
      gpu.forward(x.to(kGpu), Mode::Train);
    }
    // Two momentum steps from (0, 1): float32 rounding only, as in the op tests.
    expect_close("running_mean", gpu.running_mean(), cpu.running_mean(), 1e-6, 1e-5);
    expect_close("running_var", gpu.running_var(), cpu.running_var(), 1e-7, 1e-5);
    for (auto& nb : gpu.named_buffers())
      if (nb.name == "num_batches_tracked") {
        CHECK(nb.tensor->device() == kGpu);
        CHECK(nb.tensor->item<int32_t>() == 2);
      }
    // An eval forward leaves the counter alone.
    gpu.forward(normal_f32(s, g, 0, 1).to(kGpu), Mode::Eval);
    for (auto& nb : gpu.named_buffers())
      if (nb.name == "num_batches_tracked") CHECK(nb.tensor->item<int32_t>() == 2);
  }
}

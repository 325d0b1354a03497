// CUDA softmax cross-entropy, argmax and the SoftmaxCrossEntropy loss against the CPU reference
// run in float64 on the same float32 inputs. These ops have a single CUDA implementation (no
// cuDNN/cuBLAS variant; kernels/kernel_path.h: "our kernels for what cuDNN lacks (loss ...)"), so
// there is no KernelPath to loop over: every path runs the code tested here.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/softmax_xent.h"
#include "layers/loss.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

const Device kGpu = Device::cuda(0);

struct XentOut {
  Tensor loss, probs, correct;
};

// Forward into poisoned outputs on the logits' device.
XentOut xent(const Tensor& logits, const Tensor& labels, double eps) {
  const Device d = logits.device();
  XentOut o{Tensor::empty(Shape{1}, logits.dtype(), d), Tensor::empty(logits.shape(), logits.dtype(), d),
            Tensor::empty(Shape{1}, DType::I32, d)};
  poison(o.loss);
  poison(o.probs);
  poison(o.correct);
  softmax_xent_forward(o.loss, o.probs, o.correct, logits, labels, eps);
  return o;
}

Tensor dlogits(const Tensor& probs, const Tensor& labels, double eps, double scale) {
  Tensor dz = Tensor::empty(probs.shape(), probs.dtype(), probs.device());
  poison(dz);
  softmax_xent_backward(dz, probs, labels, eps, scale);
  return dz;
}

}  // namespace

TEST_CASE("cuda softmax_xent matches the float64 CPU reference", "[cuda][softmax_xent][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  struct Case {
    int64_t N, K;
  };
  // K = 1 (loss 0), K < 32 (idle lanes), K = 32, K > 32 (lanes loop), K = 1000 (ImageNet);
  // N = 1, N not a multiple of the 8 rows per block, N > 256 (the reduction's threads loop).
  for (Case c : {Case{1, 1}, Case{1, 10}, Case{3, 7}, Case{37, 10}, Case{8, 32}, Case{5, 33},
                 Case{9, 1000}, Case{1025, 100}}) {
    for (double eps : {0.0, 0.1}) {
      INFO("N " << c.N << " K " << c.K << " eps " << eps);
      const Tensor logits = normal_tensor(Shape{c.N, c.K}, g, 3.0, DType::F32);
      const Tensor labels = label_tensor(c.N, c.K, g);
      const XentOut ref = xent(cast(logits, DType::F64), labels, eps);
      const Tensor logits_gpu = logits.to(kGpu), labels_gpu = labels.to(kGpu);
      const XentOut out = xent(logits_gpu, labels_gpu, eps);

      // log p = z - max - lse is rounded in float32 at the magnitude of |z - max| (up to ~25 for
      // these logits): ~2e-6 absolute in log p, i.e. relative in p and in each row's loss term;
      // the mean over rows does not grow it. 1e-5 relative leaves a 5x margin; atol covers the
      // tiny probabilities (below 1e-7 of the row's largest) where expf's own rounding dominates.
      Comparison cl = compare(out.loss, ref.loss, 1e-6, 1e-5);
      INFO("loss: " << cl.report);
      CHECK(cl.ok);
      Comparison cp = compare(out.probs, ref.probs, 1e-7, 1e-5);
      INFO("probs: " << cp.report);
      CHECK(cp.ok);
      // Argmax of the same float values, compared exactly (float -> double is exact).
      CHECK(out.correct.item<int32_t>() == ref.correct.item<int32_t>());

      // Backward from each side's own probs: dz = scale (p - q) / N carries p's error, at most
      // 1e-5 absolute (p <= 1), times scale / N; where p ~ q that is large relative to dz itself,
      // hence the atol.
      const double scale = 1.5;
      Comparison cd = compare(dlogits(out.probs, labels_gpu, eps, scale),
                              dlogits(ref.probs, labels, eps, scale), 1e-5 * scale / c.N, 1e-5);
      INFO("dlogits: " << cd.report);
      CHECK(cd.ok);

      // The batch sum has a fixed order (no float atomics): the loss is reproducible bit for bit.
      CHECK(xent(logits_gpu, labels_gpu, eps).loss.item<float>() == out.loss.item<float>());
    }
  }
}

TEST_CASE("cuda softmax_xent: extreme logits stay finite", "[cuda][softmax_xent]") {
  // As the CPU test: mean loss (2e4 + log(1 + 2/e)) / 2 = 10000.2757223570.
  const Tensor logits = Tensor::from_vector<float>({1e4f, -1e4f, 0, -1e4f, -1e4f, -9999}, Shape{2, 3}, kGpu);
  const Tensor labels = Tensor::from_vector<int32_t>({1, 2}, Shape{2}, kGpu);
  const XentOut out = xent(logits, labels, 0.0);
  // float32 holds 2e4 exactly; the other term is rounded to ~1e-7 relative.
  CHECK(out.loss.item<float>() == Approx(10000.275722356966).epsilon(1e-6));
  for (double p : to_doubles(out.probs)) CHECK(std::isfinite(p));
  for (double d : to_doubles(dlogits(out.probs, labels, 0.0, 1.0))) CHECK(std::isfinite(d));
  CHECK(out.correct.item<int32_t>() == 1);
}

TEST_CASE("cuda softmax_xent: a bad label gives a NaN loss, not a wrong one", "[cuda][softmax_xent]") {
  Generator g(test_seed());
  const Tensor logits = normal_tensor(Shape{4, 5}, g, 1.0, DType::F32).to(kGpu);
  const Tensor labels = Tensor::from_vector<int32_t>({0, 5, 2, -1}, Shape{4}, kGpu);
  const XentOut out = xent(logits, labels, 0.0);
  CHECK(std::isnan(out.loss.item<float>()));
  const auto dz = to_doubles(dlogits(out.probs, labels, 0.0, 1.0));
  // Rows 1 and 3 carry the bad labels: NaN gradients; rows 0 and 2 are ordinary.
  for (int j = 0; j < 5; ++j) {
    CHECK(std::isfinite(dz[0 * 5 + j]));
    CHECK(std::isnan(dz[1 * 5 + j]));
    CHECK(std::isfinite(dz[2 * 5 + j]));
    CHECK(std::isnan(dz[3 * 5 + j]));
  }
}

TEST_CASE("cuda argmax_rows: first index on ties, as the CPU", "[cuda][softmax_xent]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (int64_t K : {1, 5, 32, 70, 1000}) {
    INFO("K " << K);
    // Values from {0, 1, 2, 3}: most rows have tied maxima, spread over different lanes.
    const int64_t N = 45;
    std::vector<float> v(static_cast<size_t>(N * K));
    for (float& x : v) x = static_cast<float>(g.below(4));
    const Tensor logits = Tensor::from_vector(v, Shape{N, K});
    Tensor ref = Tensor::empty(Shape{N}, DType::I32), out = Tensor::empty(Shape{N}, DType::I32, kGpu);
    argmax_rows(ref, cast(logits, DType::F64));
    poison(out);
    argmax_rows(out, logits.to(kGpu));
    CHECK(out.to_vector<int32_t>() == ref.to_vector<int32_t>());
  }
}

TEST_CASE("cuda SoftmaxCrossEntropy keeps its results on the device", "[cuda][loss]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor logits = normal_tensor(Shape{6, 10}, g, 2.0, DType::F32);
  const Tensor labels = label_tensor(6, 10, g);
  SoftmaxCrossEntropy cpu_ce(0.1), gpu_ce(0.1);
  const Tensor ref = cpu_ce.forward(cast(logits, DType::F64), labels);
  const Tensor loss = gpu_ce.forward(logits.to(kGpu), labels.to(kGpu));
  CHECK(loss.device() == kGpu);
  CHECK(gpu_ce.correct().device() == kGpu);
  // Tolerances as in the kernel test above.
  Comparison cl = compare(loss, ref, 1e-6, 1e-5);
  INFO(cl.report);
  CHECK(cl.ok);
  CHECK(gpu_ce.correct().item<int32_t>() == cpu_ce.correct().item<int32_t>());
  const Tensor grad = gpu_ce.backward();
  CHECK(grad.device() == kGpu);
  Comparison cg = compare(grad, cpu_ce.backward(), 1e-5 / 6, 1e-5);
  INFO(cg.report);
  CHECK(cg.ok);
}

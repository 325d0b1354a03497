// Softmax cross-entropy, argmax_rows and the SoftmaxCrossEntropy loss on every backend of the op
// (cpu-reference in the CPU suite, cuda-handwritten in the CUDA suite) against the float64
// cpu-reference on the same float32 inputs. The float64 cpu-reference is checked by hand and
// against finite differences in tests/kernels/softmax_xent_test.cpp.
#include "kernels/softmax_xent.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "layers/loss.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct XentOut {
  Tensor loss, probs, correct;
};

// Forward on backend b into poisoned outputs on the logits' device.
XentOut xent(Backend b, const Tensor& logits, const Tensor& labels, double eps) {
  const Device d = logits.device();
  XentOut o{Tensor::empty(Shape{1}, logits.dtype(), d),
            Tensor::empty(logits.shape(), logits.dtype(), d),
            Tensor::empty(Shape{1}, DType::I32, d)};
  poison(o.loss);
  poison(o.probs);
  poison(o.correct);
  softmax_xent_forward(b, o.loss, o.probs, o.correct, logits, labels, eps);
  return o;
}

Tensor dlogits(Backend b, const Tensor& probs, const Tensor& labels, double eps, double scale) {
  Tensor dz = Tensor::empty(probs.shape(), probs.dtype(), probs.device());
  poison(dz);
  softmax_xent_backward(b, dz, probs, labels, eps, scale);
  return dz;
}

const Backend kRef = Backend::CpuReference;

}  // namespace

TEST_CASE("softmax_xent: every backend matches the float64 reference",
          "[ops][softmax_xent][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  struct Case {
    int64_t N, K;
  };
  // K = 1 (loss 0), K < 32 (idle lanes), K = 32, K > 32 (lanes loop), K = 1000 (ImageNet);
  // N = 1, N not a multiple of the 8 rows per block, N > 256 (the reduction's threads loop).
  for (const BackendCase& c : backend_cases(softmax_xent_op())) {
    for (Case k : {Case{1, 1}, Case{1, 10}, Case{3, 7}, Case{37, 10}, Case{8, 32}, Case{5, 33},
                   Case{9, 1000}, Case{1025, 100}}) {
      for (double eps : {0.0, 0.1}) {
        INFO("N " << k.N << " K " << k.K << " eps " << eps << ", " << c.name());
        const Tensor logits = normal_tensor(Shape{k.N, k.K}, g, 3.0, DType::F32);
        const Tensor labels = label_tensor(k.N, k.K, g);
        const XentOut ref = xent(kRef, cast(logits, DType::F64), labels, eps);
        const Tensor logits_c = to_case(c, logits), labels_c = labels.to(c.device);
        const XentOut out = xent(c.backend, logits_c, labels_c, eps);

        // log p = z - max - lse is rounded in float32 at the magnitude of |z - max| (up to ~25 for
        // these logits): ~2e-6 absolute in log p, i.e. relative in p and in each row's loss term;
        // the mean over rows does not grow it. 1e-5 relative leaves a 5x margin; atol covers the
        // tiny probabilities (below 1e-7 of the row's largest) where expf's own rounding
        // dominates. (Float32 bounds: every case computes in float32.)
        Comparison cl = compare(out.loss, ref.loss, 1e-6, 1e-5);
        INFO("loss: " << cl.report);
        CHECK(cl.ok);
        Comparison cp = compare(out.probs, ref.probs, 1e-7, 1e-5);
        INFO("probs: " << cp.report);
        CHECK(cp.ok);
        // Argmax of the same float values, compared exactly (float -> double is exact).
        CHECK(out.correct.item<int32_t>() == ref.correct.item<int32_t>());

        // Backward from each side's own probs: dz = scale (p - q) / N carries p's error, at most
        // 1e-5 absolute (p <= 1), times scale / N; where p ~ q that is large relative to dz
        // itself, hence the atol.
        const double scale = 1.5;
        Comparison cd =
            compare(dlogits(c.backend, out.probs, labels_c, eps, scale),
                    dlogits(kRef, ref.probs, labels, eps, scale), 1e-5 * scale / k.N, 1e-5);
        INFO("dlogits: " << cd.report);
        CHECK(cd.ok);

        // The batch sum has a fixed order (no float atomics): the loss is reproducible bit for bit.
        CHECK(to_doubles(xent(c.backend, logits_c, labels_c, eps).loss) == to_doubles(out.loss));
      }
    }
  }
}

TEST_CASE("softmax_xent: extreme logits stay finite on every backend", "[ops][softmax_xent]") {
  for (const BackendCase& c : backend_cases(softmax_xent_op())) {
    INFO(c.name());
    // Mean loss (2e4 + log(1 + 2/e)) / 2 = 10000.2757223570, as in the CPU test.
    const Tensor logits =
        to_case(c, Tensor::from_vector<float>({1e4f, -1e4f, 0, -1e4f, -1e4f, -9999}, Shape{2, 3}));
    const Tensor labels = Tensor::from_vector<int32_t>({1, 2}, Shape{2}).to(c.device);
    const XentOut out = xent(c.backend, logits, labels, 0.0);
    // float32 holds 2e4 exactly; the other term is rounded to ~1e-7 relative.
    CHECK(to_doubles(out.loss)[0] == Approx(10000.275722356966).epsilon(1e-6));
    for (double p : to_doubles(out.probs)) CHECK(std::isfinite(p));
    for (double d : to_doubles(dlogits(c.backend, out.probs, labels, 0.0, 1.0)))
      CHECK(std::isfinite(d));
    CHECK(out.correct.item<int32_t>() == 1);
  }
}

TEST_CASE(
    "softmax_xent: a bad label is an error on the CPU and a NaN loss on a GPU, never a "
    "wrong loss",
    "[ops][softmax_xent]") {
  Generator g(test_seed());
  const Tensor logits32 = normal_tensor(Shape{4, 5}, g, 1.0, DType::F32);
  const Tensor bad = Tensor::from_vector<int32_t>({0, 5, 2, -1}, Shape{4});
  for (const BackendCase& c : backend_cases(softmax_xent_op())) {
    INFO(c.name());
    const Tensor logits = to_case(c, logits32), labels = bad.to(c.device);
    if (c.device.is_cpu()) {
      // The labels are on the host: checked before anything is computed.
      CHECK_THROWS_WITH(xent(c.backend, logits, labels, 0.0),
                        Catch::Contains("softmax_xent_forward: label 5 at index 1"));
      continue;
    }
    // On a GPU checking would cost a synchronisation: the kernel turns the row into NaN.
    const XentOut out = xent(c.backend, logits, labels, 0.0);
    CHECK(std::isnan(to_doubles(out.loss)[0]));
    const auto dz = to_doubles(dlogits(c.backend, out.probs, labels, 0.0, 1.0));
    // Rows 1 and 3 carry the bad labels: NaN gradients; rows 0 and 2 are ordinary.
    for (int j = 0; j < 5; ++j) {
      CHECK(std::isfinite(dz[0 * 5 + j]));
      CHECK(std::isnan(dz[1 * 5 + j]));
      CHECK(std::isfinite(dz[2 * 5 + j]));
      CHECK(std::isnan(dz[3 * 5 + j]));
    }
  }
}

TEST_CASE("argmax_rows: every backend takes the first index on ties, as the reference",
          "[ops][softmax_xent]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (int64_t K : {1, 5, 32, 70, 1000}) {
    // Values from {0, 1, 2, 3}: most rows have tied maxima, spread over different lanes.
    const int64_t N = 45;
    std::vector<float> v(static_cast<size_t>(N * K));
    for (float& x : v) x = static_cast<float>(g.below(4));
    const Tensor logits = Tensor::from_vector(v, Shape{N, K});
    Tensor ref = Tensor::empty(Shape{N}, DType::I32);
    argmax_rows(kRef, ref, cast(logits, DType::F64));
    for (const BackendCase& c : backend_cases(softmax_xent_op())) {
      INFO("K " << K << ", " << c.name());
      Tensor out = poisoned(c, Shape{N}, DType::I32);
      argmax_rows(c.backend, out, to_case(c, logits));
      CHECK(out.to_vector<int32_t>() == ref.to_vector<int32_t>());
    }
  }
}

TEST_CASE("argmax_rows and softmax_xent find the maximum in every lane position",
          "[ops][softmax_xent][sanitize]") {
  // Row r of K holds its maximum at position r % K (every lane of a warp, and for K > 32 every
  // pass of the lanes' loop), and rows K..2K-1 repeat it at a later random position as well (the
  // first must win). A reduction that skips part of the warp (a shuffle starting at offset 8, a
  // lane mask of 16) loses the maximum whenever it sits in the skipped lanes. softmax_xent with
  // the labels at the maxima must count every row correct and shift by the true maximum.
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (int64_t K : {7, 32, 33, 70}) {
    const int64_t N = 2 * K;
    std::vector<float> v(static_cast<size_t>(N * K));
    std::vector<int32_t> at(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) {
      float* row = v.data() + i * K;
      for (int64_t j = 0; j < K; ++j) row[j] = static_cast<float>(g.uniform(-4, 4));
      const int64_t r = i % K;
      row[r] = 5.f;
      if (i >= K && r + 1 < K) row[r + 1 + static_cast<int64_t>(g.below(K - r - 1))] = 5.f;
      at[i] = static_cast<int32_t>(r);
    }
    const Tensor logits = Tensor::from_vector(v, Shape{N, K});
    const Tensor labels = Tensor::from_vector(at, Shape{N});
    const XentOut ref = xent(kRef, cast(logits, DType::F64), labels, 0.0);
    REQUIRE(ref.correct.item<int32_t>() == N);
    for (const BackendCase& c : backend_cases(softmax_xent_op())) {
      INFO("K " << K << ", " << c.name());
      Tensor out = poisoned(c, Shape{N}, DType::I32);
      argmax_rows(c.backend, out, to_case(c, logits));
      CHECK(out.to_vector<int32_t>() == at);
      const XentOut o = xent(c.backend, to_case(c, logits), labels.to(c.device), 0.0);
      CHECK(o.correct.item<int32_t>() == N);
      // Bounds of the softmax_xent test above.
      expect_close("loss", o.loss, ref.loss, 1e-6, 1e-5);
      expect_close("probs", o.probs, ref.probs, 1e-7, 1e-5);
    }
  }
}

TEST_CASE("argmax_rows with NaN logits on every backend as the reference", "[ops][softmax_xent]") {
  // The reference's rule (z[j] > z[best], starting from best = 0): a NaN at index 0 wins, any
  // other NaN is never chosen. Each row of K = 70 (lanes scan three elements) has NaNs at random
  // places, often at the first element a lane scans, ahead of that lane's maximum; every 8th row
  // starts with a NaN.
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const int64_t N = 64, K = 70;
  std::vector<float> v(static_cast<size_t>(N * K));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < K; ++j)
      v[i * K + j] = (j == 0 ? i % 8 == 0 : g.uniform() < 0.2)
                         ? std::numeric_limits<float>::quiet_NaN()
                         : static_cast<float>(g.uniform(-4, 4));
  const Tensor logits = Tensor::from_vector(v, Shape{N, K});
  Tensor ref = Tensor::empty(Shape{N}, DType::I32);
  argmax_rows(kRef, ref, cast(logits, DType::F64));
  for (const BackendCase& c : backend_cases(softmax_xent_op())) {
    INFO(c.name());
    Tensor out = poisoned(c, Shape{N}, DType::I32);
    argmax_rows(c.backend, out, to_case(c, logits));
    CHECK(out.to_vector<int32_t>() == ref.to_vector<int32_t>());
  }
}

TEST_CASE("SoftmaxCrossEntropy on every backend keeps its results on the device",
          "[ops][softmax_xent][layers]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (const BackendCase& c : backend_cases(softmax_xent_op())) {
    INFO(c.name());
    // The loss selects its backend from the device's settings, as in a training run.
    ScopedDeviceSettings settings(settings_selecting(c.backend));
    const Tensor logits = normal_tensor(Shape{6, 10}, g, 2.0, DType::F32);
    const Tensor labels = label_tensor(6, 10, g);
    SoftmaxCrossEntropy ref_ce(0.1), ce(0.1);
    const Tensor ref = ref_ce.forward(cast(logits, DType::F64), labels);
    const Tensor loss = ce.forward(to_case(c, logits), labels.to(c.device));
    CHECK(loss.device() == c.device);
    CHECK(ce.correct().device() == c.device);
    // Tolerances as in the op test above.
    Comparison cl = compare(loss, ref, 1e-6, 1e-5);
    INFO(cl.report);
    CHECK(cl.ok);
    CHECK(ce.correct().item<int32_t>() == ref_ce.correct().item<int32_t>());
    const Tensor grad = ce.backward();
    CHECK(grad.device() == c.device);
    Comparison cg = compare(grad, ref_ce.backward(), 1e-5 / 6, 1e-5);
    INFO(cg.report);
    CHECK(cg.ok);
  }
}

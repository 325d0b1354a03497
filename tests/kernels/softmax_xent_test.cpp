#include <catch2/catch.hpp>
#include <limits>

#include <algorithm>
#include <cmath>

#include "kernels/softmax_xent.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct XentOut {
  Tensor loss, probs, correct;
};

// Forward on the CPU into freshly poisoned outputs, so that an output the op forgets stays NaN.
XentOut xent(const Tensor& logits, const Tensor& labels, double eps = 0.0) {
  XentOut o{Tensor::empty(Shape{1}, logits.dtype()), Tensor::empty(logits.shape(), logits.dtype()),
            Tensor::empty(Shape{1}, DType::I32)};
  poison(o.loss);
  poison(o.probs);
  poison(o.correct);
  softmax_xent_forward(o.loss, o.probs, o.correct, logits, labels, eps);
  return o;
}

double loss_of(const Tensor& logits, const Tensor& labels, double eps) {
  return to_doubles(xent(logits, labels, eps).loss)[0];
}

Tensor labels_of(std::vector<int32_t> v) {
  const auto n = static_cast<int64_t>(v.size());
  return Tensor::from_vector(v, Shape{n});
}

}  // namespace

TEST_CASE("softmax_xent forward by hand", "[softmax_xent]") {
  // Row 0, z = (1, 2, 3), label 2: log-sum-exp = 3 + log(1 + e^-1 + e^-2) = 3.4076059644,
  //   loss_0 = lse - z_2 = 0.4076059644; p = (e^-2, e^-1, 1) / 1.5032147244
  //   = (0.0900305732, 0.2447284711, 0.6652409558).
  // Row 1, z = (1, 1, 1), label 0: p = 1/3 each, loss_1 = log 3 = 1.0986122887.
  // Mean over the batch: (0.4076059644 + 1.0986122887) / 2 = 0.7531091266.
  // Correct: row 0 argmax 2 == 2; row 1 is a three-way tie, the first index 0 wins and equals the
  // label, so the count is 2 (a last-max rule would give 1).
  const std::vector<double> z = {1, 2, 3, 1, 1, 1};
  const Tensor labels = labels_of({2, 0});
  for (DType dt : {DType::F64, DType::F32}) {
    INFO(dtype_name(dt));
    const Tensor logits = cast(Tensor::from_vector(z, Shape{2, 3}), dt);
    const XentOut o = xent(logits, labels);
    // float32: each value comes from a handful of exp/log/add steps, a few ulp of 6e-8 each.
    const double tol = dt == DType::F64 ? 1e-12 : 1e-6;
    CHECK(to_doubles(o.loss)[0] == Approx(0.753109126556245).epsilon(tol));
    const Tensor p_ref = Tensor::from_vector<double>(
        {0.09003057317038048, 0.2447284710547977, 0.665240955774822, 1.0 / 3, 1.0 / 3, 1.0 / 3},
        Shape{2, 3});
    const Comparison c = compare(o.probs, p_ref, tol, tol);
    INFO(c.report);
    CHECK(c.ok);
    CHECK(o.correct.item<int32_t>() == 2);
  }
}

TEST_CASE("softmax_xent label smoothing by hand", "[softmax_xent]") {
  // With sum_j q_j = 1, loss_i = -sum_j q_j (z_j - lse_i) = lse_i - sum_j q_j z_j.
  // eps = 0.1, K = 3: q = 0.1/3 off the label, 0.9 + 0.1/3 on it.
  // Row 0 (label 2): sum q z = (0.1/3)(1 + 2) + (0.9 + 0.1/3) 3 = 0.1 + 2.8 = 2.9,
  //   loss_0 = 3.4076059644 - 2.9 = 0.5076059644.
  // Row 1 (all ones): sum q z = 1, loss_1 = log 3 + 1 - 1 = 1.0986122887.
  // Mean: 0.8031091266.
  const Tensor logits = Tensor::from_vector<double>({1, 2, 3, 1, 1, 1}, Shape{2, 3});
  const Tensor labels = labels_of({2, 0});
  // float64 throughout: only round-off of a few operations.
  CHECK(loss_of(logits, labels, 0.1) == Approx(0.803109126556245).epsilon(1e-12));
  // eps = 1 is the uniform target: loss_i = lse_i - mean_j z_ij, whatever the label.
  CHECK(loss_of(logits, labels, 1.0) ==
        Approx((3.40760596444438 - 2.0 + std::log(3.0)) / 2).epsilon(1e-12));
}

TEST_CASE("softmax_xent extreme logits do not overflow", "[softmax_xent]") {
  // Row 0 = (1e4, -1e4, 0), label 1: loss_0 = lse - z_1 = 1e4 + log(1 + e^-1e4 + e^-2e4) + 1e4
  //   = 20000 (the correction is far below float64 resolution).
  // Row 1 = (-1e4, -1e4, -9999), label 2: lse = -9999 + log(1 + 2/e), loss_1 = log(1 + 2/e)
  //   = 0.5514447139.
  // Mean: 10000.2757223570. A naive exp(1e4) is inf in float32 and float64 alike.
  const std::vector<double> z = {1e4, -1e4, 0, -1e4, -1e4, -9999};
  const Tensor labels = labels_of({1, 2});
  for (DType dt : {DType::F64, DType::F32}) {
    INFO(dtype_name(dt));
    const Tensor logits = cast(Tensor::from_vector(z, Shape{2, 3}), dt);
    const XentOut o = xent(logits, labels);
    // float32 stores 20000 exactly and log(1 + 2/e) to 6e-8 relative: 1e-6 is a few ulp.
    const double tol = dt == DType::F64 ? 1e-12 : 1e-6;
    CHECK(to_doubles(o.loss)[0] == Approx(10000.275722356966).epsilon(tol));
    const std::vector<double> p = to_doubles(o.probs);
    for (double v : p) CHECK(std::isfinite(v));
    CHECK(p[0] == 1.0);  // e^0 / (1 + e^-1e4 + e^-2e4) rounds to exactly 1
    CHECK(p[1] == 0.0);  // e^-2e4 underflows to 0, harmlessly
    CHECK(p[5] == Approx(1.0 / (1.0 + 2.0 / std::exp(1.0))).epsilon(tol));
    CHECK(o.correct.item<int32_t>() == 1);  // row 1: argmax 2 == label 2; row 0: 0 != 1

    Tensor dz = Tensor::empty(logits.shape(), dt);
    poison(dz);
    softmax_xent_backward(dz, o.probs, labels);
    // dz = (p - onehot) / N: row 0 = (0.5, -0.5, 0).
    const std::vector<double> g = to_doubles(dz);
    for (double v : g) CHECK(std::isfinite(v));
    CHECK(g[0] == Approx(0.5).epsilon(tol));
    CHECK(g[1] == Approx(-0.5).epsilon(tol));
  }
}

TEST_CASE("softmax_xent backward matches finite differences", "[softmax_xent][gradcheck]") {
  // The loss is not a Module (it takes labels), so the central differences run over the logits
  // directly: dL/dz_ij ~ (L(z + h e_ij) - L(z - h e_ij)) / 2h, compared with softmax_xent_backward.
  // In float64 the truncation error is O(h^2 L''') ~ 1e-10 and the round-off ~1e-16 / h ~ 1e-11,
  // so a relative error above 1e-6 is a wrong formula, not noise. The floor 1e-2 (as in
  // test::check_gradients) keeps near-zero gradients from turning round-off into large ratios.
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  struct Case {
    int64_t N, K;
    double eps, scale;
  };
  for (Case c : {Case{3, 5, 0.0, 1.0}, Case{1, 7, 0.1, 1.0}, Case{4, 2, 0.25, 2.5},
                 Case{2, 33, 0.0, 0.5}}) {
    INFO("N " << c.N << " K " << c.K << " eps " << c.eps << " scale " << c.scale);
    Tensor z = normal_tensor(Shape{c.N, c.K}, g, 2.0);
    const Tensor labels = label_tensor(c.N, c.K, g);
    const XentOut o = xent(z, labels, c.eps);
    Tensor dz = Tensor::empty(z.shape(), DType::F64);
    poison(dz);
    softmax_xent_backward(dz, o.probs, labels, c.eps, c.scale);
    const std::vector<double> analytic = dz.to_vector<double>();

    const double h = 1e-5;
    double* pz = z.data<double>();
    for (int64_t i = 0; i < z.numel(); ++i) {
      const double v = pz[i];
      pz[i] = v + h;
      const double lp = loss_of(z, labels, c.eps);
      pz[i] = v - h;
      const double lm = loss_of(z, labels, c.eps);
      pz[i] = v;
      const double numeric = c.scale * (lp - lm) / (2 * h);
      const double err = std::fabs(analytic[i] - numeric) /
                         std::max({std::fabs(analytic[i]), std::fabs(numeric), 1e-2});
      INFO("element " << i << " analytic " << analytic[i] << " numeric " << numeric);
      CHECK(err < 1e-6);
    }
  }
}

TEST_CASE("softmax_xent correct count and argmax_rows", "[softmax_xent]") {
  // Rows chosen for the first-max rule: ties pick the lowest index.
  const std::vector<double> z = {0, 5, 5, 1,     // tie at 1 and 2 -> 1
                                 -3, -2, -1, -4,  // all negative -> 2
                                 7, 7, 7, 7,      // all equal -> 0
                                 0, 0, 0, 9};     // last -> 3
  for (DType dt : {DType::F64, DType::F32}) {
    INFO(dtype_name(dt));
    const Tensor logits = cast(Tensor::from_vector(z, Shape{4, 4}), dt);
    Tensor pred = Tensor::empty(Shape{4}, DType::I32);
    poison(pred);
    argmax_rows(pred, logits);
    CHECK(pred.to_vector<int32_t>() == std::vector<int32_t>{1, 2, 0, 3});
    // Labels hit rows 0, 2 and 3 (row 0's label 1 only counts under the first-max rule).
    CHECK(xent(logits, labels_of({1, 3, 0, 3})).correct.item<int32_t>() == 3);
    CHECK(xent(logits, labels_of({2, 2, 1, 0})).correct.item<int32_t>() == 1);
  }
}

TEST_CASE("argmax_rows by hand: NaN wins only at index 0", "[softmax_xent]") {
  // The rule z[j] > z[best] from best = 0: a NaN is never larger, so a NaN elsewhere is skipped,
  // and a NaN at index 0 is never displaced. tests/ops holds every backend to this.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> z = {1, nan, 3, 2,  // NaN skipped -> 2
                                 nan, 5, 6, 7};  // NaN first -> 0
  for (DType dt : {DType::F64, DType::F32}) {
    INFO(dtype_name(dt));
    Tensor pred = Tensor::empty(Shape{2}, DType::I32);
    poison(pred);
    argmax_rows(pred, cast(Tensor::from_vector(z, Shape{2, 4}), dt));
    CHECK(pred.to_vector<int32_t>() == std::vector<int32_t>{2, 0});
  }
}

TEST_CASE("softmax_xent bad input names the op and the values", "[softmax_xent][errors]") {
  const Tensor logits = Tensor::zeros(Shape{2, 3}, DType::F64);
  SECTION("label out of range names index, label and K") {
    REQUIRE_THROWS_WITH(xent(logits, labels_of({0, 3})),
                        Catch::Contains("softmax_xent_forward") && Catch::Contains("label 3") &&
                            Catch::Contains("index 1") && Catch::Contains("K = 3"));
    REQUIRE_THROWS_WITH(xent(logits, labels_of({-1, 0})),
                        Catch::Contains("label -1") && Catch::Contains("index 0"));
    Tensor dz = Tensor::empty(Shape{2, 3}, DType::F64);
    REQUIRE_THROWS_WITH(softmax_xent_backward(dz, logits, labels_of({0, 7})),
                        Catch::Contains("softmax_xent_backward") && Catch::Contains("label 7"));
  }
  SECTION("labels of the wrong length or dtype") {
    REQUIRE_THROWS_WITH(xent(logits, labels_of({0, 1, 2})),
                        Catch::Contains("labels") && Catch::Contains("(3,)") &&
                            Catch::Contains("(2,)"));
    REQUIRE_THROWS_WITH(xent(logits, Tensor::zeros(Shape{2}, DType::F32)),
                        Catch::Contains("labels") && Catch::Contains("float32") &&
                            Catch::Contains("int32"));
  }
  SECTION("logits that are not (N, K)") {
    REQUIRE_THROWS_WITH(xent(Tensor::zeros(Shape{2, 3, 1}, DType::F64), labels_of({0, 1})),
                        Catch::Contains("2-D") && Catch::Contains("(2, 3, 1)"));
    Tensor pred = Tensor::empty(Shape{3}, DType::I32);
    REQUIRE_THROWS_WITH(argmax_rows(pred, logits),
                        Catch::Contains("argmax_rows") && Catch::Contains("(3,)") &&
                            Catch::Contains("(2,)"));
  }
  SECTION("label smoothing outside [0, 1]") {
    REQUIRE_THROWS_WITH(xent(logits, labels_of({0, 1}), 1.5),
                        Catch::Contains("label_smoothing") && Catch::Contains("1.5"));
  }
}

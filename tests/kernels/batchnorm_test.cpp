// Batch normalisation ops on the CPU: forward values and running statistics computed by hand,
// the accumulate/overwrite contract of backward, and the argument checks. (Gradients against
// finite differences are in tests/layers/batchnorm_test.cpp; the float32 backends, the CPU's
// included, against this float64 reference in tests/ops/batchnorm_test.cpp.)
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/batchnorm.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {
Tensor vec(std::vector<double> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return Tensor::from_vector(v, Shape{n});
}
}  // namespace

TEST_CASE("batchnorm forward train by hand on a 2x1x2x2 tensor", "[batchnorm]") {
  // One channel, M = 8 values 1..8: mean 4.5, squared deviations sum to 42, so the biased
  // variance is 42/8 = 5.25 (normalises) and the unbiased one 42/7 = 6 (running_var).
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8}, Shape{2, 1, 2, 2});
  const Tensor gamma = vec({2.0}), beta = vec({0.5});
  Tensor rm = vec({0.0}), rv = vec({1.0});
  Tensor y = Tensor::empty(x.shape(), DType::F64), mean = Tensor::empty(Shape{1}, DType::F64),
         invstd = Tensor::empty(Shape{1}, DType::F64);
  poison(y);
  poison(mean);
  poison(invstd);
  batchnorm_forward_train(y, mean, invstd, rm, rv, x, gamma, beta, BatchNormParams{});

  const double is = 1.0 / std::sqrt(5.25 + 1e-5);
  CHECK(mean.item<double>() == Approx(4.5).epsilon(1e-14));
  CHECK(invstd.item<double>() == Approx(is).epsilon(1e-14));
  const auto out = y.to_vector<double>();
  for (int i = 0; i < 8; ++i) CHECK(out[i] == Approx(2.0 * (i + 1 - 4.5) * is + 0.5).epsilon(1e-14));
  // running = 0.9 running + 0.1 batch, with the unbiased variance.
  CHECK(rm.item<double>() == Approx(0.1 * 4.5).epsilon(1e-14));
  CHECK(rv.item<double>() == Approx(0.9 * 1.0 + 0.1 * 6.0).epsilon(1e-14));
}

TEST_CASE("batchnorm forward train keeps channels apart", "[batchnorm]") {
  // (N, C, H, W) = (2, 2, 1, 1): channel 0 sees {1, 3} (mean 2, var 1, unbiased 2), channel 1
  // sees {10, 20} (mean 15, var 25, unbiased 50). Memory order is n-major: 1, 10, 3, 20.
  const Tensor x = Tensor::from_vector<double>({1, 10, 3, 20}, Shape{2, 2, 1, 1});
  const Tensor gamma = vec({1.0, 3.0}), beta = vec({0.0, -1.0});
  Tensor rm = vec({0.0, 1.0}), rv = vec({1.0, 2.0});
  Tensor y = Tensor::empty(x.shape(), DType::F64), mean = Tensor::empty(Shape{2}, DType::F64),
         invstd = Tensor::empty(Shape{2}, DType::F64);
  poison(y);
  batchnorm_forward_train(y, mean, invstd, rm, rv, x, gamma, beta, BatchNormParams{0.2, 1e-5});
  const double i0 = 1 / std::sqrt(1 + 1e-5), i1 = 1 / std::sqrt(25 + 1e-5);
  const auto out = y.to_vector<double>();
  CHECK(out[0] == Approx(-i0));
  CHECK(out[2] == Approx(i0));
  CHECK(out[1] == Approx(3 * -5 * i1 - 1));
  CHECK(out[3] == Approx(3 * 5 * i1 - 1));
  CHECK(mean.to_vector<double>() == std::vector<double>{2, 15});
  const auto m = rm.to_vector<double>(), v = rv.to_vector<double>();
  CHECK(m[0] == Approx(0.8 * 0 + 0.2 * 2));   // momentum 0.2
  CHECK(m[1] == Approx(0.8 * 1 + 0.2 * 15));
  CHECK(v[0] == Approx(0.8 * 1 + 0.2 * 2));
  CHECK(v[1] == Approx(0.8 * 2 + 0.2 * 50));
}

TEST_CASE("batchnorm forward eval uses the running statistics", "[batchnorm]") {
  const Tensor x = Tensor::from_vector<double>({1, 3, 5, 7}, Shape{1, 1, 2, 2});
  const Tensor gamma = vec({2.0}), beta = vec({1.0}), rm = vec({3.0}), rv = vec({4.0});
  Tensor y = Tensor::empty(x.shape(), DType::F64);
  poison(y);
  batchnorm_forward_eval(y, x, gamma, beta, rm, rv, BatchNormParams{});
  const double s = 2.0 / std::sqrt(4.0 + 1e-5);
  const auto out = y.to_vector<double>();
  for (int i = 0; i < 4; ++i) CHECK(out[i] == Approx((1 + 2 * i - 3) * s + 1).epsilon(1e-14));
  // Eval never touches the running statistics.
  CHECK(rm.item<double>() == 3.0);
  CHECK(rv.item<double>() == 4.0);
}

TEST_CASE("batchnorm backward: dx overwritten, dgamma and dbeta accumulate", "[batchnorm]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Shape s{3, 2, 3, 5};
  const Tensor x = normal_tensor(s, g), dy = normal_tensor(s, g);
  const Tensor gamma = uniform_tensor(Shape{2}, g, 0.5, 1.5), beta = uniform_tensor(Shape{2}, g);
  Tensor rm = Tensor::zeros(Shape{2}, DType::F64), rv = Tensor::full(Shape{2}, 1.0, DType::F64);
  Tensor y = Tensor::empty(s, DType::F64), mean = Tensor::empty(Shape{2}, DType::F64),
         invstd = Tensor::empty(Shape{2}, DType::F64);
  batchnorm_forward_train(y, mean, invstd, rm, rv, x, gamma, beta, BatchNormParams{});

  for (bool train : {true, false}) {
    INFO((train ? "train" : "eval"));
    Tensor dx = Tensor::empty(s, DType::F64);
    Tensor dgamma = Tensor::zeros(Shape{2}, DType::F64), dbeta = Tensor::zeros(Shape{2}, DType::F64);
    auto run = [&] {
      poison(dx);  // overwritten: a stale value must not survive
      if (train)
        batchnorm_backward_train(dx, dgamma, dbeta, dy, x, gamma, mean, invstd, BatchNormParams{});
      else
        batchnorm_backward_eval(dx, dgamma, dbeta, dy, x, gamma, rm, rv, BatchNormParams{});
    };
    run();
    const auto dx1 = dx.to_vector<double>();
    const auto dg1 = dgamma.to_vector<double>(), db1 = dbeta.to_vector<double>();
    run();
    CHECK(dx.to_vector<double>() == dx1);
    const auto dg2 = dgamma.to_vector<double>(), db2 = dbeta.to_vector<double>();
    for (int c = 0; c < 2; ++c) {
      CHECK(dg2[c] == Approx(2 * dg1[c]));
      CHECK(db2[c] == Approx(2 * db1[c]));
    }
    // dbeta is sum dy over the channel whatever the mode.
    double sum0 = 0;
    const auto d = dy.to_vector<double>();
    for (int n = 0; n < 3; ++n)
      for (int i = 0; i < 15; ++i) sum0 += d[(n * 2 + 0) * 15 + i];
    CHECK(db1[0] == Approx(sum0));
  }
}

TEST_CASE("batchnorm: bad arguments name the op and the shapes", "[batchnorm][errors]") {
  const Tensor x = Tensor::zeros(Shape{2, 3, 4, 4}, DType::F64);
  Tensor y = Tensor::zeros(Shape{2, 3, 4, 4}, DType::F64);
  Tensor c3 = Tensor::zeros(Shape{3}, DType::F64), c3b = Tensor::zeros(Shape{3}, DType::F64);
  Tensor c3c = Tensor::zeros(Shape{3}, DType::F64), c3d = Tensor::full(Shape{3}, 1.0, DType::F64);
  Tensor c4 = Tensor::zeros(Shape{4}, DType::F64);
  Tensor m = Tensor::zeros(Shape{3}, DType::F64), is = Tensor::zeros(Shape{3}, DType::F64);

  REQUIRE_THROWS_WITH(
      batchnorm_forward_train(y, m, is, c3c, c3d, x, c4, c3b, BatchNormParams{}),
      Catch::Contains("batchnorm_forward_train") && Catch::Contains("weight") &&
          Catch::Contains("(4,)") && Catch::Contains("(3,)"));
  Tensor y3 = Tensor::zeros(Shape{2, 3, 16}, DType::F64);
  const Tensor x3 = Tensor::zeros(Shape{2, 3, 16}, DType::F64);
  REQUIRE_THROWS_WITH(batchnorm_forward_eval(y3, x3, c3, c3b, c3c, c3d, BatchNormParams{}),
                      Catch::Contains("batchnorm_forward_eval") && Catch::Contains("4-D") &&
                          Catch::Contains("(2, 3, 16)"));
  // One value per channel has no batch variance (torch raises the same).
  const Tensor x1 = Tensor::zeros(Shape{1, 3, 1, 1}, DType::F64);
  Tensor y1 = Tensor::zeros(Shape{1, 3, 1, 1}, DType::F64);
  REQUIRE_THROWS_WITH(batchnorm_forward_train(y1, m, is, c3c, c3d, x1, c3, c3b, BatchNormParams{}),
                      Catch::Contains("more than 1 value per channel") &&
                          Catch::Contains("(1, 3, 1, 1)"));
  Tensor ybad = Tensor::zeros(Shape{2, 3, 4, 5}, DType::F64);
  REQUIRE_THROWS_WITH(batchnorm_forward_eval(ybad, x, c3, c3b, c3c, c3d, BatchNormParams{}),
                      Catch::Contains("(2, 3, 4, 5)") && Catch::Contains("(2, 3, 4, 4)"));
  Tensor dgamma = Tensor::zeros(Shape{3}, DType::F32);
  Tensor dx = Tensor::zeros(x.shape(), DType::F64);
  REQUIRE_THROWS_WITH(batchnorm_backward_train(dx, dgamma, c3b, x, x, c3, m, is, BatchNormParams{}),
                      Catch::Contains("weight gradient") && Catch::Contains("float32"));
}

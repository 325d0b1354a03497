// Pooling layers: gradients against float64 finite differences (overlapping windows, padding,
// floor-mode leftovers, batch 1 and 3, odd sizes), descriptions, output shapes and errors.
#include <catch2/catch.hpp>

#include <numeric>

#include "layers/pooling.h"
#include "../support/gradcheck.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {
// A random permutation of the values 0.01 * (i - n/2): all distinct and at least 0.01 apart, so
// the finite-difference steps (1e-5) never reorder two values of a window and the max is never a
// tie: max pooling is differentiable at every point checked.
Tensor distinct_tensor(const Shape& s, Generator& g) {
  const int64_t n = s.numel();
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[g.below(i + 1)]);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = 0.01 * (perm[i] - n / 2);
  return Tensor::from_vector(v, s);
}
}  // namespace

TEST_CASE("MaxPool2d: backward matches finite differences", "[pooling][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // k2s2 (disjoint), k3s2 (overlapping, AlexNet), k3s1p1 (overlapping and padded).
  for (Pool2dParams p : {Pool2dParams{2, 2, 0}, Pool2dParams{3, 2, 0}, Pool2dParams{3, 1, 1}}) {
    for (Shape s : {Shape{1, 2, 7, 9}, Shape{3, 2, 5, 5}}) {
      MaxPool2d pool(p);
      GradCheckOptions opt;
      opt.max_elements = 80;  // most of the input: gradients are sparse, so sample widely
      const GradCheckResult r = check_gradients(pool, distinct_tensor(s, g), seed, opt);
      INFO(r.report);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("AvgPool2d: backward matches finite differences", "[pooling][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (Pool2dParams p : {Pool2dParams{2, 2, 0}, Pool2dParams{3, 2, 1}}) {
    for (Shape s : {Shape{1, 2, 7, 9}, Shape{3, 2, 5, 5}}) {
      AvgPool2d pool(p);
      const GradCheckResult r = check_gradients(pool, uniform_tensor(s, g), seed);
      INFO(r.report);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("GlobalAvgPool: backward matches finite differences", "[pooling][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (Shape s : {Shape{1, 3, 5, 7}, Shape{3, 2, 4, 4}, Shape{3, 2, 1, 1}}) {
    GlobalAvgPool pool;
    const GradCheckResult r = check_gradients(pool, uniform_tensor(s, g), seed);
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("pooling layers: describe, output shapes and flops", "[pooling]") {
  MaxPool2d mp({3, 2, 0});
  AvgPool2d ap({2, 2, 0});
  GlobalAvgPool gp;
  CHECK(mp.describe() == "MaxPool2d(k=3, s=2, p=0)");
  CHECK(ap.describe() == "AvgPool2d(k=2, s=2, p=0)");
  CHECK(gp.describe() == "GlobalAvgPool()");
  CHECK(mp.output_shape(Shape{8, 64, 31, 31}) == Shape{8, 64, 15, 15});
  CHECK(ap.output_shape(Shape{8, 64, 31, 31}) == Shape{8, 64, 15, 15});
  CHECK(gp.output_shape(Shape{8, 512, 4, 4}) == Shape{8, 512, 1, 1});
  CHECK(mp.forward_flops(Shape{1, 1, 3, 3}) == 9);
  CHECK(gp.forward_flops(Shape{2, 3, 4, 4}) == 96);
}

TEST_CASE("pooling layers: forward keeps its argmax and returns the pooled values", "[pooling]") {
  MaxPool2d mp({2, 2, 0});
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 8, 7, 6, 5}, Shape{1, 2, 2, 2});
  const Tensor y = mp.forward(x, Mode::Train);
  CHECK(y.to_vector<float>() == std::vector<float>{4, 8});
  const Tensor dx = mp.backward(Tensor::from_vector<float>({1, 2}, Shape{1, 2, 1, 1}));
  CHECK(dx.to_vector<float>() == std::vector<float>{0, 0, 0, 1, 2, 0, 0, 0});
}

TEST_CASE("pooling layers: errors name the layer and the shapes", "[pooling][errors]") {
  MaxPool2d mp({3, 2, 0});
  REQUIRE_THROWS_WITH(mp.forward(Tensor::zeros(Shape{1, 3, 2, 2}), Mode::Train),
                      Catch::Contains("MaxPool2d") && Catch::Contains("(1, 3, 2, 2)"));
  REQUIRE_THROWS_WITH(mp.backward(Tensor::zeros(Shape{1, 3, 1, 1})),
                      Catch::Contains("MaxPool2d") && Catch::Contains("before forward"));
  mp.forward(Tensor::zeros(Shape{1, 3, 5, 5}), Mode::Train);
  REQUIRE_THROWS_WITH(mp.backward(Tensor::zeros(Shape{1, 3, 3, 3})),
                      Catch::Contains("MaxPool2d") && Catch::Contains("(1, 3, 3, 3)") &&
                          Catch::Contains("(1, 3, 2, 2)"));
  AvgPool2d ap({2, 2, 0});
  REQUIRE_THROWS_WITH(ap.forward(Tensor::zeros(Shape{4, 16}), Mode::Train),
                      Catch::Contains("AvgPool2d") && Catch::Contains("(4, 16)"));
  GlobalAvgPool gp;
  REQUIRE_THROWS_WITH(gp.forward(Tensor::zeros(Shape{4, 16}), Mode::Train),
                      Catch::Contains("GlobalAvgPool") && Catch::Contains("(4, 16)"));
  REQUIRE_THROWS_WITH(MaxPool2d({2, 2, 3}), Catch::Contains("MaxPool2d") && Catch::Contains("p=3"));
  REQUIRE_THROWS_WITH(AvgPool2d({0, 1, 0}), Catch::Contains("AvgPool2d") && Catch::Contains("k=0"));
}

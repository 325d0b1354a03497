#include "layers/linear.h"

#include <catch2/catch.hpp>

#include "../support/gradcheck.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

LinearConfig f64_config(int64_t in, int64_t out, bool bias) {
  LinearConfig c;
  c.in_features = in;
  c.out_features = out;
  c.bias = bias;
  c.dtype = DType::F64;
  return c;
}

}  // namespace

TEST_CASE("linear forward and backward by hand", "[linear]") {
  // x = [[1, 2]], w = [[1, 0], [2, 3], [-1, 1]], b = [0.5, 0, 1]
  // y = x w^T + b = [1 + 0.5, 2 + 6, -1 + 2 + 1] = [1.5, 8, 2]
  const Tensor x = Tensor::from_vector<double>({1, 2}, Shape{1, 2});
  const Tensor w = Tensor::from_vector<double>({1, 0, 2, 3, -1, 1}, Shape{3, 2});
  const Tensor b = Tensor::from_vector<double>({0.5, 0, 1}, Shape{3});
  Tensor y = Tensor::empty(Shape{1, 3}, DType::F64);
  poison(y);
  linear_forward(y, x, w, &b);
  CHECK(y.to_vector<double>() == std::vector<double>{1.5, 8, 2});
  linear_forward(y, x, w, nullptr);
  CHECK(y.to_vector<double>() == std::vector<double>{1, 8, 1});
  // dy = [1, 1, 2]: dx = dy w = [1 + 2 - 2, 0 + 3 + 2] = [1, 5] (overwritten);
  // dw += dy^T x = [[1, 2], [1, 2], [2, 4]] (on top of 1); db += dy (on top of 1)
  const Tensor dy = Tensor::from_vector<double>({1, 1, 2}, Shape{1, 3});
  Tensor dx = Tensor::empty(Shape{1, 2}, DType::F64);
  poison(dx);
  Tensor dw = Tensor::full(Shape{3, 2}, 1.0, DType::F64);
  Tensor db = Tensor::full(Shape{3}, 1.0, DType::F64);
  linear_backward(&dx, dw, &db, dy, x, w);
  CHECK(dx.to_vector<double>() == std::vector<double>{1, 5});
  CHECK(dw.to_vector<double>() == std::vector<double>{2, 3, 2, 3, 3, 5});
  CHECK(db.to_vector<double>() == std::vector<double>{2, 2, 3});
}

TEST_CASE("Linear backward matches finite differences", "[linear][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  struct Case {
    Shape x;
    LinearConfig cfg;
  };
  // Batch 1 and 3, with and without bias, and a 4-D input flattened to (N, 2*3*1).
  const std::vector<Case> cases = {{Shape{1, 7}, f64_config(7, 5, true)},
                                   {Shape{3, 4}, f64_config(4, 9, false)},
                                   {Shape{3, 2, 3, 1}, f64_config(6, 3, true)}};
  for (const Case& c : cases) {
    Linear lin(c.cfg, gen);
    const Tensor x = uniform_tensor(c.x, gen);
    const GradCheckResult r = check_gradients(lin, x, seed);
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("Linear flattens its input, returns dx in the input shape and can skip it", "[linear]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  Linear lin(f64_config(8, 4, true), gen);
  const Tensor x = uniform_tensor(Shape{3, 2, 2, 2}, gen);
  const Tensor y = lin.forward(x, Mode::Train);
  CHECK(y.shape() == Shape{3, 4});
  const Tensor dy = uniform_tensor(Shape{3, 4}, gen);
  lin.zero_grad();
  CHECK(lin.backward(dy).shape() == Shape{3, 2, 2, 2});
  const auto w1 = lin.weight().grad.to_vector<double>();
  lin.set_needs_input_grad(false);
  lin.forward(x, Mode::Train);
  CHECK_FALSE(lin.backward(dy).defined());
  const auto w2 = lin.weight().grad.to_vector<double>();
  for (size_t i = 0; i < w1.size(); ++i) CHECK(w2[i] == Approx(2 * w1[i]));  // accumulated
}

TEST_CASE("Linear describe, flops and errors", "[linear][errors]") {
  Generator gen(1);
  LinearConfig cfg;
  cfg.in_features = 512;
  cfg.out_features = 10;
  Linear lin(cfg, gen);
  CHECK(lin.describe() == "Linear(512, 10)");
  CHECK(lin.forward_flops(Shape{4, 512}) == 2 * 4 * 512 * 10 + 4 * 10);
  CHECK(lin.output_shape(Shape{4, 512, 1, 1}) == Shape{4, 10});
  const double bound = 1.0 / std::sqrt(512.0);
  for (float v : lin.weight().value.to_vector<float>()) REQUIRE(std::fabs(v) <= bound);
  REQUIRE_THROWS_WITH(
      lin.forward(Tensor::zeros(Shape{4, 500}), Mode::Train),
      Catch::Contains("Linear") && Catch::Contains("(4, 500)") && Catch::Contains("512"));
  cfg.bias = false;
  CHECK(Linear(cfg, gen).describe() == "Linear(512, 10, bias=False)");

  const Tensor x = Tensor::zeros(Shape{2, 3}, DType::F64);
  const Tensor w = Tensor::zeros(Shape{4, 5}, DType::F64);
  Tensor y = Tensor::zeros(Shape{2, 4}, DType::F64);
  REQUIRE_THROWS_WITH(linear_forward(y, x, w, nullptr), Catch::Contains("linear_forward") &&
                                                            Catch::Contains("(2, 3)") &&
                                                            Catch::Contains("(4, 5)"));
}

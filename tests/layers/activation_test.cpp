#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "layers/activation.h"
#include "../support/gradcheck.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("activation forward values by hand", "[activation]") {
  const Tensor x = Tensor::from_vector<double>({-2.0, -0.5, 0.0, 0.5, 3.0}, Shape{5});
  Tensor y = Tensor::empty(x.shape(), DType::F64);
  poison(y);
  activation_forward(y, x, Activation::ReLU);
  CHECK(y.to_vector<double>() == std::vector<double>{0, 0, 0, 0.5, 3.0});
  activation_forward(y, x, Activation::LeakyReLU, 0.1);
  CHECK(y.to_vector<double>() == std::vector<double>{-0.2, -0.05, 0, 0.5, 3.0});
  activation_forward(y, x, Activation::Sigmoid);
  CHECK(y.to_vector<double>()[2] == Approx(0.5));
  CHECK(y.to_vector<double>()[4] == Approx(1.0 / (1.0 + std::exp(-3.0))));
  activation_forward(y, x, Activation::Tanh);
  CHECK(y.to_vector<double>()[0] == Approx(std::tanh(-2.0)));
}

TEST_CASE("activations by hand at -0, 0 and NaN", "[activation]") {
  // The reference's rules where it is special (tests/ops compares every backend with it there):
  // ReLU(+-0) = +0 with derivative 0 (torch's), ReLU(NaN) = 0 with gradient 0; LeakyReLU keeps the
  // sign of zero and takes the slope at 0; sigmoid(0) = 1/2 with derivative 1/4; tanh(-0) = -0.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = Tensor::from_vector<double>({-0.0, 0.0, nan, 1.0}, Shape{4});
  const Tensor dy = Tensor::from_vector<double>({1.0, 1.0, 1.0, 1.0}, Shape{4});
  struct Expect {
    Activation act;
    std::vector<double> y, dx;
  };
  const Expect expects[] = {
      {Activation::ReLU, {0.0, 0.0, 0.0, 1.0}, {0.0, 0.0, 0.0, 1.0}},
      {Activation::LeakyReLU, {-0.0, 0.0, nan, 1.0}, {0.5, 0.5, 0.5, 1.0}},
      {Activation::Sigmoid, {0.5, 0.5, nan, 1 / (1 + std::exp(-1.0))}, {0.25, 0.25, nan, 0.0}},
      {Activation::Tanh, {-0.0, 0.0, nan, std::tanh(1.0)}, {1.0, 1.0, nan, 0.0}}};
  for (const Expect& e : expects) {
    INFO(activation_name(e.act));
    Tensor y = Tensor::empty(x.shape(), DType::F64), dx = Tensor::empty(x.shape(), DType::F64);
    activation_forward(y, x, e.act, 0.5);
    activation_backward(dx, dy, x, y, e.act, 0.5);
    expect_same("y", y, Tensor::from_vector(e.y, Shape{4}));
    // Element 3 of sigmoid and tanh's dx is checked by the finite-difference test below.
    std::vector<double> dxv = dx.to_vector<double>(), want = e.dx;
    if (e.act == Activation::Sigmoid || e.act == Activation::Tanh) dxv[3] = want[3] = 0.0;
    expect_same("dx", Tensor::from_vector(dxv, Shape{4}), Tensor::from_vector(want, Shape{4}));
  }
}

TEST_CASE("activation layers: backward matches finite differences", "[activation][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Odd sizes, batch 1 and 3; inputs kept away from the kink at 0 (ReLU-like layers).
  for (Shape s : {Shape{1, 3, 5, 7}, Shape{3, 2, 3, 1}}) {
    const Tensor x = away_from_zero_tensor(s, g, 0.05);
    ReLU relu;
    LeakyReLU leaky(0.2);
    Sigmoid sig;
    Tanh tanh_layer;
    for (Module* m : std::vector<Module*>{&relu, &leaky, &sig, &tanh_layer}) {
      const GradCheckResult r = check_gradients(*m, x, seed);
      INFO(r.report);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("activation: shape mismatch names the layer and both shapes", "[activation][errors]") {
  Tensor x = Tensor::zeros(Shape{2, 3}, DType::F64);
  Tensor y = Tensor::zeros(Shape{3, 2}, DType::F64);
  REQUIRE_THROWS_WITH(activation_forward(y, x, Activation::ReLU),
                      Catch::Contains("ReLU") && Catch::Contains("(3, 2)") && Catch::Contains("(2, 3)"));
}

TEST_CASE("activation float32 CPU kernels match the float64 reference", "[activation][cpu_paths]") {
  // 70,001 elements: above the threading threshold and not a multiple of any vector width.
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Shape s{70001};
  const Tensor x = uniform_tensor(s, g, -3.0, 3.0), dy = uniform_tensor(s, g);
  for (Activation act :
       {Activation::ReLU, Activation::LeakyReLU, Activation::Sigmoid, Activation::Tanh}) {
    INFO(activation_name(act));
    Tensor y64 = Tensor::empty(s, DType::F64), dx64 = Tensor::empty(s, DType::F64);
    activation_forward(y64, x, act, 0.1);
    activation_backward(dx64, dy, x, y64, act, 0.1);
    const Tensor x32 = cast(x, DType::F32);
    Tensor y32 = Tensor::empty(s), dx32 = Tensor::empty(s);
    poison(y32);
    poison(dx32);
    activation_forward(y32, x32, act, 0.1);
    activation_backward(dx32, cast(dy, DType::F32), x32, y32, act, 0.1);
    // float32 rounding of values of size <= 3 (and of exp/tanh): ~1e-7 relative; 1e-6 margin.
    for (const auto& [what, out, ref] :
         {std::tuple{"forward", y32, y64}, std::tuple{"backward", dx32, dx64}}) {
      const Comparison cmp = compare(cast(out, DType::F64), ref, 1e-6, 1e-6);
      INFO(what << ": " << cmp.report);
      CHECK(cmp.ok);
    }
  }
}

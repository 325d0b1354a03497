// Layers under --channels-last (layers/module.h): every layer, given a channels-last (NHWC) input,
// returns its output and its input gradient channels-last, and computes what it computes from the
// same values in NCHW: output, input gradient and parameter gradients, compared element by element
// in logical (n, c, h, w) order (test::to_doubles). Its backward is also checked against float64
// finite differences on the NHWC input itself (layers/gradcheck.h pairs R with the output in
// memory order). Flatten turns a channels-last input back into PyTorch's flatten order; Linear
// refuses a channels-last input whose features are not in that order.
//
// The layers whose ops index 4-D tensors (conv2d, batchnorm, pooling) are in the second test case,
// tagged [channels_last_ops]: they need those ops' NHWC forms (kernels/conv2d.*, batchnorm.*,
// pooling.*).
#include <catch2/catch.hpp>
#include <functional>
#include <memory>

#include "../support/gradcheck.h"
#include "../support/test_util.h"
#include "kernels/convert.h"
#include "layers/basic.h"
#include "layers/linear.h"
#include "layers/pooling.h"
#include "layers/residual.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct LayerCase {
  const char* what;
  std::function<std::unique_ptr<Module>(Generator&)> make;  // float64, from the generator's seed
  Shape x;
  Mode mode = Mode::Train;
};

// The bound. Both runs are float64 on cpu-reference from the same values; an NHWC kernel computes
// the same sums in another order (a convolution's C*R*S products, batchnorm's N*H*W, a pool's
// window), nothing else. A float64 sum of n terms in any order is within (n-1) u sum|t_i| of the
// exact sum (u = 2^-53), so two orders differ by at most 2 (n-1) u sum|t_i|: here n <= 9*7*2 = 126
// and |t_i| <= 2 (inputs in [-1, 1], weights |w| <= 1/sqrt(fan_in) <= 1, BN's normalised values
// <= sqrt(n)), so <= 2 * 125 * 1.1e-16 * 252 = 7e-12 per sum; batchnorm's backward chains three
// such sums scaled by invstd (<= 1/std of uniform(-1, 1) values, < 3). 1e-10 absolute and relative
// covers that; a kernel that reads channels-last memory as NCHW errs by order 1. Elementwise
// layers (activations, the residual sum, Flatten's conversion) are exact, and the bound lets
// them through as it must.
constexpr double kTol = 1e-10;

template <typename... L>
std::unique_ptr<Module> seq(std::unique_ptr<L>... layers) {
  auto s = std::make_unique<Sequential>();
  (s->add(std::move(layers)), ...);
  return s;
}

// `c` run on an NCHW input and on the same values in NHWC, from equal layers.
void check_layer(const LayerCase& c, uint64_t seed) {
  INFO(c.what << ", input " << c.x << ", seed " << seed);
  Generator g1(seed), g2(seed), gx(seed + 1);
  auto nchw = c.make(g1);
  auto nhwc = c.make(g2);
  const Tensor x = uniform_tensor(c.x, gx);
  const Tensor x_cl = to_layout(x, Layout::NHWC);
  REQUIRE(x_cl.layout() == Layout::NHWC);

  nchw->zero_grad();
  nhwc->zero_grad();
  const Tensor y = nchw->forward(x, c.mode);
  const Tensor y_cl = nhwc->forward(x_cl, c.mode);
  // The output keeps the input's layout: 4-D outputs are labelled NHWC (also (N, C, 1, 1), where
  // it is only a label); a 2-D output (Flatten, Linear) has none.
  CHECK(y_cl.layout() == (y_cl.dim() == 4 ? Layout::NHWC : Layout::NCHW));
  expect_close("output", y_cl, y, kTol, kTol);

  const Tensor dy = uniform_tensor(y.shape(), gx);
  const Tensor dx = nchw->backward(dy);
  const Tensor dx_cl = nhwc->backward(to_layout(dy, y_cl.layout()));
  CHECK(dx_cl.layout() == Layout::NHWC);
  expect_close("input gradient", dx_cl, dx, kTol, kTol);
  auto p = nchw->named_parameters(), p_cl = nhwc->named_parameters();
  REQUIRE(p.size() == p_cl.size());
  for (size_t i = 0; i < p.size(); ++i) {
    INFO(p[i].name);
    // Parameters have no layout: the same shapes (a conv weight (K, C, R, S)) in both modes.
    CHECK(p_cl[i].param->value.shape() == p[i].param->value.shape());
    CHECK(p_cl[i].param->grad.layout() == Layout::NCHW);
    expect_close("parameter gradient", p_cl[i].param->grad, p[i].param->grad, kTol, kTol);
  }

  // The channels-last backward against finite differences, on the NHWC input itself.
  GradCheckOptions opt;
  opt.mode = c.mode;
  Generator g3(seed);
  auto checked = c.make(g3);
  const GradCheckResult r = check_gradients(*checked, x_cl, seed, opt);
  INFO(r.report);
  CHECK(r.ok);
}

}  // namespace

TEST_CASE("channels-last: activations, the residual sum, Flatten and Linear keep the layout",
          "[layers][channels_last]") {
  const uint64_t seed = test_seed();
  const std::vector<LayerCase> cases{
      {"ReLU", [](Generator&) { return std::make_unique<ReLU>(); }, Shape{2, 5, 3, 7}},
      {"Tanh", [](Generator&) { return std::make_unique<Tanh>(); }, Shape{1, 3, 5, 5}},
      {"LeakyReLU", [](Generator&) { return std::make_unique<LeakyReLU>(0.1); }, Shape{2, 7, 2, 3}},
      {"Residual(Tanh, identity)",
       [](Generator&) {
         auto main = std::make_unique<Sequential>();
         main->add(std::make_unique<Tanh>());
         return std::make_unique<Residual>(std::move(main), nullptr);
       },
       Shape{2, 3, 5, 3}},
      // H*W > 1: converted to NCHW and back; H*W == 1: only relabelled.
      {"Tanh -> Flatten (H*W > 1)",
       [](Generator&) { return seq(std::make_unique<Tanh>(), std::make_unique<Flatten>()); },
       Shape{2, 5, 3, 7}},
      {"Tanh -> Flatten (H*W == 1)",
       [](Generator&) { return seq(std::make_unique<Tanh>(), std::make_unique<Flatten>()); },
       Shape{3, 5, 1, 1}},
      {"Tanh -> Flatten -> Linear (H*W > 1)",
       [](Generator& g) {
         return seq(std::make_unique<Tanh>(), std::make_unique<Flatten>(),
                    std::make_unique<Linear>(LinearConfig{5 * 3 * 7, 4, true, DType::F64}, g));
       },
       Shape{2, 5, 3, 7}},
      {"Tanh -> Linear on (N, C, 1, 1)",
       [](Generator& g) {
         return seq(std::make_unique<Tanh>(),
                    std::make_unique<Linear>(LinearConfig{5, 4, true, DType::F64}, g));
       },
       Shape{3, 5, 1, 1}},
  };
  for (const LayerCase& c : cases) check_layer(c, seed);
}

TEST_CASE("channels-last: Flatten gives PyTorch's flatten order, without a copy where H*W == 1",
          "[layers][channels_last]") {
  Generator g(test_seed());
  const Tensor x = uniform_tensor(Shape{2, 3, 2, 5}, g);
  Flatten f1, f2;
  const Tensor y = f1.forward(x, Mode::Train);
  const Tensor y_cl = f2.forward(to_layout(x, Layout::NHWC), Mode::Train);
  expect_same("flattened (H*W > 1)", y_cl, y);  // the same features in the same order, exactly
  const Tensor dx_cl = f2.backward(y);
  CHECK(dx_cl.layout() == Layout::NHWC);
  expect_same("gradient (H*W > 1)", dx_cl, x);

  const Tensor p = to_layout(uniform_tensor(Shape{4, 6, 1, 1}, g), Layout::NHWC);
  const Tensor q = f1.forward(p, Mode::Train);
  CHECK(q.same_data(p));  // a relabel: no copy
  const Tensor dq = f1.backward(q);
  CHECK(dq.same_data(q));
  CHECK(dq.layout() == Layout::NHWC);
}

TEST_CASE("channels-last: Linear refuses an input whose features are not in PyTorch's order",
          "[layers][channels_last]") {
  Generator g(test_seed());
  Linear fc(LinearConfig{3 * 2 * 2, 4, true, DType::F64}, g);
  const Tensor x = to_layout(uniform_tensor(Shape{2, 3, 2, 2}, g), Layout::NHWC);
  CHECK_THROWS_WITH(fc.forward(x, Mode::Train),
                    Catch::Contains("Linear") && Catch::Contains("channels-last") &&
                        Catch::Contains("put a Flatten before this layer"));
}

TEST_CASE("channels-last: Dropout keeps the layout and drops input and gradient together",
          "[layers][channels_last]") {
  // The mask is drawn per element in memory order (Philox), so a channels-last run drops other
  // (n, c, h, w) than an NCHW run with the same seed: a dropout mask all the same. What must hold:
  // y is 0 or x / (1 - p) element by element, and dx is dy / (1 - p) exactly where y kept x.
  Generator g(test_seed());
  const double p = 0.3;
  Dropout d(p, 11);
  const Tensor x = to_layout(uniform_tensor(Shape{2, 5, 3, 7}, g, 0.5, 1.5), Layout::NHWC);
  const Tensor y = d.forward(x, Mode::Train);
  CHECK(y.layout() == Layout::NHWC);
  const Tensor dy = to_layout(uniform_tensor(x.shape(), g, 0.5, 1.5), Layout::NHWC);
  const Tensor dx = d.backward(dy);
  CHECK(dx.layout() == Layout::NHWC);
  const auto xv = to_doubles(x), yv = to_doubles(y), dyv = to_doubles(dy), dxv = to_doubles(dx);
  int64_t kept = 0, wrong = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    const bool keep = yv[i] != 0;
    kept += keep;
    // x / (1 - p) and dy / (1 - p) in float64: one rounding each, 1e-15 relative.
    if (keep && std::abs(yv[i] - xv[i] / (1 - p)) > 1e-15 * std::abs(yv[i])) ++wrong;
    if (std::abs(dxv[i] - (keep ? dyv[i] / (1 - p) : 0.0)) > 1e-15 * std::abs(dyv[i]) / (1 - p))
      ++wrong;
  }
  CHECK(wrong == 0);
  CHECK(kept > 0);
  CHECK(kept < static_cast<int64_t>(xv.size()));
}

TEST_CASE("channels-last: convolution, batchnorm, pooling and blocks keep the layout",
          "[layers][channels_last][channels_last_ops]") {
  const uint64_t seed = test_seed();
  auto conv = [](int64_t in, int64_t out, int k, int s, int pad, bool bias) {
    return [=](Generator& g) {
      return std::make_unique<Conv2d>(Conv2dConfig{in, out, k, s, pad, bias, DType::F64}, g);
    };
  };
  auto bn = [](int64_t c) {
    return [=](Generator&) {
      return std::make_unique<BatchNorm2d>(BatchNorm2dConfig{c, 0.1, 1e-5, DType::F64});
    };
  };
  const std::vector<LayerCase> cases{
      {"Conv2d 3x3 stride 2 pad 1, bias", conv(3, 5, 3, 2, 1, true), Shape{2, 3, 9, 7}},
      {"Conv2d 1x1", conv(5, 3, 1, 1, 0, false), Shape{1, 5, 5, 3}},
      {"BatchNorm2d, train", bn(5), Shape{2, 5, 3, 7}},
      {"BatchNorm2d, eval", bn(3), Shape{3, 3, 5, 1}, Mode::Eval},
      {"MaxPool2d 3x3 stride 2 pad 1",
       [](Generator&) {
         return std::make_unique<MaxPool2d>(Pool2dParams{3, 2, 1});
       },
       Shape{2, 5, 9, 7}},
      {"AvgPool2d 2x2 stride 2",
       [](Generator&) {
         return std::make_unique<AvgPool2d>(Pool2dParams{2, 2, 0});
       },
       Shape{2, 3, 6, 5}},
      {"GlobalAvgPool -> Flatten -> Linear",
       [](Generator& g) {
         return seq(std::make_unique<GlobalAvgPool>(), std::make_unique<Flatten>(),
                    std::make_unique<Linear>(LinearConfig{5, 3, true, DType::F64}, g));
       },
       Shape{2, 5, 3, 7}},
      {"BasicBlock, projection shortcut, stride 2",
       [](Generator& g) {
         return std::make_unique<BasicBlock>(BlockConfig{4, 6, 2, DType::F64}, g);
       },
       Shape{2, 4, 7, 5}},
      {"AlexNet's tail: Conv2d -> ReLU -> MaxPool2d -> Flatten -> Linear",
       [](Generator& g) {
         return seq(std::make_unique<Conv2d>(Conv2dConfig{3, 4, 3, 1, 1, true, DType::F64}, g),
                    std::make_unique<ReLU>(), std::make_unique<MaxPool2d>(Pool2dParams{2, 2, 0}),
                    std::make_unique<Flatten>(),
                    std::make_unique<Linear>(LinearConfig{4 * 3 * 2, 5, true, DType::F64}, g));
       },
       Shape{2, 3, 6, 5}},
  };
  for (const LayerCase& c : cases) check_layer(c, seed);
}

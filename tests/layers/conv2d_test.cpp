#include "layers/conv2d.h"

#include <catch2/catch.hpp>

#include "../support/gradcheck.h"
#include "../support/test_util.h"
#include "core/device_settings.h"

using namespace minidl;
using namespace minidl::test;

namespace {

Conv2dConfig f64_config(int64_t in, int64_t out, int k, int s, int p, bool bias) {
  Conv2dConfig c;
  c.in_channels = in;
  c.out_channels = out;
  c.kernel = k;
  c.stride = s;
  c.pad = p;
  c.bias = bias;
  c.dtype = DType::F64;
  return c;
}

}  // namespace

TEST_CASE("Conv2d backward matches finite differences on awkward sizes", "[conv2d][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  struct Case {
    Shape x;
    Conv2dConfig cfg;
  };
  // Batch 1 and 3, odd spatial sizes, 1x1 / 3x3 / 7x7 kernels, stride 1 and 2, pad 0 / 1 / 3,
  // with and without bias.
  const std::vector<Case> cases = {
      {Shape{1, 2, 5, 7}, f64_config(2, 3, 3, 1, 1, true)},
      {Shape{3, 2, 9, 9}, f64_config(2, 2, 7, 2, 3, false)},
      {Shape{3, 3, 5, 7}, f64_config(3, 4, 1, 2, 0, true)},
      {Shape{1, 1, 9, 9}, f64_config(1, 2, 3, 2, 0, true)},
      {Shape{3, 2, 5, 7}, f64_config(2, 3, 3, 1, 3, false)},
      {Shape{1, 3, 9, 9}, f64_config(3, 2, 7, 1, 0, true)},
  };
  for (const Case& c : cases) {
    Conv2d conv(c.cfg, gen);
    const Tensor x = uniform_tensor(c.x, gen);
    const GradCheckResult r = check_gradients(conv, x, seed);
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("Conv2d backward matches finite differences with the batch split into chunks",
          "[conv2d][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  Conv2d conv(f64_config(2, 3, 3, 2, 1, true), gen);
  const Tensor x = uniform_tensor(Shape{3, 2, 7, 5}, gen);
  // One image's column buffer: (2*3*3) rows x (4*3) columns of doubles, so 3 chunks of 1 image.
  // The previous settings come back when the test ends, even when a check throws.
  DeviceSettings settings = device_settings(Device::cpu());
  settings.conv_col_budget = sizeof(double) * 18 * 12;
  ScopedDeviceSettings budget(settings);
  const GradCheckResult r = check_gradients(conv, x, seed);
  INFO(r.report);
  CHECK(r.ok);
}

TEST_CASE("Conv2d accumulates parameter gradients and can skip the input gradient", "[conv2d]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  Conv2d conv(f64_config(2, 3, 3, 1, 1, true), gen);
  const Tensor x = uniform_tensor(Shape{2, 2, 5, 5}, gen);
  const Tensor dy = uniform_tensor(Shape{2, 3, 5, 5}, gen);
  conv.zero_grad();
  conv.forward(x, Mode::Train);
  const Tensor dx = conv.backward(dy).clone();
  const auto w1 = conv.weight().grad.to_vector<double>();
  const auto b1 = conv.bias()->grad.to_vector<double>();

  conv.set_needs_input_grad(false);
  conv.forward(x, Mode::Train);
  CHECK_FALSE(conv.backward(dy).defined());
  const auto w2 = conv.weight().grad.to_vector<double>();
  const auto b2 = conv.bias()->grad.to_vector<double>();
  for (size_t i = 0; i < w1.size(); ++i) CHECK(w2[i] == Approx(2 * w1[i]));
  for (size_t i = 0; i < b1.size(); ++i) CHECK(b2[i] == Approx(2 * b1[i]));

  // The input gradient is overwritten, not accumulated: a second backward returns the same values.
  conv.set_needs_input_grad(true);
  conv.forward(x, Mode::Train);
  const Tensor dx2 = conv.backward(dy);
  const Comparison cmp = compare(dx2, dx, 0.0, 0.0);
  INFO(cmp.report);
  CHECK(cmp.ok);
}

TEST_CASE("Conv2d describe, output shape, flops and parameters", "[conv2d]") {
  Generator gen(1);
  Conv2dConfig cfg;
  cfg.in_channels = 3;
  cfg.out_channels = 64;
  cfg.kernel = 3;
  cfg.stride = 1;
  cfg.pad = 1;
  cfg.bias = false;
  Conv2d conv(cfg, gen);
  CHECK(conv.describe() == "Conv2d(3, 64, k=3, s=1, p=1, bias=False)");
  CHECK(conv.output_shape(Shape{8, 3, 32, 32}) == Shape{8, 64, 32, 32});
  // 2 * N*K*P*Q * C*R*S
  CHECK(conv.forward_flops(Shape{8, 3, 32, 32}) == 2LL * 8 * 64 * 32 * 32 * 3 * 3 * 3);
  CHECK(conv.named_parameters().size() == 1);
  CHECK(conv.bias() == nullptr);

  cfg.bias = true;
  cfg.stride = 2;
  cfg.kernel = 7;
  cfg.pad = 3;
  Conv2d conv2(cfg, gen);
  CHECK(conv2.describe() == "Conv2d(3, 64, k=7, s=2, p=3)");
  CHECK(conv2.output_shape(Shape{2, 3, 9, 9}) == Shape{2, 64, 5, 5});
  CHECK(conv2.forward_flops(Shape{2, 3, 9, 9}) == 2LL * 2 * 64 * 25 * 3 * 49 + 2 * 64 * 25);
  CHECK(conv2.named_parameters().size() == 2);
  // nn.Conv2d default: weight and bias in U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 3*7*7.
  const double bound = 1.0 / std::sqrt(147.0);
  for (float v : conv2.weight().value.to_vector<float>()) REQUIRE(std::fabs(v) <= bound);
  for (float v : conv2.bias()->value.to_vector<float>()) REQUIRE(std::fabs(v) <= bound);
}

TEST_CASE("Conv2d errors name the layer and the shapes", "[conv2d][errors]") {
  Generator gen(1);
  Conv2d conv(f64_config(3, 4, 3, 1, 0, true), gen);
  REQUIRE_THROWS_WITH(conv.forward(Tensor::zeros(Shape{2, 5, 8, 8}, DType::F64), Mode::Train),
                      Catch::Contains("Conv2d") && Catch::Contains("(2, 5, 8, 8)") &&
                          Catch::Contains("(N, 3, H, W)"));
  REQUIRE_THROWS_WITH(conv.output_shape(Shape{2, 3, 2, 8}), Catch::Contains("Conv2d") &&
                                                                Catch::Contains("(2, 3, 2, 8)") &&
                                                                Catch::Contains("3x3"));
  REQUIRE_THROWS_WITH(conv.forward(Tensor::zeros(Shape{2, 3, 8, 8}, DType::F32), Mode::Train),
                      Catch::Contains("Conv2d") && Catch::Contains("float32"));
  conv.forward(Tensor::zeros(Shape{2, 3, 8, 8}, DType::F64), Mode::Train);
  REQUIRE_THROWS_WITH(conv.backward(Tensor::zeros(Shape{2, 4, 8, 8}, DType::F64)),
                      Catch::Contains("Conv2d") && Catch::Contains("(2, 4, 8, 8)") &&
                          Catch::Contains("(2, 4, 6, 6)"));
  Conv2dConfig bad = f64_config(3, 4, 0, 1, 0, true);
  REQUIRE_THROWS_WITH(Conv2d(bad, gen), Catch::Contains("Conv2d") && Catch::Contains("kernel 0"));
}

#include <catch2/catch.hpp>

#include <cmath>

#include "layers/residual.h"
#include "../support/gradcheck.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

std::vector<std::string> parameter_names(Module& m) {
  std::vector<std::string> names;
  for (auto& np : m.named_parameters()) names.push_back(np.name);
  return names;
}

// Moves every BatchNorm's running statistics away from their initial 0/1 with one train-mode
// forward, and its affine parameters away from 1/0, so that eval mode is not the identity.
void make_batchnorms_nontrivial(Module& block, const Tensor& x, Generator& g) {
  block.forward(x, Mode::Train);
  for (auto& np : block.named_parameters())
    if (np.param->value.dim() == 1) np.param->value.copy_(uniform_tensor(np.param->value.shape(), g, 0.5, 1.5));
}

struct BlockCase {
  const char* what;
  bool bottleneck;
  BlockConfig cfg;
  Shape input;
};

std::unique_ptr<Module> make_block(const BlockCase& c, Generator& g) {
  if (c.bottleneck) return std::make_unique<Bottleneck>(c.cfg, g);
  return std::make_unique<BasicBlock>(c.cfg, g);
}

std::unique_ptr<Conv2d> conv(int64_t in, int64_t out, int kernel, int stride, Generator& g, bool bias = false) {
  return std::make_unique<Conv2d>(Conv2dConfig{in, out, kernel, stride, kernel / 2, bias, DType::F64}, g);
}
std::unique_ptr<BatchNorm2d> batchnorm(int64_t channels) {
  return std::make_unique<BatchNorm2d>(BatchNorm2dConfig{channels, 0.1, 1e-5, DType::F64});
}

// Residual(conv -> bn -> tanh -> conv, shortcut): tanh keeps the check free of kinks, so a failure
// can only be the gradient. The projection is conv1x1 (stride) -> bn, named "proj".
std::unique_ptr<Residual> make_residual(int64_t in, int64_t out, int stride, Generator& g) {
  auto main = std::make_unique<Sequential>();
  main->add("conv1", conv(in, out, 3, stride, g));
  main->add("bn1", batchnorm(out));
  main->add("act", std::make_unique<Tanh>());
  main->add("conv2", conv(out, out, 3, 1, g, /*bias=*/true));
  std::unique_ptr<Sequential> shortcut;
  if (stride != 1 || in != out) {
    shortcut = std::make_unique<Sequential>();
    shortcut->add(conv(in, out, 1, stride, g));
    shortcut->add(batchnorm(out));
  }
  return std::make_unique<Residual>(std::move(main), std::move(shortcut), "proj");
}

}  // namespace

TEST_CASE("Residual: backward matches finite differences, identity and projection shortcuts",
          "[residual][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  struct Case {
    const char* what;
    int64_t in, out;
    int stride;
    Shape input;
  };
  // The identity's dx is dx_main + dy itself; the projection's adds the 1x1 conv's and BN's
  // backward. Odd sizes with stride 2 take 7 -> 4 and 5 -> 3 on both branches.
  const std::vector<Case> cases = {
      {"identity shortcut", 3, 3, 1, Shape{2, 3, 5, 4}},
      {"identity shortcut, batch 1", 2, 2, 1, Shape{1, 2, 3, 5}},
      {"projection, stride 2, 2 -> 3 channels", 2, 3, 2, Shape{2, 2, 7, 5}},
      {"projection, stride 1, 3 -> 2 channels", 3, 2, 1, Shape{3, 3, 4, 4}},
  };
  for (const Case& c : cases) {
    for (Mode mode : {Mode::Train, Mode::Eval}) {
      INFO(c.what << " on " << c.input << (mode == Mode::Train ? ", train" : ", eval"));
      auto r = make_residual(c.in, c.out, c.stride, g);
      CHECK((r->shortcut() == nullptr) == (c.stride == 1 && c.in == c.out));
      const Tensor x = uniform_tensor(c.input, g);
      make_batchnorms_nontrivial(*r, x, g);
      GradCheckOptions opt;
      opt.mode = mode;
      const GradCheckResult res = check_gradients(*r, x, seed, opt);
      INFO(res.report);
      CHECK(res.ok);
    }
  }
}

TEST_CASE("Residual: out = main(x) + x and dx = dx_main + dy, by hand", "[residual]") {
  // main = tanh, identity shortcut: out = tanh(x) + x, dL/dx = (1 - tanh(x)^2) dy + dy.
  auto main = std::make_unique<Sequential>();
  main->add(std::make_unique<Tanh>());
  Residual r(std::move(main), nullptr);
  const std::vector<double> xv = {-2.0, -0.5, 0.0, 0.25, 1.5, 3.0};
  const std::vector<double> dyv = {1.0, -2.0, 0.5, 3.0, -1.0, 0.25};
  const Tensor x = Tensor::from_vector(xv, Shape{1, 6});
  const Tensor dy = Tensor::from_vector(dyv, Shape{1, 6});
  const auto y = r.forward(x, Mode::Train).to_vector<double>();
  const Tensor dx = r.backward(dy);
  const auto dxv = dx.to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) {
    const double t = std::tanh(xv[i]);
    CHECK(y[i] == Approx(t + xv[i]).epsilon(1e-15));  // one rounding of the sum
    CHECK(dxv[i] == Approx((1 - t * t) * dyv[i] + dyv[i]).epsilon(1e-15));
  }
  // dx is the Residual's own buffer, overwritten by every backward, not summed into dy.
  CHECK_FALSE(dx.same_data(dy));
  CHECK(dy.to_vector<double>() == dyv);
  CHECK(r.backward(dy).to_vector<double>() == dxv);
}

TEST_CASE("Residual: input gradient overwritten, parameter gradients accumulated", "[residual]") {
  Generator g(test_seed());
  auto r = make_residual(2, 3, 2, g);
  const Tensor x = uniform_tensor(Shape{2, 2, 5, 5}, g);
  const Tensor y = r->forward(x, Mode::Train);
  const Tensor dy = uniform_tensor(y.shape(), g);
  r->zero_grad();
  const auto dx1 = r->backward(dy).to_vector<double>();
  std::vector<std::vector<double>> g1;
  for (auto& np : r->named_parameters()) g1.push_back(np.param->grad.to_vector<double>());
  const auto dx2 = r->backward(dy).to_vector<double>();
  CHECK(dx2 == dx1);
  auto params = r->named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    INFO(params[i].name);
    const auto g2 = params[i].param->grad.to_vector<double>();
    // Twice the first backward's gradient, up to rounding: a layer may add its per-image terms
    // onto the existing sum one by one, which rounds in another order than doubling.
    for (size_t k = 0; k < g2.size(); ++k) CHECK(g2[k] == Approx(2 * g1[i][k]).epsilon(1e-12).margin(1e-14));
  }
}

TEST_CASE("Residual: names, FLOPs and description", "[residual]") {
  Generator g(1);
  auto r = make_residual(2, 3, 2, g);
  // main is transparent: its children sit directly under the Residual; the shortcut has its name.
  CHECK(parameter_names(*r) == std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight",
                                                        "conv2.bias", "proj.0.weight", "proj.1.weight",
                                                        "proj.1.bias"});
  Sequential net;
  Residual& inner = net.add("block", make_residual(3, 3, 1, g));
  CHECK(inner.path() == "block");
  CHECK(inner.main().path() == "block");
  CHECK(parameter_names(net) ==
        std::vector<std::string>{"block.conv1.weight", "block.bn1.weight", "block.bn1.bias", "block.conv2.weight",
                                 "block.conv2.bias"});

  // Both branches plus one addition per output element.
  const Shape in{1, 2, 7, 7};
  const Shape out = r->output_shape(in);
  CHECK(out == Shape{1, 3, 4, 4});
  CHECK(r->forward_flops(in) == r->main().forward_flops(in) + r->shortcut()->forward_flops(in) + out.numel());
  CHECK(inner.forward_flops(Shape{1, 3, 4, 4}) == inner.main().forward_flops(Shape{1, 3, 4, 4}) + 3 * 16);

  CHECK(inner.describe() ==
        "Residual(\n  (main): Sequential(\n    (conv1): Conv2d(3, 3, k=3, s=1, p=1, bias=False)\n"
        "    (bn1): BatchNorm2d(3, eps=1e-05, momentum=0.1)\n    (act): Tanh()\n"
        "    (conv2): Conv2d(3, 3, k=3, s=1, p=1)\n  )\n  (shortcut): identity\n)");
  CHECK_THAT(r->describe(), Catch::Contains("(proj): Sequential(\n    (0): Conv2d(2, 3, k=1, s=2, p=0, bias=False)"));
}

TEST_CASE("Residual: mismatched branches and misuse name the Residual", "[residual][errors]") {
  Generator g(1);
  // An identity shortcut where the main branch changes the channel count.
  auto main = std::make_unique<Sequential>();
  main->add("conv", conv(2, 3, 3, 1, g));
  Residual bad(std::move(main), nullptr);
  REQUIRE_THROWS_WITH(bad.output_shape(Shape{1, 2, 4, 4}),
                      Catch::Contains("Residual") && Catch::Contains("(1, 3, 4, 4)") &&
                          Catch::Contains("(1, 2, 4, 4)") && Catch::Contains("projection"));
  REQUIRE_THROWS_WITH(bad.forward(Tensor::zeros(Shape{1, 2, 4, 4}, DType::F64), Mode::Train),
                      Catch::Contains("Residual") && Catch::Contains("(1, 3, 4, 4)"));

  auto r = make_residual(2, 2, 1, g);
  REQUIRE_THROWS_WITH(r->backward(Tensor::zeros(Shape{1, 2, 4, 4}, DType::F64)),
                      Catch::Contains("Residual") && Catch::Contains("before forward"));
  r->forward(Tensor::zeros(Shape{1, 2, 4, 4}, DType::F64), Mode::Train);
  REQUIRE_THROWS_WITH(r->backward(Tensor::zeros(Shape{1, 2, 4, 3}, DType::F64)),
                      Catch::Contains("Residual") && Catch::Contains("(1, 2, 4, 3)"));

  // A main branch that skips its input gradient cannot feed the sum.
  auto lazy = std::make_unique<Sequential>();
  lazy->add("conv", conv(2, 2, 3, 1, g)).set_needs_input_grad(false);
  Residual skip(std::move(lazy), nullptr);
  const Tensor x = Tensor::zeros(Shape{1, 2, 4, 4}, DType::F64);
  skip.forward(x, Mode::Train);
  REQUIRE_THROWS_WITH(skip.backward(x), Catch::Contains("Residual") && Catch::Contains("main branch") &&
                                            Catch::Contains("no input gradient"));
  REQUIRE_THROWS_WITH(Residual(nullptr, nullptr), Catch::Contains("Residual") && Catch::Contains("main"));
}

TEST_CASE("residual blocks: backward matches finite differences", "[residual][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Few channels keep each check fast; odd spatial sizes, batch 1 and 3; strided blocks on odd
  // sizes exercise the floor in the output size (7 -> 4, 5 -> 3) on both branches.
  const std::vector<BlockCase> cases = {
      {"BasicBlock, identity shortcut", false, {3, 3, 1, DType::F64}, Shape{3, 3, 5, 5}},
      {"BasicBlock, identity shortcut", false, {3, 3, 1, DType::F64}, Shape{1, 3, 7, 5}},
      {"BasicBlock, projection (stride 2, 2 -> 4 channels)", false, {2, 4, 2, DType::F64}, Shape{3, 2, 7, 7}},
      {"BasicBlock, projection (stride 2, 2 -> 4 channels)", false, {2, 4, 2, DType::F64}, Shape{1, 2, 5, 5}},
      {"BasicBlock, projection (stride 1, 3 -> 2 channels)", false, {3, 2, 1, DType::F64}, Shape{1, 3, 5, 5}},
      {"Bottleneck, identity shortcut (in = planes * 4)", true, {8, 2, 1, DType::F64}, Shape{1, 8, 5, 5}},
      {"Bottleneck, identity shortcut (in = planes * 4)", true, {8, 2, 1, DType::F64}, Shape{3, 8, 5, 3}},
      {"Bottleneck, projection (stride 2, 3 -> 8 channels)", true, {3, 2, 2, DType::F64}, Shape{1, 3, 7, 7}},
      {"Bottleneck, projection (stride 2, 3 -> 8 channels)", true, {3, 2, 2, DType::F64}, Shape{3, 3, 5, 5}},
  };
  for (const auto& c : cases) {
    for (Mode mode : {Mode::Train, Mode::Eval}) {
      INFO(c.what << " on " << c.input << (mode == Mode::Train ? ", train" : ", eval"));
      auto block = make_block(c, g);
      const Tensor x = uniform_tensor(c.input, g);
      make_batchnorms_nontrivial(*block, x, g);
      GradCheckOptions opt;
      opt.mode = mode;
      const GradCheckResult r = check_gradients(*block, x, seed, opt);
      INFO(r.report);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("residual blocks: output is relu(main + shortcut), checked by hand", "[residual]") {
  Generator g(test_seed());
  SECTION("identity shortcut: with bn2 = 0 the block is relu(x + beta2)") {
    BasicBlock block({2, 2, 1, DType::F64}, g);
    block.last_bn().weight().value.zero_();
    block.last_bn().bias().value.fill_(0.25);
    const Tensor x = Tensor::from_vector<double>({-1.0, -0.25, 0.5, 2.0, -0.1, 0.0, 3.0, -3.0}, Shape{1, 2, 2, 2});
    const Tensor y = block.forward(x, Mode::Eval);
    // relu(x + 0.25), exact in binary floating point.
    CHECK(y.to_vector<double>() == std::vector<double>{0.0, 0.0, 0.75, 2.25, 0.15, 0.25, 3.25, 0.0});
  }
  SECTION("projection shortcut: with bn3 = 0 the block is relu(BN(conv1x1 stride 2 (x)))") {
    Bottleneck block({2, 1, 2, DType::F64}, g);  // 2 -> 4 channels, stride 2
    block.last_bn().weight().value.zero_();
    // downsample.0 copies input channel k into output channel k (k < 2), channels 2, 3 get 0;
    // downsample.1 in eval mode with running statistics 0/1 divides by sqrt(1 + eps).
    Tensor* ds_weight = nullptr;
    for (auto& np : block.named_parameters())
      if (np.name == "downsample.0.weight") ds_weight = &np.param->value;
    REQUIRE(ds_weight != nullptr);
    ds_weight->copy_(Tensor::from_vector<double>({1, 0, 0, 1, 0, 0, 0, 0}, Shape{4, 2, 1, 1}));
    std::vector<double> xv(2 * 3 * 3);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = (i % 2 ? -1.0 : 1.0) * static_cast<double>(i);
    const Tensor x = Tensor::from_vector<double>(xv, Shape{1, 2, 3, 3});
    const Tensor y = block.forward(x, Mode::Eval);
    REQUIRE(y.shape() == Shape{1, 4, 2, 2});
    const std::vector<double> out = y.to_vector<double>();
    const double s = 1.0 / std::sqrt(1.0 + 1e-5);
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) {
          const double expected = k < 2 ? std::max(0.0, xv[k * 9 + (2 * i) * 3 + 2 * j] * s) : 0.0;
          INFO("k " << k << " i " << i << " j " << j);
          CHECK(out[k * 4 + i * 2 + j] == Approx(expected).epsilon(1e-14));  // one rounding of x*s
        }
  }
}

TEST_CASE("residual blocks: torchvision parameter names and shapes", "[residual]") {
  Generator g(1);
  BasicBlock identity({4, 4, 1}, g);
  CHECK(parameter_names(identity) ==
        std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"});
  BasicBlock projection({4, 8, 2}, g);
  CHECK(parameter_names(projection) ==
        std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias",
                                 "downsample.0.weight", "downsample.1.weight", "downsample.1.bias"});
  Bottleneck bottleneck({16, 8, 2}, g);
  CHECK(parameter_names(bottleneck) ==
        std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias",
                                 "conv3.weight", "bn3.weight", "bn3.bias", "downsample.0.weight",
                                 "downsample.1.weight", "downsample.1.bias"});
  // conv1 1x1 (16 -> 8), conv2 3x3 stride 2 (8 -> 8), conv3 1x1 (8 -> 32), projection 16 -> 32.
  CHECK(bottleneck.parameter_count() == 8 * 16 + 2 * 8 + 8 * 8 * 9 + 2 * 8 + 32 * 8 + 2 * 32 + 32 * 16 + 2 * 32);
  CHECK(bottleneck.output_shape(Shape{2, 16, 7, 7}) == Shape{2, 32, 4, 4});
  CHECK(projection.output_shape(Shape{1, 4, 5, 5}) == Shape{1, 8, 3, 3});
  std::vector<std::string> buffers;
  for (auto& nb : projection.named_buffers()) buffers.push_back(nb.name);
  CHECK(buffers.size() == 9);  // three BNs x (running_mean, running_var, num_batches_tracked)
  CHECK(buffers.back() == "downsample.1.num_batches_tracked");
}

TEST_CASE("residual blocks: Sequential{ Residual(main, downsample), relu_out }", "[residual]") {
  Generator g(1);
  BasicBlock block({4, 8, 2}, g);
  REQUIRE(block.children().size() == 2);
  CHECK(block.children()[0].first.empty());  // the Residual is transparent
  CHECK(block.children()[1].first == "relu_out");
  auto& residual = dynamic_cast<Residual&>(block[0]);
  REQUIRE(residual.shortcut() != nullptr);
  CHECK(residual.shortcut()->path() == "downsample");
  CHECK(&block.last_bn() == &dynamic_cast<Sequential&>(residual.main())[4]);
  CHECK(block.describe() == "BasicBlock(4 -> 8, stride 2, projection shortcut)");
  // conv1 3x3 s2 (4 -> 8) and conv2 3x3 (8 -> 8) on 5x5 -> 3x3, BN 5 and ReLU 1 FLOP per element,
  // the projection, the sum and the output ReLU.
  const int64_t o = 8 * 3 * 3;
  CHECK(block.forward_flops(Shape{1, 4, 5, 5}) ==
        2 * o * 4 * 9 + 5 * o + o + 2 * o * 8 * 9 + 5 * o + 2 * o * 4 + 5 * o + o + o);

  Bottleneck identity({8, 2, 1}, g);
  CHECK(dynamic_cast<Residual&>(identity[0]).shortcut() == nullptr);
  CHECK(identity.describe() == "Bottleneck(8 -> 2 -> 8, stride 1)");
}

TEST_CASE("residual blocks: bad input and configuration name the block", "[residual][errors]") {
  Generator g(1);
  BasicBlock block({4, 4, 1}, g);
  REQUIRE_THROWS_WITH(block.forward(Tensor::zeros(Shape{1, 3, 5, 5}), Mode::Train),
                      Catch::Contains("BasicBlock") && Catch::Contains("(N, 4, H, W)") &&
                          Catch::Contains("(1, 3, 5, 5)"));
  REQUIRE_THROWS_WITH(block.backward(Tensor::zeros(Shape{1, 4, 5, 5})),
                      Catch::Contains("BasicBlock") && Catch::Contains("before forward"));
  REQUIRE_THROWS_WITH(Bottleneck({0, 4, 1}, g), Catch::Contains("Bottleneck") && Catch::Contains("in_channels=0"));
  REQUIRE_THROWS_WITH(BasicBlock({4, 4, 0}, g), Catch::Contains("BasicBlock") && Catch::Contains("stride"));
}

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

}  // namespace

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

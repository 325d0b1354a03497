// BatchNorm2d layer: gradients against float64 finite differences in train and eval mode, running
// statistics and num_batches_tracked by hand, state_dict names, errors naming the layer.
#include <catch2/catch.hpp>

#include "layers/batchnorm.h"
#include "../support/gradcheck.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {
// A float64 BatchNorm2d with random gamma in [0.5, 1.5] and beta in [-1, 1], so that a gradient
// that ignored gamma or beta could not pass by accident (the defaults are 1 and 0).
std::unique_ptr<BatchNorm2d> random_bn(int64_t C, Generator& g, double momentum = 0.1) {
  auto bn = std::make_unique<BatchNorm2d>(BatchNorm2dConfig{C, momentum, 1e-5, DType::F64});
  bn->weight().value.copy_(uniform_tensor(Shape{C}, g, 0.5, 1.5));
  bn->bias().value.copy_(uniform_tensor(Shape{C}, g, -1.0, 1.0));
  return bn;
}
}  // namespace

TEST_CASE("BatchNorm2d train mode: backward matches finite differences", "[batchnorm][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Batch 1 with H*W > 1 (valid in train mode), batch 3, odd spatial sizes, a 1x1 plane.
  for (Shape s : {Shape{1, 3, 5, 7}, Shape{3, 2, 3, 5}, Shape{3, 4, 1, 1}}) {
    auto bn = random_bn(s[1], g);
    // A mean offset and a non-unit spread, so xhat differs from x.
    const Tensor x = normal_tensor(s, g, 2.0);
    const GradCheckResult r = check_gradients(*bn, x, seed);
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("BatchNorm2d eval mode: backward matches finite differences", "[batchnorm][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (Shape s : {Shape{1, 3, 5, 7}, Shape{3, 2, 3, 5}}) {
    auto bn = random_bn(s[1], g, 0.5);
    // One train step on data with mean ~3 and variance ~4 makes the running statistics
    // non-trivial (about 1.5 and 2.5 with momentum 0.5), so eval differs from train.
    Tensor warm = normal_tensor(s, g, 2.0);
    const auto w = warm.to_vector<double>();
    std::vector<double> shifted(w.size());
    for (size_t i = 0; i < w.size(); ++i) shifted[i] = w[i] + 3.0;
    bn->forward(Tensor::from_vector(shifted, s), Mode::Train);
    REQUIRE(bn->running_mean().to_vector<double>()[0] > 0.5);

    const Tensor x = normal_tensor(s, g, 2.0);
    GradCheckOptions opt;
    opt.mode = Mode::Eval;
    const GradCheckResult r = check_gradients(*bn, x, seed, opt);
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("BatchNorm2d running statistics and num_batches_tracked by hand", "[batchnorm]") {
  BatchNorm2d bn(BatchNorm2dConfig{1, 0.1, 1e-5, DType::F64});
  // Values 1..8: mean 4.5, unbiased variance 42/7 = 6 (see the kernel test for the arithmetic).
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8}, Shape{2, 1, 2, 2});
  bn.forward(x, Mode::Train);
  CHECK(bn.running_mean().item<double>() == Approx(0.45).epsilon(1e-14));
  CHECK(bn.running_var().item<double>() == Approx(0.9 + 0.6).epsilon(1e-14));

  Tensor* count = nullptr;
  for (auto& nb : bn.named_buffers())
    if (nb.name == "num_batches_tracked") count = nb.tensor;
  REQUIRE(count != nullptr);
  CHECK(count->item<int32_t>() == 1);

  // Eval changes nothing; a second train step moves both statistics again.
  bn.forward(x, Mode::Eval);
  CHECK(count->item<int32_t>() == 1);
  CHECK(bn.running_mean().item<double>() == Approx(0.45).epsilon(1e-14));
  bn.forward(x, Mode::Train);
  CHECK(count->item<int32_t>() == 2);
  CHECK(bn.running_mean().item<double>() == Approx(0.9 * 0.45 + 0.45).epsilon(1e-14));
  CHECK(bn.running_var().item<double>() == Approx(0.9 * 1.5 + 0.6).epsilon(1e-14));
}

TEST_CASE("BatchNorm2d parameter and buffer names follow torch", "[batchnorm]") {
  BatchNorm2d bn(BatchNorm2dConfig{4});
  std::vector<std::string> params, buffers;
  for (auto& np : bn.named_parameters()) params.push_back(np.name);
  for (auto& nb : bn.named_buffers()) buffers.push_back(nb.name);
  CHECK(params == std::vector<std::string>{"weight", "bias"});
  CHECK(buffers == std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"});
  CHECK(bn.weight().value.to_vector<float>() == std::vector<float>(4, 1.f));
  CHECK(bn.bias().value.to_vector<float>() == std::vector<float>(4, 0.f));
  CHECK(bn.running_var().to_vector<float>() == std::vector<float>(4, 1.f));
  CHECK(bn.describe() == "BatchNorm2d(4, eps=1e-05, momentum=0.1)");
  CHECK(bn.forward_flops(Shape{2, 4, 3, 3}) == 5 * 72);
}

TEST_CASE("BatchNorm2d: wrong input names the layer and the shapes", "[batchnorm][errors]") {
  BatchNorm2d bn(BatchNorm2dConfig{4});
  REQUIRE_THROWS_WITH(bn.forward(Tensor::zeros(Shape{2, 3, 4, 4}), Mode::Train),
                      Catch::Contains("BatchNorm2d") && Catch::Contains("(N, 4, H, W)") &&
                          Catch::Contains("(2, 3, 4, 4)"));
  REQUIRE_THROWS_WITH(bn.forward(Tensor::zeros(Shape{2, 4, 16}), Mode::Eval),
                      Catch::Contains("BatchNorm2d") && Catch::Contains("(2, 4, 16)"));
  REQUIRE_THROWS_WITH(bn.backward(Tensor::zeros(Shape{2, 4, 4, 4})),
                      Catch::Contains("BatchNorm2d") && Catch::Contains("before forward"));
  bn.forward(Tensor::zeros(Shape{2, 4, 4, 4}), Mode::Train);
  REQUIRE_THROWS_WITH(bn.backward(Tensor::zeros(Shape{2, 4, 4, 5})),
                      Catch::Contains("output gradient") && Catch::Contains("(2, 4, 4, 5)") &&
                          Catch::Contains("(2, 4, 4, 4)"));
  REQUIRE_THROWS_WITH(BatchNorm2d(BatchNorm2dConfig{0}), Catch::Contains("channels"));
}

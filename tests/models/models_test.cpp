// The model zoo. Parameter counts, state_dict sizes and convolution multiply-adds come from
// `python3 scripts/param_counts.py` (PyTorch; the ResNets there are torchvision's definitions, and
// the ImageNet-stem counts are torchvision's published ones).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "models/models.h"
#include "../support/gradcheck.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

ModelConfig config(const std::string& name, int classes = 10, bool imagenet_stem = false) {
  ModelConfig c;
  c.name = name;
  c.num_classes = classes;
  c.imagenet_stem = imagenet_stem;
  return c;
}

// Parameters then buffers: the same set of names as PyTorch's state_dict.
std::vector<std::string> state_names(Module& m) {
  std::vector<std::string> names;
  for (auto& np : m.named_parameters()) names.push_back(np.name);
  for (auto& nb : m.named_buffers()) names.push_back(nb.name);
  return names;
}

// Building a 20M-parameter model draws 40M random numbers (the layers' default initialisation, then
// torchvision's); the read-only tests share one instance of each model.
Module& shared_model(const std::string& name, int classes = 10, bool imagenet_stem = false) {
  static std::map<std::string, std::unique_ptr<Module>> models;
  auto& m = models[str(name, "/", classes, imagenet_stem ? "/imagenet" : "")];
  if (!m) m = make_model(config(name, classes, imagenet_stem));
  return *m;
}

Tensor* find_parameter(Module& m, const std::string& name) {
  for (auto& np : m.named_parameters())
    if (np.name == name) return &np.param->value;
  return nullptr;
}

}  // namespace

TEST_CASE("models: parameter counts equal PyTorch's", "[models]") {
  struct Case {
    const char* name;
    int classes;
    bool imagenet_stem;
    int64_t params;
  };
  // scripts/param_counts.py
  const std::vector<Case> cases = {
      {"resnet18", 10, false, 11'173'962},  {"resnet34", 10, false, 21'282'122},
      {"resnet50", 10, false, 23'520'842},  {"resnet18", 1000, true, 11'689'512},  // torchvision resnet18
      {"resnet18", 100, false, 11'220'132}, {"resnet20", 10, false, 272'474},
      {"resnet32", 10, false, 466'906},     {"resnet44", 10, false, 661'338},
      {"resnet56", 10, false, 855'770},     {"resnet110", 10, false, 1'730'714},
      {"resnet56", 100, false, 861'620},    {"alexnet", 10, false, 23'272'266},
      {"alexnet", 100, false, 23'640'996},  {"plain", 10, false, 288'746},
      {"plain", 100, false, 300'356},
  };
  for (const auto& c : cases) {
    INFO(c.name << ", " << c.classes << " classes" << (c.imagenet_stem ? ", imagenet stem" : ""));
    CHECK(shared_model(c.name, c.classes, c.imagenet_stem).parameter_count() == c.params);
  }
}

TEST_CASE("models: resnet18 and resnet50 carry torchvision's state_dict names", "[models]") {
  SECTION("resnet18") {
    Module* m = &shared_model("resnet18");
    const auto names = state_names(*m);
    CHECK(names.size() == 122);  // len(torchvision resnet18().state_dict())
    CHECK(std::set<std::string>(names.begin(), names.end()).size() == names.size());
    const std::vector<std::string> first(names.begin(), names.begin() + 6);
    CHECK(first == std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
                                            "layer1.0.bn1.weight", "layer1.0.bn1.bias"});
    auto params = m->named_parameters();
    CHECK(params[params.size() - 2].name == "fc.weight");
    CHECK(params.back().name == "fc.bias");
    CHECK(params.back().param->value.shape() == Shape{10});
    auto buffers = m->named_buffers();
    CHECK(buffers[0].name == "bn1.running_mean");
    CHECK(buffers[2].name == "bn1.num_batches_tracked");
    CHECK(buffers.back().name == "layer4.1.bn2.num_batches_tracked");
    for (const char* n : {"layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight", "layer4.1.conv2.weight"})
      CHECK(std::count(names.begin(), names.end(), n) == 1);
    CHECK(find_parameter(*m, "layer2.0.downsample.0.weight")->shape() == Shape{128, 64, 1, 1});
    CHECK(find_parameter(*m, "conv1.weight")->shape() == Shape{64, 3, 3, 3});
    CHECK(find_parameter(*m, "layer1.0.downsample.0.weight") == nullptr);  // 64 -> 64, stride 1
  }
  SECTION("resnet50") {
    Module* m = &shared_model("resnet50");
    const auto names = state_names(*m);
    CHECK(names.size() == 320);  // len(torchvision resnet50().state_dict())
    auto params = m->named_parameters();
    CHECK(params[3].name == "layer1.0.conv1.weight");
    CHECK(params.back().name == "fc.bias");
    CHECK(find_parameter(*m, "layer1.0.downsample.0.weight")->shape() == Shape{256, 64, 1, 1});
    CHECK(find_parameter(*m, "layer4.2.conv3.weight")->shape() == Shape{2048, 512, 1, 1});
    CHECK(find_parameter(*m, "fc.weight")->shape() == Shape{10, 2048});
    CHECK(m->named_buffers().back().name == "layer4.2.bn3.num_batches_tracked");
  }
  SECTION("alexnet: torchvision's indexing of features and classifier") {
    Module* m = &shared_model("alexnet");
    std::vector<std::string> params;
    for (auto& np : m->named_parameters()) params.push_back(np.name);
    CHECK(params == std::vector<std::string>{"features.0.weight", "features.0.bias", "features.3.weight",
                                             "features.3.bias", "features.6.weight", "features.6.bias",
                                             "features.8.weight", "features.8.bias", "features.10.weight",
                                             "features.10.bias", "classifier.1.weight", "classifier.1.bias",
                                             "classifier.4.weight", "classifier.4.bias", "classifier.6.weight",
                                             "classifier.6.bias"});
  }
}

TEST_CASE("models: initialisation follows torchvision and the seed", "[models]") {
  ModelConfig c = config("resnet20");
  c.seed = 7;
  auto a = make_model(c);
  auto b = make_model(c);
  c.seed = 8;
  auto other = make_model(c);
  const auto wa = find_parameter(*a, "layer3.2.conv2.weight")->to_vector<float>();
  CHECK(wa == find_parameter(*b, "layer3.2.conv2.weight")->to_vector<float>());
  CHECK(wa != find_parameter(*other, "layer3.2.conv2.weight")->to_vector<float>());
  // kaiming_normal(fan_out, relu): std = sqrt(2 / (64 * 3 * 3)). 36,864 samples give the sample
  // standard deviation within 1% with overwhelming probability (its relative sd is 1/sqrt(2n) = 0.4%).
  double sum2 = 0;
  for (float v : wa) sum2 += static_cast<double>(v) * v;
  CHECK(std::sqrt(sum2 / static_cast<double>(wa.size())) == Approx(std::sqrt(2.0 / (64 * 9))).epsilon(0.01));
  CHECK(find_parameter(*a, "layer3.2.bn2.weight")->to_vector<float>() == std::vector<float>(64, 1.0f));

  c.zero_init_residual = true;
  auto z = make_model(c);
  CHECK(find_parameter(*z, "layer3.2.bn2.weight")->to_vector<float>() == std::vector<float>(64, 0.0f));
  CHECK(find_parameter(*z, "layer3.2.bn1.weight")->to_vector<float>() == std::vector<float>(64, 1.0f));
}

TEST_CASE("models: 32x32 images give (N, classes) logits", "[models]") {
  Generator g(test_seed());
  for (const char* name : {"resnet20", "alexnet", "plain"}) {
    INFO(name);
    Module* m = &shared_model(name);
    CHECK(m->output_shape(Shape{3, 3, 32, 32}) == Shape{3, 10});
    const Tensor x = uniform_tensor(Shape{3, 3, 32, 32}, g, -1, 1, DType::F32);
    const Tensor y = m->forward(x, Mode::Eval);
    CHECK(y.shape() == Shape{3, 10});
    for (float v : y.to_vector<float>()) CHECK(std::isfinite(v));
  }
  // Shapes only for the big ones (forward costs are covered by the resnet18 smoke test).
  CHECK(shared_model("resnet50").output_shape(Shape{2, 3, 32, 32}) == Shape{2, 10});
  CHECK(shared_model("resnet18", 100).output_shape(Shape{2, 3, 32, 32}) == Shape{2, 100});
  CHECK(shared_model("resnet18", 1000, true).output_shape(Shape{2, 3, 224, 224}) == Shape{2, 1000});
}

TEST_CASE("models: resnet18 forward and backward in float32 on the CPU", "[models]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  auto m = make_model(config("resnet18"));
  const Tensor x = uniform_tensor(Shape{2, 3, 32, 32}, g, -1, 1, DType::F32);
  m->zero_grad();
  const Tensor y = m->forward(x, Mode::Train);
  REQUIRE(y.shape() == Shape{2, 10});
  for (float v : y.to_vector<float>()) CHECK(std::isfinite(v));
  const Tensor dy = uniform_tensor(y.shape(), g, -1, 1, DType::F32);
  const Tensor dx = m->backward(dy);
  CHECK_FALSE(dx.defined());  // conv1 skips the image gradient
  // Every parameter tensor receives gradient somewhere, and all of it is finite.
  for (auto& np : m->named_parameters()) {
    INFO(np.name);
    bool nonzero = false, finite = true;
    for (float v : np.param->grad.to_vector<float>()) {
      nonzero = nonzero || v != 0.0f;
      finite = finite && std::isfinite(v);
    }
    CHECK(nonzero);
    CHECK(finite);
  }
}

TEST_CASE("models: whole-network backward of tiny ResNets matches finite differences", "[models][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // The real model classes at toy widths: stem, stages, pooling, flatten and fc all in the chain.
  // conv1 computes no image gradient, so only parameters are checked.
  GradCheckOptions opt;
  opt.check_input = false;
  opt.max_elements = 12;  // many tensors; a dozen elements each keeps the test fast
  SECTION("BasicBlock, CIFAR stem") {
    ResNetConfig c{BlockType::Basic, {1, 2}, {3, 4}, 3, false, false, seed, DType::F64};
    auto m = make_resnet(c);
    const Tensor x = uniform_tensor(Shape{2, 3, 5, 5}, g);
    for (Mode mode : {Mode::Train, Mode::Eval}) {
      opt.mode = mode;
      const GradCheckResult r = check_gradients(*m, x, seed, opt);
      INFO(r.report);
      CHECK(r.ok);
    }
  }
  SECTION("Bottleneck, ImageNet stem (max-pool)") {
    ResNetConfig c{BlockType::Bottleneck, {1, 1}, {2, 2}, 4, true, false, seed, DType::F64};
    auto m = make_resnet(c);
    const Tensor x = uniform_tensor(Shape{3, 3, 9, 9}, g);
    for (Mode mode : {Mode::Train, Mode::Eval}) {
      opt.mode = mode;
      const GradCheckResult r = check_gradients(*m, x, seed, opt);
      INFO(r.report);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("models: summary rows, totals and FLOPs", "[models]") {
  Module* m = &shared_model("resnet18");
  const std::vector<SummaryRow> rows = summary_rows(*m);
  // 3 stem + 8 blocks x (6 layers + the sum row) + 3 projections x 2 + avgpool, flatten, fc.
  CHECK(rows.size() == 68);
  CHECK(rows.front().path == "conv1");
  CHECK(rows.back().path == "fc");
  CHECK(rows.back().output == Shape{1, 10});
  int64_t params = 0, flops = 0, conv_flops = 0;
  for (const auto& r : rows) {
    params += r.params;
    flops += r.flops;
    if (r.description.rfind("Conv2d", 0) == 0) conv_flops += r.flops;
  }
  CHECK(params == 11'173'962);
  CHECK(flops == m->forward_flops(Shape{1, 3, 32, 32}));
  // 555,417,600 convolution multiply-adds per 32x32 image (scripts/param_counts.py), 2 FLOPs each.
  CHECK(conv_flops == 2 * 555'417'600LL);

  const std::string table = model_summary(*m);
  CHECK_THAT(table, Catch::Contains("Total parameters: 11,173,962"));
  CHECK_THAT(table, Catch::Contains("Forward FLOPs per image: 1.1"));
  CHECK_THAT(table, Catch::Contains("layer2.0.downsample.0"));
  // A title, three rules, a header, one line per row and the two totals.
  CHECK(std::count(table.begin(), table.end(), '\n') == static_cast<long>(rows.size()) + 7);

  // The batch size shows in the shapes; FLOPs stay per image.
  const auto rows4 = summary_rows(*m, Shape{4, 3, 32, 32});
  CHECK(rows4.back().output == Shape{4, 10});
  CHECK(rows4.front().flops == rows.front().flops);

  // Bottlenecks and the ImageNet stem's max-pool walk the same way.
  struct Case {
    const char* name;
    int classes;
    bool imagenet_stem;
    int64_t params, conv_macs;  // scripts/param_counts.py, one 32x32 image
  };
  for (const Case& c : {Case{"resnet50", 10, false, 23'520'842, 1'297'809'408},
                        Case{"resnet18", 1000, true, 11'689'512, 37'011'456}}) {
    INFO(c.name << (c.imagenet_stem ? ", imagenet stem" : ""));
    Module& model = shared_model(c.name, c.classes, c.imagenet_stem);
    int64_t p = 0, f = 0, conv = 0;
    for (const auto& r : summary_rows(model)) {
      p += r.params;
      f += r.flops;
      if (r.description.rfind("Conv2d", 0) == 0) conv += r.flops;
    }
    CHECK(p == c.params);
    CHECK(f == model.forward_flops(Shape{1, 3, 32, 32}));
    CHECK(conv == 2 * c.conv_macs);
  }
}

TEST_CASE("models: bad names and options are reported", "[models][errors]") {
  REQUIRE_THROWS_WITH(make_model(config("resnet19")),
                      Catch::Contains("resnet19") && Catch::Contains("resnet18") && Catch::Contains("alexnet") &&
                          Catch::Contains("plain") && Catch::Contains("resnet110"));
  REQUIRE_THROWS_WITH(make_model(config("resnet18", 1)), Catch::Contains("num_classes") && Catch::Contains("1"));
  REQUIRE_THROWS_WITH(make_model(config("resnet20", 10, true)),
                      Catch::Contains("resnet20") && Catch::Contains("ImageNet stem"));
  REQUIRE_THROWS_WITH(make_model(config("alexnet", 10, true)), Catch::Contains("alexnet"));
  ModelConfig c = config("alexnet");
  c.dropout = 1.0;
  REQUIRE_THROWS_WITH(make_model(c), Catch::Contains("dropout"));
  auto m = make_model(config("resnet20"));
  REQUIRE_THROWS_WITH(m->forward(Tensor::zeros(Shape{2, 1, 32, 32}), Mode::Eval),
                      Catch::Contains("ResNet") && Catch::Contains("(2, 1, 32, 32)"));
  CHECK(model_names().size() == 12);
}

// The models' state_dict names, their order and the initial weights are a contract: our
// checkpoints and PyTorch state_dicts are loaded by name, and a seed must keep giving the same
// network. tests/models/data/state_dict_names.txt lists every parameter and buffer (name and shape,
// in named_parameters() then named_buffers() order) as the code before the combinator rewrite of
// the composites (Sequential with named children, Residual) produced them; the checksums below
// were recorded from that same code. Both must only change on purpose.
//
// To rewrite the file after an intended change: MINIDL_WRITE_STATE_NAMES=<path> ./minidl_tests
// "models: state_dict names*" writes the current lists to <path>.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "layers/basic.h"
#include "models/models.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// "P <name> <shape>" per parameter, then "B <name> <shape>" per buffer.
std::vector<std::string> state_lines(Module& m) {
  std::vector<std::string> lines;
  for (auto& np : m.named_parameters()) lines.push_back("P " + np.name + " " + np.param->value.shape().str());
  for (auto& nb : m.named_buffers()) lines.push_back("B " + nb.name + " " + nb.tensor->shape().str());
  return lines;
}

// The golden file: "# <model>" headers, each followed by that model's lines.
std::vector<std::pair<std::string, std::vector<std::string>>> read_golden(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f.good());
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("# ", 0) == 0)
      out.push_back({line.substr(2), {}});
    else if (!line.empty())
      out.back().second.push_back(line);
  }
  return out;
}

// FNV-1a over the values (as doubles: exact for float32 and the int32 batch counters) of every
// parameter and buffer in order, and over the seed of every dropout layer's mask generator.
uint64_t init_checksum(Module& m) {
  uint64_t h = 1469598103934665603ull;
  auto feed = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (auto& np : m.named_parameters()) {
    const std::vector<double> v = to_doubles(np.param->value);
    feed(v.data(), v.size() * sizeof(double));
  }
  for (auto& nb : m.named_buffers()) {
    const std::vector<double> v = to_doubles(*nb.tensor);
    feed(v.data(), v.size() * sizeof(double));
  }
  std::function<void(Module&)> visit = [&](Module& x) {
    if (auto* d = dynamic_cast<Dropout*>(&x)) {
      const uint64_t s = d->generator().seed();
      feed(&s, sizeof s);
    }
    for (auto& [name, child] : x.children()) visit(*child);
  };
  visit(m);
  return h;
}

ModelConfig config(const std::string& name, uint64_t seed, bool imagenet_stem = false) {
  ModelConfig c;
  c.name = name;
  c.seed = seed;
  c.imagenet_stem = imagenet_stem;
  return c;
}

}  // namespace

TEST_CASE("models: state_dict names, shapes and order are unchanged", "[models][state_dict]") {
  const std::string golden_path = std::string(MINIDL_SOURCE_DIR) + "/tests/models/data/state_dict_names.txt";
  // The golden file's models, in its order; "/imagenet" marks the ImageNet stem.
  const std::vector<std::string> models = {"resnet20", "resnet18", "resnet18/imagenet", "resnet50",
                                           "alexnet",  "plain"};
  std::vector<std::pair<std::string, std::vector<std::string>>> actual;
  for (const std::string& key : models) {
    const size_t slash = key.find('/');
    auto m = make_model(config(key.substr(0, slash), 0, slash != std::string::npos));
    actual.push_back({key, state_lines(*m)});
  }
  if (const char* out = std::getenv("MINIDL_WRITE_STATE_NAMES")) {
    std::ofstream f(out);
    for (const auto& [key, lines] : actual) {
      f << "# " << key << '\n';
      for (const auto& l : lines) f << l << '\n';
    }
    WARN("wrote " << out);
    return;
  }
  const auto golden = read_golden(golden_path);
  REQUIRE(golden.size() == actual.size());
  for (size_t i = 0; i < golden.size(); ++i) {
    INFO(actual[i].first);
    REQUIRE(golden[i].first == actual[i].first);
    const auto& want = golden[i].second;
    const auto& got = actual[i].second;
    // The first difference says more than two 300-line lists.
    size_t k = 0;
    while (k < want.size() && k < got.size() && want[k] == got[k]) ++k;
    INFO("first difference at line " << k << ": expected '" << (k < want.size() ? want[k] : "<end>")
                                     << "', got '" << (k < got.size() ? got[k] : "<end>") << "'");
    CHECK(got.size() == want.size());
    CHECK(k == want.size());
  }
}

TEST_CASE("models: a seed gives bit-identical initial weights", "[models][state_dict]") {
  // Checksums recorded before the combinator rewrite. Every constructor draws from one generator
  // in a fixed order (layer defaults, then torchvision's re-initialisation, dropout seeds between
  // AlexNet's linear layers); building the layers in another order changes these.
  struct Case {
    const char* what;
    std::function<std::unique_ptr<Module>()> build;
    uint64_t checksum;
  };
  auto zero_init = [] {
    ModelConfig c = config("resnet20", 1);
    c.zero_init_residual = true;
    return make_model(c);
  };
  // Bottleneck blocks, the ImageNet stem and a projection in every stage, at toy widths.
  auto tiny_bottleneck = [] {
    return make_resnet(ResNetConfig{BlockType::Bottleneck, {2, 1}, {4, 8}, 10, true, false, 1, DType::F32});
  };
  const std::vector<Case> cases = {
      {"resnet20, seed 1", [] { return make_model(config("resnet20", 1)); }, 0xb44a613f32431879ull},
      {"resnet20, seed 1, zero_init_residual", zero_init, 0x38f6a1f1042b2e79ull},
      {"bottleneck ResNet, ImageNet stem, seed 1", tiny_bottleneck, 0x77ca8cc7ce2eddd3ull},
      {"alexnet, seed 1", [] { return make_model(config("alexnet", 1)); }, 0x2db3b70ed6cd77a5ull},
      {"plain, seed 1", [] { return make_model(config("plain", 1)); }, 0xd19fb84193d59cbeull},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    auto m = c.build();
    const uint64_t h = init_checksum(*m);
    INFO("checksum 0x" << std::hex << h);
    CHECK(h == c.checksum);
  }
}

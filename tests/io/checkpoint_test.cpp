// Checkpoints: bit-exact round trip of a model with parameters, buffers and a child, optimizer
// state included, resuming exactly, and strict loading errors that name the tensor.
#include "io/checkpoint.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "../support/test_util.h"
#include "io/safetensors.h"

using namespace minidl;
using namespace minidl::test;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test process (other builds run their tests at the same time), removed
// at exit.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("minidl_checkpoint_test_" + std::to_string(getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
const fs::path& temp_dir() {
  static const TempDir dir;
  return dir.path;
}

// The smallest stateful modules: the test only needs their parameters and buffers.
class Scale : public Module {
 public:
  explicit Scale(int64_t n) : Module("Scale") {
    scale_ = register_parameter("scale", Tensor::full(Shape{n}, 1.0, DType::F64));
  }
  Tensor forward(const Tensor& x, Mode) override { return x; }
  Tensor backward(const Tensor& dy) override { return dy; }
  Shape output_shape(const Shape& in) const override { return in; }
  Parameter* scale_;
};

class TinyNet : public Module {
 public:
  // out x in weight, out bias, an out-sized running_mean buffer, and a child "head" of size out.
  TinyNet(int64_t out, int64_t in, bool extra = false) : Module("TinyNet"), head_(out) {
    weight_ = register_parameter("weight", Tensor::zeros(Shape{out, in}, DType::F64));
    bias_ = register_parameter("bias", Tensor::zeros(Shape{out}, DType::F64));
    if (extra) register_parameter("extra", Tensor::zeros(Shape{2}, DType::F64));
    running_mean_ = register_buffer("running_mean", Tensor::zeros(Shape{out}, DType::F64));
    register_module("head", &head_);
  }
  Tensor forward(const Tensor& x, Mode) override { return x; }
  Tensor backward(const Tensor& dy) override { return dy; }
  Shape output_shape(const Shape& in) const override { return in; }

  // Random values in every parameter and buffer.
  void randomize(Generator& g) {
    for (auto& np : named_parameters())
      np.param->value.copy_(uniform_tensor(np.param->value.shape(), g));
    for (auto& nb : named_buffers()) nb.tensor->copy_(uniform_tensor(nb.tensor->shape(), g));
  }
  std::vector<std::vector<double>> values() {
    std::vector<std::vector<double>> out;
    for (auto& np : named_parameters()) out.push_back(np.param->value.to_vector<double>());
    for (auto& nb : named_buffers()) out.push_back(nb.tensor->to_vector<double>());
    return out;
  }

  Parameter *weight_, *bias_;
  Tensor* running_mean_;
  Scale head_;
};

// A few optimizer steps with random gradients, lr 0.01.
void train_steps(Module& model, Optimizer& opt, Generator& g, int steps) {
  for (int i = 0; i < steps; ++i) {
    model.zero_grad();
    Tensor grads = model.flat_parameters().grads();  // a handle sharing the flat buffer
    grads.copy_(uniform_tensor(grads.shape(), g));
    opt.step(0.01);
  }
}

OptimizerConfig adam_config() {
  OptimizerConfig c;
  c.name = "adam";
  return c;
}

}  // namespace

TEST_CASE("checkpoint round trip is bit-exact and resumes exactly", "[checkpoint]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  TinyNet a(3, 2);
  a.randomize(g);
  auto opt_a = make_optimizer(a.flat_parameters(), adam_config());
  train_steps(a, *opt_a, g, 3);
  TrainState st;
  st.epoch = 7;
  st.global_step = 1234;
  st.best_accuracy = 0.1 + 0.2;  // not a short decimal: must survive the text metadata exactly
  st.best_epoch = 5;
  st.model_name = "tinynet";
  st.config_json = R"({"lr": 0.01, "seed": 42})";
  const std::string path = (temp_dir() / "ckpt.safetensors").string();
  save_checkpoint(path, a, opt_a.get(), st);
  CHECK_FALSE(fs::exists(path + ".tmp"));

  // The file is a state_dict under torch's names plus the optimizer's flat buffers.
  const SafetensorsFile f = load_safetensors(path);
  std::vector<std::string> names;
  for (const auto& [n, t] : f.tensors) names.push_back(n);
  CHECK(names == std::vector<std::string>{"weight", "bias", "head.scale", "running_mean",
                                          "optimizer.exp_avg", "optimizer.exp_avg_sq"});
  CHECK(f.metadata.at("optimizer") == "adam");
  CHECK(f.metadata.at("optimizer_step") == "3");
  CHECK(f.metadata.at("format_version") == std::to_string(kCheckpointFormatVersion));

  TinyNet b(3, 2);
  Generator g2(seed + 1);
  b.randomize(g2);
  auto opt_b = make_optimizer(b.flat_parameters(), adam_config());
  const TrainState got = load_checkpoint(path, b, opt_b.get());
  CHECK(b.values() == a.values());
  CHECK(opt_b->step_count() == 3);
  for (size_t i = 0; i < 2; ++i)
    CHECK(opt_b->state()[i].second.to_vector<double>() ==
          opt_a->state()[i].second.to_vector<double>());
  CHECK(got.epoch == 7);
  CHECK(got.global_step == 1234);
  CHECK(got.best_accuracy == 0.1 + 0.2);
  CHECK(got.best_epoch == 5);
  CHECK(got.model_name == "tinynet");
  CHECK(got.config_json == st.config_json);

  // Both continue identically (the loaded values went into the model's flat buffer).
  Generator ga(seed + 2), gb(seed + 2);
  train_steps(a, *opt_a, ga, 2);
  train_steps(b, *opt_b, gb, 2);
  CHECK(b.values() == a.values());

  // Without an optimizer the model still loads (evaluation), the optimizer tensors are ignored.
  TinyNet c(3, 2);
  load_checkpoint(path, c, nullptr);
  TinyNet d(3, 2);
  load_checkpoint(path, d, nullptr);
  CHECK(c.values() == d.values());
}

TEST_CASE("checkpoint without optimizer state, plain sgd", "[checkpoint]") {
  Generator g(test_seed());
  TinyNet a(2, 2);
  a.randomize(g);
  const std::string path = (temp_dir() / "model_only.safetensors").string();
  save_checkpoint(path, a, nullptr, TrainState{});
  TinyNet b(2, 2);
  OptimizerConfig sgd;
  auto opt = make_optimizer(b.flat_parameters(), sgd);
  load_checkpoint(path, b, opt.get());  // nothing to restore in the optimizer: left as it is
  CHECK(opt->step_count() == 0);
  CHECK(b.values() == a.values());

  // Plain SGD has no state tensors but its step count is restored.
  train_steps(b, *opt, g, 2);
  save_checkpoint(path, b, opt.get(), TrainState{});
  TinyNet c(2, 2);
  auto opt_c = make_optimizer(c.flat_parameters(), sgd);
  load_checkpoint(path, c, opt_c.get());
  CHECK(opt_c->step_count() == 2);
}

TEST_CASE("checkpoint loading is strict and names the tensor", "[checkpoint][errors]") {
  Generator g(test_seed());
  TinyNet a(3, 2);
  a.randomize(g);
  auto opt = make_optimizer(a.flat_parameters(), adam_config());
  const std::string path = (temp_dir() / "strict.safetensors").string();
  save_checkpoint(path, a, opt.get(), TrainState{});

  SECTION("shape mismatch") {
    TinyNet b(3, 4);
    const auto before = b.values();
    REQUIRE_THROWS_WITH(load_checkpoint(path, b, nullptr),
                        Catch::Contains(path) && Catch::Contains("'weight'") &&
                            Catch::Contains("(3, 2)") && Catch::Contains("(3, 4)"));
    CHECK(b.values() == before);  // nothing copied
  }
  SECTION("missing tensor") {
    TinyNet b(3, 2, /*extra=*/true);
    REQUIRE_THROWS_WITH(load_checkpoint(path, b, nullptr),
                        Catch::Contains(path) && Catch::Contains("'extra'") &&
                            Catch::Contains("missing"));
  }
  SECTION("unexpected tensor") {
    TinyNet big(3, 2, /*extra=*/true);
    const std::string path2 = (temp_dir() / "extra.safetensors").string();
    save_checkpoint(path2, big, nullptr, TrainState{});
    TinyNet b(3, 2);
    REQUIRE_THROWS_WITH(load_checkpoint(path2, b, nullptr),
                        Catch::Contains(path2) && Catch::Contains("'extra'") &&
                            Catch::Contains("does not have"));
  }
  SECTION("dtype mismatch") {
    const std::string path2 = (temp_dir() / "f32.safetensors").string();
    NamedTensors t;
    for (auto& np : a.named_parameters()) t.emplace_back(np.name, cast(np.param->value, DType::F32));
    for (auto& nb : a.named_buffers()) t.emplace_back(nb.name, *nb.tensor);
    save_safetensors(path2, t, {{"format", "minidl-checkpoint"}, {"format_version", "1"}});
    TinyNet b(3, 2);
    REQUIRE_THROWS_WITH(load_checkpoint(path2, b, nullptr),
                        Catch::Contains("'weight'") && Catch::Contains("float32") &&
                            Catch::Contains("float64"));
  }
  SECTION("NaN or infinite bfloat16/float16 values are refused, naming the tensor") {
    // A checkpoint holding 16-bit tensors (a converted or foreign file): one NaN in a bfloat16
    // 'weight', one -inf in a float16 'bias'; finite 16-bit tensors pass this check and reach
    // the dtype check.
    for (const int bad : {0, 1, 2}) {
      INFO("bad " << bad);
      Tensor w = cast(a.weight_->value, DType::F32), bias = cast(a.bias_->value, DType::F32);
      if (bad == 1) w.data<float>()[4] = std::numeric_limits<float>::quiet_NaN();
      if (bad == 2) bias.data<float>()[1] = -std::numeric_limits<float>::infinity();
      NamedTensors t;
      for (auto& np : a.named_parameters())
        t.emplace_back(np.name, np.name == "weight" ? cast(w, DType::BF16)
                                : np.name == "bias" ? cast(bias, DType::F16)
                                                    : np.param->value);
      for (auto& nb : a.named_buffers()) t.emplace_back(nb.name, *nb.tensor);
      const std::string path2 = (temp_dir() / "half_nan.safetensors").string();
      save_safetensors(path2, t, {{"format", "minidl-checkpoint"}, {"format_version", "1"}});
      TinyNet b(3, 2);
      const auto before = b.values();
      if (bad == 0) {
        REQUIRE_THROWS_WITH(load_checkpoint(path2, b, nullptr), Catch::Contains("'weight'") &&
                                                                    Catch::Contains("bfloat16") &&
                                                                    !Catch::Contains("NaN"));
      } else {
        REQUIRE_THROWS_WITH(
            load_checkpoint(path2, b, nullptr),
            Catch::Contains("NaN or infinite values in 1 tensor(s)") &&
                Catch::Contains(bad == 1 ? "'weight' (1 of 6 values" : "'bias' (1 of 3 values"));
      }
      CHECK(b.values() == before);
    }
  }
  SECTION("optimizer of another kind") {
    TinyNet b(3, 2);
    OptimizerConfig c;
    c.name = "sgd";
    c.momentum = 0.9;
    auto sgd = make_optimizer(b.flat_parameters(), c);
    const auto before = b.values();
    REQUIRE_THROWS_WITH(load_checkpoint(path, b, sgd.get()),
                        Catch::Contains(path) && Catch::Contains("adam") && Catch::Contains("sgd"));
    CHECK(b.values() == before);
  }
  SECTION("not a checkpoint") {
    const std::string path2 = (temp_dir() / "other.safetensors").string();
    save_safetensors(path2, {{"weight", Tensor::zeros(Shape{3, 2}, DType::F64)}},
                     {{"format", "tf"}});
    TinyNet b(3, 2);
    REQUIRE_THROWS_WITH(load_checkpoint(path2, b, nullptr),
                        Catch::Contains(path2) && Catch::Contains("\"tf\"") &&
                            Catch::Contains("minidl-checkpoint"));
  }
  SECTION("a state_dict without minidl metadata must still be complete") {
    const std::string path2 = (temp_dir() / "plain.safetensors").string();
    save_safetensors(path2, {{"weight", Tensor::zeros(Shape{3, 2}, DType::F64)}});
    TinyNet b(3, 2);
    REQUIRE_THROWS_WITH(load_checkpoint(path2, b, nullptr),
                        Catch::Contains(path2) && Catch::Contains("'bias'") &&
                            Catch::Contains("state_dict"));
  }
}

namespace {

// A module with an int32 buffer, like BatchNorm2d's num_batches_tracked.
class Counted : public Module {
 public:
  Counted() : Module("Counted") {
    weight_ = register_parameter("weight", Tensor::zeros(Shape{2}, DType::F32));
    count_ = register_buffer("num_batches_tracked", Tensor::zeros(Shape{}, DType::I32));
  }
  Tensor forward(const Tensor& x, Mode) override { return x; }
  Tensor backward(const Tensor& dy) override { return dy; }
  Shape output_shape(const Shape& in) const override { return in; }
  Parameter* weight_;
  Tensor* count_;
};

}  // namespace

TEST_CASE("checkpoints store int32 buffers as I64 like torch, and read torch's and older files",
          "[checkpoint][torch]") {
  Counted a;
  a.weight_->value.copy_(Tensor::from_vector(std::vector<float>{1.5f, -2.0f}, Shape{2}));
  a.count_->data<int32_t>()[0] = 391;
  TrainState st;
  st.epoch = 3;
  st.model_name = "counted";
  const std::string path = (temp_dir() / "counted.safetensors").string();
  save_checkpoint(path, a, nullptr, st);

  // As torch's BatchNorm2d holds it: int64. The header says so and the bytes are 8 wide.
  const std::string header = [&] {
    std::ifstream in(path, std::ios::binary);
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    std::string h(n, '\0');
    in.read(h.data(), static_cast<std::streamsize>(n));
    return h;
  }();
  const auto j = nlohmann::json::parse(header);
  CHECK(j.at("num_batches_tracked").at("dtype") == "I64");
  CHECK(j.at("num_batches_tracked").at("data_offsets")[1].get<int>() -
            j.at("num_batches_tracked").at("data_offsets")[0].get<int>() ==
        8);
  CHECK(j.at("weight").at("dtype") == "F32");

  Counted b;
  const TrainState got = load_checkpoint(path, b, nullptr);
  CHECK(got.epoch == 3);
  CHECK(b.count_->data<int32_t>()[0] == 391);
  CHECK(b.weight_->value.to_vector<float>() == std::vector<float>{1.5f, -2.0f});

  SECTION("a state_dict written by safetensors.torch.save_file (metadata format pt) loads") {
    const std::string pt = (temp_dir() / "torch.safetensors").string();
    save_safetensors(pt,
                     {{"weight", Tensor::from_vector(std::vector<float>{3.0f, 4.0f}, Shape{2})},
                      {"num_batches_tracked",
                       Tensor::from_vector(std::vector<int32_t>{7}, Shape{})}},
                     {{"format", "pt"}}, {"num_batches_tracked"});
    Counted c;
    const TrainState s2 = load_checkpoint(pt, c, nullptr);
    CHECK(s2.epoch == 0);  // weights only
    CHECK(c.count_->data<int32_t>()[0] == 7);
    CHECK(c.weight_->value.to_vector<float>() == std::vector<float>{3.0f, 4.0f});
  }
  SECTION("a format-1 checkpoint (int32 buffers stored as I32, before this change) loads") {
    const std::string v1 = (temp_dir() / "v1.safetensors").string();
    save_safetensors(v1,
                     {{"weight", Tensor::from_vector(std::vector<float>{5.0f, 6.0f}, Shape{2})},
                      {"num_batches_tracked",
                       Tensor::from_vector(std::vector<int32_t>{12}, Shape{})}},
                     {{"format", "minidl-checkpoint"},
                      {"format_version", "1"},
                      {"epoch", "4"},
                      {"global_step", "40"},
                      {"best_accuracy", "55.5"},
                      {"best_epoch", "4"},
                      {"model_name", "counted"},
                      {"config_json", "{}"}});
    Counted c;
    const TrainState s1 = load_checkpoint(v1, c, nullptr);
    CHECK(s1.epoch == 4);
    CHECK(s1.best_accuracy == 55.5);
    CHECK(c.count_->data<int32_t>()[0] == 12);
  }
  SECTION("a newer format is refused with both versions named") {
    const std::string v9 = (temp_dir() / "v9.safetensors").string();
    save_safetensors(v9, {}, {{"format", "minidl-checkpoint"}, {"format_version", "9"}});
    Counted c;
    REQUIRE_THROWS_WITH(load_checkpoint(v9, c, nullptr),
                        Catch::Contains("version 9") && Catch::Contains("1 to 3"));
  }
}

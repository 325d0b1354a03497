// Optimizer updates on the GPU against the CPU reference, and an Optimizer whose flat buffers live
// on the GPU.
//
// Inputs are float32; the reference runs the CPU kernel in float64 on the same float32 values.
// Tolerance atol 1e-5 + rtol 1e-5: after 4 steps on O(1) values the float32 kernel differs from
// the float64 reference by a few float32 roundings per step (~1e-7 relative each), and nothing in
// the updates amplifies them except one case avoided by construction: at step 1, Adam and Adagrad
// move each element by about lr * sign(g), so a gradient that rounds to the other sign would be off
// by 2 lr. Weight decays are therefore powers of two, which makes wd * p exact in float32, so
// g = grad + wd * p is rounded once and keeps its sign.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "models/models.h"
#include "optim/optimizer.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

enum class Kind { Sgd, Adam, Adagrad };

struct Case {
  std::string label;
  Kind kind;
  SgdParams sgd{};
  AdamParams adam{};
  AdagradParams adagrad{};
  int states = 0;  // number of state buffers
};

std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({"sgd plain", Kind::Sgd, {0.1, 0.0, 0.0, 0.0, false}, {}, {}, 0});
  c.push_back({"sgd nesterov + weight decay", Kind::Sgd, {0.1, 0.9, 0.0, 0.5, true}, {}, {}, 1});
  c.push_back({"sgd momentum + dampening", Kind::Sgd, {0.1, 0.9, 0.25, 0.0, false}, {}, {}, 1});
  c.push_back({"adam + L2 decay", Kind::Adam, {}, {1e-2, 0.9, 0.999, 1e-8, 0.5, false}, {}, 2});
  c.push_back({"adamw", Kind::Adam, {}, {1e-2, 0.9, 0.999, 1e-8, 0.25, true}, {}, 2});
  c.push_back({"adagrad lr_decay + weight decay", Kind::Adagrad, {}, {}, {0.1, 0.5, 0.5, 1e-10}, 1});
  return c;
}

void apply(const Case& c, Tensor& p, const Tensor& g, std::vector<Tensor>& s, int64_t step) {
  Tensor none;
  switch (c.kind) {
    case Kind::Sgd: sgd_update(p, g, c.states ? s[0] : none, c.sgd, step); break;
    case Kind::Adam: adam_update(p, g, s[0], s[1], c.adam, step); break;
    case Kind::Adagrad: adagrad_update(p, g, s[0], c.adagrad, step); break;
  }
}

}  // namespace

TEST_CASE("optimizer updates on CUDA match the CPU reference", "[cuda][optim][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const Device gpu = Device::cuda(0);
  const float guard = 12345.f;
  // n = 1 and 5: only/partly the scalar tail; 1000003: the vector loop and a 3-element tail.
  // offset 1 shifts every pointer by 4 bytes, so the kernel takes the scalar (unaligned) loop.
  for (int64_t n : {int64_t(1), int64_t(5), int64_t(1000003)}) {
    for (int64_t offset : {int64_t(0), int64_t(1)}) {
      for (const Case& c : cases()) {
        INFO(c.label << ", n " << n << ", offset " << offset);
        const Tensor p0 = uniform_tensor(Shape{n}, gen, -1, 1, DType::F32);
        // Views of the GPU buffers with guard elements around them that must stay untouched.
        auto gpu_view = [&](const Tensor& init, Tensor& whole) {
          whole = Tensor::full(Shape{n + 2}, guard, DType::F32, gpu);
          Tensor v = whole.slice(offset, offset + n);
          v.copy_(init);
          return v;
        };
        std::vector<Tensor> wholes(2 + c.states);
        Tensor p_gpu = gpu_view(p0, wholes[0]);
        Tensor g_gpu = gpu_view(Tensor::zeros(Shape{n}), wholes[1]);
        std::vector<Tensor> s_gpu, s_ref;
        for (int k = 0; k < c.states; ++k) {
          s_gpu.push_back(gpu_view(Tensor::zeros(Shape{n}), wholes[2 + k]));
          s_ref.push_back(Tensor::zeros(Shape{n}, DType::F64));
        }
        Tensor p_ref = cast(p0, DType::F64);

        for (int64_t step = 1; step <= 4; ++step) {
          const Tensor g = uniform_tensor(Shape{n}, gen, -1, 1, DType::F32);
          g_gpu.copy_(g);
          apply(c, p_gpu, g_gpu, s_gpu, step);
          apply(c, p_ref, cast(g, DType::F64), s_ref, step);
        }

        const Comparison cp = compare(p_gpu, p_ref, 1e-5, 1e-5);
        INFO("parameter: " << cp.report);
        CHECK(cp.ok);
        for (int k = 0; k < c.states; ++k) {
          const Comparison cs = compare(s_gpu[k], s_ref[k], 1e-5, 1e-5);
          INFO("state " << k << ": " << cs.report);
          CHECK(cs.ok);
        }
        for (const Tensor& w : wholes) {
          const std::vector<float> all = w.to_vector<float>();
          CHECK(all[static_cast<size_t>(offset + n)] == guard);
          if (offset) CHECK(all[0] == guard);
        }
      }
    }
  }
}

TEST_CASE("Optimizer with flat buffers on CUDA matches the CPU", "[cuda][optim]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const Device gpu = Device::cuda(0);
  constexpr double kLr = 0.01;
  for (const char* name : {"sgd", "adam", "adamw", "adagrad"}) {
    INFO(name);
    OptimizerConfig cfg;
    cfg.name = name;
    cfg.momentum = std::string(name) == "sgd" ? 0.9 : 0.0;
    cfg.weight_decay = 0.5;  // a power of two: see the top of the file
    const Tensor w0 = uniform_tensor(Shape{3, 5}, gen, -1, 1, DType::F32);
    const Tensor b0 = uniform_tensor(Shape{7}, gen, -1, 1, DType::F32);
    Parameter w_gpu{w0.to(gpu), Tensor::zeros(w0.shape(), DType::F32, gpu)};
    Parameter b_gpu{b0.to(gpu), Tensor::zeros(b0.shape(), DType::F32, gpu)};
    Parameter w_ref{cast(w0, DType::F64), Tensor::zeros(w0.shape(), DType::F64)};
    Parameter b_ref{cast(b0, DType::F64), Tensor::zeros(b0.shape(), DType::F64)};
    FlatParameters flat_gpu({{"w", &w_gpu}, {"b", &b_gpu}});
    FlatParameters flat_ref({{"w", &w_ref}, {"b", &b_ref}});
    auto opt_gpu = make_optimizer(flat_gpu, cfg);
    auto opt_ref = make_optimizer(flat_ref, cfg);
    REQUIRE(flat_gpu.values().device() == gpu);
    CHECK(w_gpu.value.same_data(flat_gpu.values()));

    for (int step = 0; step < 3; ++step) {
      flat_gpu.zero_grad();
      flat_ref.zero_grad();
      CHECK(flat_gpu.grads().to_vector<float>() == std::vector<float>(22, 0.f));
      // Gradients written through the parameters' views, as backward does.
      const Tensor gw = uniform_tensor(w0.shape(), gen, -1, 1, DType::F32);
      const Tensor gb = uniform_tensor(b0.shape(), gen, -1, 1, DType::F32);
      w_gpu.grad.copy_(gw);
      b_gpu.grad.copy_(gb);
      w_ref.grad.copy_(cast(gw, DType::F64));
      b_ref.grad.copy_(cast(gb, DType::F64));
      opt_gpu->step(kLr);
      opt_ref->step(kLr);
    }
    const Comparison cw = compare(w_gpu.value, w_ref.value, 1e-5, 1e-5);
    const Comparison cb = compare(b_gpu.value, b_ref.value, 1e-5, 1e-5);
    INFO(cw.report << cb.report);
    CHECK(cw.ok);
    CHECK(cb.ok);
  }
}

TEST_CASE("a model's flat buffers move with model.to(cuda) and back", "[cuda][optim]") {
  // The model owns its flat buffers: moving it moves the two buffers and keeps every parameter a
  // view of its slice, in named_parameters order, with the values unchanged (a copy is exact).
  const Device gpu = Device::cuda(0);
  ModelConfig mc;
  mc.name = "plain";
  mc.seed = 3;
  auto model = make_model(mc);
  FlatParameters& flat = model->flat_parameters();
  const std::vector<float> values = flat.values().to_vector<float>();
  model->to(gpu);
  REQUIRE(flat.values().device() == gpu);
  CHECK(flat.grads().device() == gpu);
  CHECK(flat.values().to_vector<float>() == values);
  const std::vector<NamedParameter> params = model->named_parameters();
  REQUIRE(params.size() == flat.size());
  for (size_t i = 0; i < params.size(); ++i) {
    INFO(params[i].name);
    CHECK(flat.parameters()[i].name == params[i].name);
    CHECK(params[i].param->value.same_data(flat.values().slice(flat.offset(i), flat.offset(i + 1))));
    CHECK(params[i].param->grad.same_data(flat.grads().slice(flat.offset(i), flat.offset(i + 1))));
  }

  // An optimizer made now lives on the GPU; a step there, then the model back on the CPU: the
  // parameters follow, the optimizer's state (made on the GPU) refuses a step on the CPU.
  OptimizerConfig oc;
  oc.momentum = 0.9;
  auto opt = make_optimizer(flat, oc);
  Tensor grads = flat.grads();  // a handle on the model's gradient buffer
  grads.fill_(1.0);
  opt->step(0.5);
  model->to(Device::cpu());
  CHECK(flat.values().device() == Device::cpu());
  CHECK(flat.values().to_vector<float>()[0] == values[0] - 0.5f);
  REQUIRE_THROWS_WITH(opt->step(0.5), Catch::Contains("optimizer state is on cuda:0") &&
                                          Catch::Contains("model.to(device)"));
}

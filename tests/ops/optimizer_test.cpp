// Optimizer updates on every backend of the op (cpu-reference in the CPU suite, cuda-handwritten in
// the CUDA suite) against the float64 cpu-reference, and an Optimizer whose flat buffers live on
// each backend's device. The reference is checked by hand against torch.optim's formulas in
// tests/optim/optimizer_test.cpp.
//
// Inputs are float32; the reference runs in float64 on the same float32 values. Tolerance atol
// 1e-5 + rtol 1e-5 (a float32 bound: every case computes in float32): after 4 steps on O(1) values
// the float32 kernel differs from the float64 reference by a few float32 roundings per step (~1e-7
// relative each), and nothing in the updates amplifies them except one case avoided by
// construction: at step 1, Adam and Adagrad move each element by about lr * sign(g), so a gradient
// that rounds to the other sign would be off by 2 lr. Weight decays are therefore powers of two,
// which makes wd * p exact in float32, so g = grad + wd * p is rounded once and keeps its sign.
// Adam still amplifies rounding where an element's gradients stay small for several steps: its
// step lr m^ / (sqrt(v^) + eps) then divides two small, rounded quantities, and the float32 kernel
// and the float64 reference can differ by a fraction of lr (one element in 10^6 was off by
// 3e-3 lr, seed 110879). Adam's parameters therefore get atol 1e-2 lr elementwise (a wrong formula
// is off by ~lr almost everywhere) and, like every case, a relative L2 error below 1e-5 over the
// whole vector (that run: 3e-7) unless every element is within 1e-6.
#include "kernels/optimizer.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "layers/parameters.h"
#include "optim/optimizer.h"

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
  c.push_back(
      {"adagrad lr_decay + weight decay", Kind::Adagrad, {}, {}, {0.1, 0.5, 0.5, 1e-10}, 1});
  return c;
}

void apply(Backend b, const Case& c, Tensor& p, const Tensor& g, std::vector<Tensor>& s,
           int64_t step) {
  Tensor none;
  switch (c.kind) {
    case Kind::Sgd:
      sgd_update(b, p, g, c.states ? s[0] : none, c.sgd, step);
      break;
    case Kind::Adam:
      adam_update(b, p, g, s[0], s[1], c.adam, step);
      break;
    case Kind::Adagrad:
      adagrad_update(b, p, g, s[0], c.adagrad, step);
      break;
  }
}

}  // namespace

TEST_CASE("optimizer updates: every backend matches the float64 reference",
          "[ops][optim][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const float guard = 12345.f;
  // n = 1 and 5: only/partly the scalar tail; 1000003: the vector loop and a 3-element tail.
  // offset 1 shifts every pointer by one element, so the kernel takes the scalar (unaligned) loop.
  for (const BackendCase& bc : backend_cases(optimizer_op())) {
    for (int64_t n : {int64_t(1), int64_t(5), int64_t(1000003)}) {
      for (int64_t offset : {int64_t(0), int64_t(1)}) {
        for (const Case& c : cases()) {
          INFO(c.label << ", n " << n << ", offset " << offset << ", " << bc.name());
          const Tensor p0 = uniform_tensor(Shape{n}, gen, -1, 1, DType::F32);
          // Views of the buffers with guard elements around them that must stay untouched.
          auto guarded_view = [&](const Tensor& init, Tensor& whole) {
            whole = Tensor::full(Shape{n + 2}, guard, bc.dtype, bc.device);
            Tensor v = whole.slice(offset, offset + n);
            v.copy_(cast(init, bc.dtype));
            return v;
          };
          std::vector<Tensor> wholes(2 + c.states);
          Tensor p = guarded_view(p0, wholes[0]);
          Tensor grad = guarded_view(Tensor::zeros(Shape{n}), wholes[1]);
          std::vector<Tensor> s, s_ref;
          for (int k = 0; k < c.states; ++k) {
            s.push_back(guarded_view(Tensor::zeros(Shape{n}), wholes[2 + k]));
            s_ref.push_back(Tensor::zeros(Shape{n}, DType::F64));
          }
          Tensor p_ref = cast(p0, DType::F64);

          for (int64_t step = 1; step <= 4; ++step) {
            const Tensor g = uniform_tensor(Shape{n}, gen, -1, 1, DType::F32);
            grad.copy_(cast(g, bc.dtype));
            apply(bc.backend, c, p, grad, s, step);
            apply(Backend::CpuReference, c, p_ref, cast(g, DType::F64), s_ref, step);
          }

          // Adam's parameters: see the top of the file for why a rare element may be off by up
          // to ~1e-2 lr; the whole vector must still be within 1e-5 relative L2, or every element
          // within 1e-6 (a one-element parameter near zero has a meaningless relative error).
          const double atol = c.kind == Kind::Adam ? 1e-2 * c.adam.lr : 1e-5;
          const Comparison cp = compare(p, p_ref, atol, 1e-5);
          INFO("parameter: " << cp.report);
          CHECK(cp.ok);
          CHECK((cp.rel_l2_error < 1e-5 || cp.max_abs_error < 1e-6));
          for (int k = 0; k < c.states; ++k) {
            const Comparison cs = compare(s[k], s_ref[k], 1e-5, 1e-5);
            INFO("state " << k << ": " << cs.report);
            CHECK(cs.ok);
          }
          for (const Tensor& w : wholes) {
            const std::vector<double> all = to_doubles(w);
            CHECK(all[static_cast<size_t>(offset + n)] == guard);
            if (offset) CHECK(all[0] == guard);
          }
        }
      }
    }
  }
}

TEST_CASE("Optimizer with flat buffers on every backend matches the float64 optimizer",
          "[ops][optim][layers]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  constexpr double kLr = 0.01;
  for (const BackendCase& c : backend_cases(optimizer_op())) {
    // The optimizer selects its backend from the device's settings, as in a training run.
    ScopedDeviceSettings settings(settings_selecting(c.backend));
    for (const char* name : {"sgd", "adam", "adamw", "adagrad"}) {
      INFO(name << ", " << c.name());
      OptimizerConfig cfg;
      cfg.name = name;
      cfg.momentum = std::string(name) == "sgd" ? 0.9 : 0.0;
      cfg.weight_decay = 0.5;  // a power of two: see the top of the file
      const Tensor w0 = uniform_tensor(Shape{3, 5}, gen, -1, 1, DType::F32);
      const Tensor b0 = uniform_tensor(Shape{7}, gen, -1, 1, DType::F32);
      Parameter w{to_case(c, w0), Tensor::zeros(w0.shape(), c.dtype, c.device)};
      Parameter b{to_case(c, b0), Tensor::zeros(b0.shape(), c.dtype, c.device)};
      Parameter w_ref{cast(w0, DType::F64), Tensor::zeros(w0.shape(), DType::F64)};
      Parameter b_ref{cast(b0, DType::F64), Tensor::zeros(b0.shape(), DType::F64)};
      FlatParameters flat({{"w", &w}, {"b", &b}});
      FlatParameters flat_ref({{"w", &w_ref}, {"b", &b_ref}});
      auto opt = make_optimizer(flat, cfg);
      auto opt_ref = make_optimizer(flat_ref, cfg);
      REQUIRE(flat.values().device() == c.device);
      CHECK(w.value.same_data(flat.values()));

      for (int step = 0; step < 3; ++step) {
        flat.zero_grad();
        flat_ref.zero_grad();
        CHECK(to_doubles(flat.grads()) == std::vector<double>(22, 0.0));
        // Gradients written through the parameters' views, as backward does.
        const Tensor gw = uniform_tensor(w0.shape(), gen, -1, 1, DType::F32);
        const Tensor gb = uniform_tensor(b0.shape(), gen, -1, 1, DType::F32);
        w.grad.copy_(cast(gw, c.dtype));
        b.grad.copy_(cast(gb, c.dtype));
        w_ref.grad.copy_(cast(gw, DType::F64));
        b_ref.grad.copy_(cast(gb, DType::F64));
        opt->step(kLr);
        opt_ref->step(kLr);
      }
      const Comparison cw = compare(w.value, w_ref.value, 1e-5, 1e-5);
      const Comparison cb = compare(b.value, b_ref.value, 1e-5, 1e-5);
      INFO(cw.report << cb.report);
      CHECK(cw.ok);
      CHECK(cb.ok);
    }
  }
}

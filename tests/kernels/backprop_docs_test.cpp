// The worked examples of docs/backprop/*.md are recomputed here with the op table's kernel
// functions (float64, CPU), so that the derivations and the code cannot drift apart.
//
// An example is a fenced block in the Markdown:
//
//   ```example relu
//   x  = -1.5 0.5 2          inputs and outputs, one named list of numbers per line
//   dy = 0.1 -0.2 0.3
//   y  = 0 0.5 2
//   dx = 0 -0.2 0.3
//   ```
//
// Each example name below reads the inputs it needs from the block, computes its outputs with the
// kernels, and checks every output against the block's numbers, which are printed to 6 significant
// digits: |doc - computed| <= 5e-6 |computed| + 1e-12 (half a unit in the 6th digit, relative).
// Every registered example must appear in the docs and every example in the docs must be known, so
// neither side can lose one silently. MINIDL_PRINT_DOC_EXAMPLES=1 prints the computed outputs in
// the block format (for writing a new example).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "autograd/ops.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/dropout.h"
#include "kernels/linear.h"
#include "kernels/optimizer.h"
#include "kernels/pooling.h"
#include "kernels/softmax_xent.h"
#include "optim/schedule.h"

using namespace minidl;
namespace fs = std::filesystem;

namespace {

using Values = std::map<std::string, std::vector<double>>;

struct Example {
  std::string file, name;
  Values values;
};

std::vector<Example> read_examples() {
  std::vector<Example> out;
  for (const auto& entry : fs::directory_iterator(fs::path(MINIDL_SOURCE_DIR) / "docs/backprop")) {
    if (entry.path().extension() != ".md") continue;
    std::ifstream f(entry.path());
    std::string line;
    Example* cur = nullptr;
    while (std::getline(f, line)) {
      if (!cur && line.rfind("```example ", 0) == 0) {
        out.push_back({entry.path().filename().string(), line.substr(11), {}});
        cur = &out.back();
      } else if (cur && line.rfind("```", 0) == 0) {
        cur = nullptr;
      } else if (cur) {
        const auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        std::string key = line.substr(0, eq);
        key.erase(key.find_last_not_of(' ') + 1);
        std::istringstream ss(line.substr(eq + 1));
        std::vector<double> v;
        for (double d; ss >> d;) v.push_back(d);
        cur->values[key] = v;
      }
    }
  }
  return out;
}

Tensor T(const std::vector<double>& v, const Shape& s) {
  REQUIRE(static_cast<int64_t>(v.size()) == s.numel());
  return Tensor::from_vector<double>(v, s);
}
std::vector<double> V(const Tensor& t) { return t.to_vector<double>(); }
Shape S1(const std::vector<double>& v) { return Shape{static_cast<int64_t>(v.size())}; }

struct Ctx {
  const Values& in;
  Values out;
  const std::vector<double>& operator[](const std::string& k) const {
    auto it = in.find(k);
    INFO("the example has no input '" << k << "'");
    REQUIRE(it != in.end());
    return it->second;
  }
  double scalar(const std::string& k) const { return (*this)[k].at(0); }
};

void activation_example(Ctx& c, Activation act, double slope) {
  const Tensor x = T(c["x"], S1(c["x"])), dy = T(c["dy"], S1(c["dy"]));
  Tensor y = Tensor::empty(x.shape(), DType::F64), dx = Tensor::empty(x.shape(), DType::F64);
  activation_forward(y, x, act, slope);
  activation_backward(dx, dy, x, y, act, slope);
  c.out["y"] = V(y);
  c.out["dx"] = V(dx);
}

// Two optimizer steps from p with gradients g1, g2 (the optimizer op of the op table).
template <typename Step>
void two_steps(Ctx& c, int state_tensors, Step step) {
  Tensor p = T(c["p"], S1(c["p"]));
  std::vector<Tensor> state;
  for (int i = 0; i < state_tensors; ++i) state.push_back(Tensor::zeros(p.shape(), DType::F64));
  step(p, T(c["g1"], p.shape()), state, 1);
  c.out["p1"] = V(p);
  step(p, T(c["g2"], p.shape()), state, 2);
  c.out["p2"] = V(p);
}

std::vector<double> lrs(Ctx& c, ScheduleConfig cfg) {
  cfg.base_lr = c.scalar("base_lr");
  const LrSchedule s(cfg);
  std::vector<double> out;
  for (double e : c["epochs"]) out.push_back(s.lr_at(e));
  return out;
}

const std::map<std::string, std::function<void(Ctx&)>>& examples() {
  static const std::map<std::string, std::function<void(Ctx&)>> m{
      {"relu", [](Ctx& c) { activation_example(c, Activation::ReLU, 0); }},
      {"leaky_relu", [](Ctx& c) { activation_example(c, Activation::LeakyReLU, c.scalar("slope")); }},
      {"sigmoid", [](Ctx& c) { activation_example(c, Activation::Sigmoid, 0); }},
      {"tanh", [](Ctx& c) { activation_example(c, Activation::Tanh, 0); }},
      {"maxpool2d",
       [](Ctx& c) {
         const Tensor x = T(c["x"], Shape{1, 1, 4, 4});
         const Pool2dParams p{2, 2, 0};
         Tensor y = Tensor::empty(Shape{1, 1, 2, 2}, DType::F64);
         Tensor arg = Tensor::empty(Shape{1, 1, 2, 2}, DType::I32);
         maxpool2d_forward(y, arg, x, p);
         Tensor dx = Tensor::empty(x.shape(), DType::F64);
         maxpool2d_backward(dx, T(c["dy"], y.shape()), x, y, arg, p);
         c.out["y"] = V(y);
         c.out["dx"] = V(dx);
       }},
      {"avgpool2d",
       [](Ctx& c) {
         const Tensor x = T(c["x"], Shape{1, 1, 3, 3});
         const Pool2dParams p{2, 1, 1};  // k 2, s 1, pad 1: padded zeros are counted
         Tensor y = Tensor::empty(Shape{1, 1, 4, 4}, DType::F64);
         avgpool2d_forward(y, x, p);
         Tensor dx = Tensor::empty(x.shape(), DType::F64);
         avgpool2d_backward(dx, T(c["dy"], y.shape()), p);
         c.out["y"] = V(y);
         c.out["dx"] = V(dx);
       }},
      {"global_avgpool",
       [](Ctx& c) {
         const Tensor x = T(c["x"], Shape{1, 2, 2, 2});
         Tensor y = Tensor::empty(Shape{1, 2, 1, 1}, DType::F64);
         global_avgpool_forward(y, x);
         Tensor dx = Tensor::empty(x.shape(), DType::F64);
         global_avgpool_backward(dx, T(c["dy"], y.shape()));
         c.out["y"] = V(y);
         c.out["dx"] = V(dx);
       }},
      {"linear",
       [](Ctx& c) {
         const Tensor x = T(c["x"], Shape{2, 3}), w = T(c["w"], Shape{2, 3}), b = T(c["b"], Shape{2});
         Tensor y = Tensor::empty(Shape{2, 2}, DType::F64);
         linear_forward(y, x, w, &b);
         Tensor dx = Tensor::empty(x.shape(), DType::F64);
         Tensor dw = Tensor::zeros(w.shape(), DType::F64), db = Tensor::zeros(b.shape(), DType::F64);
         linear_backward(&dx, dw, &db, T(c["dy"], y.shape()), x, w);
         c.out["y"] = V(y);
         c.out["dx"] = V(dx);
         c.out["dw"] = V(dw);
         c.out["db"] = V(db);
       }},
      {"residual",
       [](Ctx& c) {
         // out = tanh(x) + x on the tape: x fans out to the main branch and the shortcut.
         ag::Var x(T(c["x"], S1(c["x"])), true, "x");
         ag::Var out = ag::add(ag::tanh(x), x);
         out.backward({.seed = T(c["dout"], S1(c["x"]))});
         c.out["out"] = V(out.value());
         c.out["dx"] = V(x.grad());
       }},
      {"flatten",
       [](Ctx& c) {
         ag::Var x(T(c["x"], Shape{2, 2, 1, 2}), true, "x");
         ag::Var y = ag::flatten(x);
         y.backward({.seed = T(c["dy"], Shape{2, 4})});
         c.out["shape"] = {double(y.shape()[0]), double(y.shape()[1])};
         c.out["dx"] = V(x.grad());
       }},
      {"dropout",
       [](Ctx& c) {
         const Tensor x = T(c["x"], S1(c["x"]));
         const double p = c.scalar("p");
         Tensor y = Tensor::empty(x.shape(), DType::F64), dx = Tensor::empty(x.shape(), DType::F64);
         Tensor mask = Tensor::empty(x.shape(), DType::U8);
         dropout_forward(y, mask, x, p, uint64_t(c.scalar("seed")), 0);
         dropout_backward(dx, T(c["dy"], x.shape()), mask, p);
         std::vector<double> mk;
         for (uint8_t v : mask.to_vector<uint8_t>()) mk.push_back(v);
         c.out["mask"] = mk;
         c.out["y"] = V(y);
         c.out["dx"] = V(dx);
       }},
      {"cross_entropy_smoothed",
       [](Ctx& c) {
         const Tensor z = T(c["z"], Shape{2, 3});
         std::vector<int32_t> t;
         for (double v : c["t"]) t.push_back(int32_t(v));
         const Tensor labels = Tensor::from_vector<int32_t>(t, Shape{2});
         const double eps = c.scalar("eps");
         Tensor loss = Tensor::empty(Shape{1}, DType::F64), p = Tensor::empty(z.shape(), DType::F64);
         Tensor correct = Tensor::empty(Shape{1}, DType::I32);
         softmax_xent_forward(loss, p, correct, z, labels, eps);
         Tensor dz = Tensor::empty(z.shape(), DType::F64);
         softmax_xent_backward(dz, p, labels, eps);
         c.out["p"] = V(p);
         c.out["loss"] = V(loss);
         c.out["dz"] = V(dz);
       }},
      {"conv2d",
       [](Ctx& c) {
         const Tensor x = T(c["x"], Shape{1, 1, 3, 3}), w = T(c["w"], Shape{1, 1, 2, 2});
         const Tensor b = T(c["b"], Shape{1});
         const Conv2dParams p{1, 0};
         Tensor y = Tensor::empty(Shape{1, 1, 2, 2}, DType::F64);
         conv2d_forward(y, x, w, &b, p);
         const Tensor dy = T(c["dy"], y.shape());
         Tensor dx = Tensor::empty(x.shape(), DType::F64);
         Tensor dw = Tensor::zeros(w.shape(), DType::F64), db = Tensor::zeros(b.shape(), DType::F64);
         conv2d_backward_data(dx, dy, w, p);
         conv2d_backward_weight(dw, dy, x, p);
         conv2d_backward_bias(db, dy);
         c.out["y"] = V(y);
         c.out["dx"] = V(dx);
         c.out["dw"] = V(dw);
         c.out["db"] = V(db);
       }},
      {"batchnorm_train",
       [](Ctx& c) {
         const Tensor x = T(c["x"], Shape{1, 1, 2, 2});
         const Tensor g = T(c["gamma"], Shape{1}), b = T(c["beta"], Shape{1});
         const BatchNormParams bp{0.1, c.scalar("eps")};
         Tensor y = Tensor::empty(x.shape(), DType::F64), dx = Tensor::empty(x.shape(), DType::F64);
         Tensor mean = Tensor::empty(Shape{1}, DType::F64), invstd = Tensor::empty(Shape{1}, DType::F64);
         Tensor rm = Tensor::zeros(Shape{1}, DType::F64), rv = Tensor::full(Shape{1}, 1.0, DType::F64);
         batchnorm_forward_train(y, mean, invstd, rm, rv, x, g, b, bp);
         Tensor dg = Tensor::zeros(Shape{1}, DType::F64), db = Tensor::zeros(Shape{1}, DType::F64);
         batchnorm_backward_train(dx, dg, db, T(c["dy"], x.shape()), x, g, mean, invstd, bp);
         c.out["y"] = V(y);
         c.out["dx"] = V(dx);
         c.out["dgamma"] = V(dg);
         c.out["dbeta"] = V(db);
       }},
      {"batchnorm_eval",
       [](Ctx& c) {
         const Tensor x = T(c["x"], Shape{1, 2, 1, 2});
         const Tensor g = T(c["gamma"], Shape{2}), b = T(c["beta"], Shape{2});
         const Tensor m = T(c["running_mean"], Shape{2}), v = T(c["running_var"], Shape{2});
         const BatchNormParams bp{0.1, c.scalar("eps")};
         Tensor y = Tensor::empty(x.shape(), DType::F64), dx = Tensor::empty(x.shape(), DType::F64);
         batchnorm_forward_eval(y, x, g, b, m, v, bp);
         Tensor dg = Tensor::zeros(Shape{2}, DType::F64), db = Tensor::zeros(Shape{2}, DType::F64);
         batchnorm_backward_eval(dx, dg, db, T(c["dy"], x.shape()), x, g, m, v, bp);
         c.out["y"] = V(y);
         c.out["dx"] = V(dx);
         c.out["dgamma"] = V(dg);
         c.out["dbeta"] = V(db);
       }},
      {"sgd_momentum",
       [](Ctx& c) {
         const SgdParams sp{c.scalar("lr"), c.scalar("momentum"), 0.0, c.scalar("weight_decay"), false};
         two_steps(c, 1, [&](Tensor& p, const Tensor& g, std::vector<Tensor>& s, int t) {
           sgd_update(p, g, s[0], sp, t);
         });
       }},
      {"sgd_nesterov",
       [](Ctx& c) {
         const SgdParams sp{c.scalar("lr"), c.scalar("momentum"), 0.0, c.scalar("weight_decay"), true};
         two_steps(c, 1, [&](Tensor& p, const Tensor& g, std::vector<Tensor>& s, int t) {
           sgd_update(p, g, s[0], sp, t);
         });
       }},
      {"adam",
       [](Ctx& c) {
         const AdamParams ap{c.scalar("lr"), c.scalar("beta1"), c.scalar("beta2"), c.scalar("eps"),
                             c.scalar("weight_decay"), false};
         two_steps(c, 2, [&](Tensor& p, const Tensor& g, std::vector<Tensor>& s, int t) {
           adam_update(p, g, s[0], s[1], ap, t);
         });
       }},
      {"adamw",
       [](Ctx& c) {
         const AdamParams ap{c.scalar("lr"), c.scalar("beta1"), c.scalar("beta2"), c.scalar("eps"),
                             c.scalar("weight_decay"), true};
         two_steps(c, 2, [&](Tensor& p, const Tensor& g, std::vector<Tensor>& s, int t) {
           adam_update(p, g, s[0], s[1], ap, t);
         });
       }},
      {"adagrad",
       [](Ctx& c) {
         const AdagradParams ap{c.scalar("lr"), c.scalar("lr_decay"), c.scalar("weight_decay"),
                                c.scalar("eps")};
         two_steps(c, 1, [&](Tensor& p, const Tensor& g, std::vector<Tensor>& s, int t) {
           adagrad_update(p, g, s[0], ap, t);
         });
       }},
      {"schedule_step",
       [](Ctx& c) {
         ScheduleConfig s{.name = "step"};
         s.step_size = int(c.scalar("step_size"));
         s.gamma = c.scalar("gamma");
         c.out["lr"] = lrs(c, s);
       }},
      {"schedule_multistep",
       [](Ctx& c) {
         ScheduleConfig s{.name = "multistep"};
         for (double m : c["milestones"]) s.milestones.push_back(int(m));
         s.gamma = c.scalar("gamma");
         c.out["lr"] = lrs(c, s);
       }},
      {"schedule_cosine",
       [](Ctx& c) {
         ScheduleConfig s{.name = "cosine"};
         s.total_epochs = int(c.scalar("total_epochs"));
         s.min_lr = c.scalar("min_lr");
         c.out["lr"] = lrs(c, s);
       }},
      {"schedule_warmup_cosine",
       [](Ctx& c) {
         ScheduleConfig s{.name = "cosine"};
         s.total_epochs = int(c.scalar("total_epochs"));
         s.warmup_epochs = c.scalar("warmup_epochs");
         s.warmup_start_factor = c.scalar("warmup_start_factor");
         c.out["lr"] = lrs(c, s);
       }},
  };
  return m;
}

std::string format(const std::vector<double>& v) {
  std::string s;
  for (double d : v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", d == 0 ? 0.0 : d);  // no "-0"
    s += (s.empty() ? "" : " ") + std::string(buf);
  }
  return s;
}

}  // namespace

TEST_CASE("docs/backprop: every worked example's numbers are what the kernels compute", "[docs]") {
  const std::vector<Example> all = read_examples();
  const bool print = std::getenv("MINIDL_PRINT_DOC_EXAMPLES") != nullptr;
  std::set<std::string> seen;
  for (const Example& ex : all) {
    INFO(ex.file << ": example " << ex.name);
    auto it = examples().find(ex.name);
    REQUIRE(it != examples().end());  // an example the test does not know
    CHECK(seen.insert(ex.name).second);
    Ctx c{ex.values, {}};
    it->second(c);
    for (const auto& [key, computed] : c.out) {
      INFO("output " << key << ": computed " << format(computed));
      if (print) std::printf("%s %s = %s\n", ex.name.c_str(), key.c_str(), format(computed).c_str());
      auto doc = ex.values.find(key);
      if (print && doc == ex.values.end()) continue;
      REQUIRE(doc != ex.values.end());  // every output is written in the doc
      const std::vector<double>& d = doc->second;
      REQUIRE(d.size() == computed.size());
      for (size_t i = 0; i < d.size(); ++i) {
        INFO("element " << i << ": doc " << d[i]);
        CHECK(std::fabs(d[i] - computed[i]) <= 5.0001e-6 * std::fabs(computed[i]) + 1e-12);
      }
    }
  }
  for (const auto& [name, f] : examples()) {
    INFO("example " << name << " is registered here but missing from docs/backprop/");
    CHECK(seen.count(name) == 1);
  }
}

// Optimizers against hand computations of torch.optim's formulas (kernels/optimizer.h), step(lr),
// the update of the flat parameter buffers, hyper-parameter checks, the registry and state
// save/load. The flat buffers themselves are tested in tests/layers/parameters_test.cpp.
//
// Every hand case uses one 2-element float64 parameter p = (1, -2) and the gradient sequence
//   g1 = (0.5, -1),  g2 = (0.25, 2),  g3 = (-1, 0.5).
// Expected values are the formulas evaluated by hand (intermediate values in the comments); they
// are compared with a relative tolerance of 1e-12 because the test's decimal constants and the
// kernel's order of operations round differently in the last bits of a double.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "optim/optimizer.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

const std::vector<std::vector<double>> kGrads = {{0.5, -1.0}, {0.25, 2.0}, {-1.0, 0.5}};

// A parameter the test owns (no Module needed: the optimizer sees only the flat buffers).
Parameter make_param(const std::vector<double>& v, DType dtype = DType::F64) {
  Parameter p;
  p.value = cast(Tensor::from_vector(v, Shape{static_cast<int64_t>(v.size())}), dtype);
  p.grad = Tensor::zeros(p.value.shape(), dtype);
  return p;
}

// Runs `steps` steps of the optimizer described by cfg with learning rate lr from p = (1, -2)
// and returns p.
std::vector<double> run(const OptimizerConfig& cfg, double lr, int steps = 3) {
  Parameter p = make_param({1.0, -2.0});
  FlatParameters flat({{"w", &p}});
  auto opt = make_optimizer(flat, cfg);
  for (int t = 0; t < steps; ++t) {
    flat.zero_grad();
    p.grad.copy_(Tensor::from_vector(kGrads[t], Shape{2}));
    opt->step(lr);
  }
  CHECK(opt->step_count() == steps);
  return p.value.to_vector<double>();
}

void check_values(const std::vector<double>& got, const std::vector<double>& expected) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == Approx(expected[i]).epsilon(1e-12));
  }
}

OptimizerConfig sgd(double momentum = 0, double dampening = 0, double wd = 0,
                    bool nesterov = false) {
  OptimizerConfig c;
  c.name = "sgd";
  c.momentum = momentum;
  c.dampening = dampening;
  c.weight_decay = wd;
  c.nesterov = nesterov;
  return c;
}

}  // namespace

TEST_CASE("sgd matches hand computation", "[optim]") {
  SECTION("plain: p -= lr g") {
    // p = (1, -2) - 0.1 (g1 + g2 + g3) = (1, -2) - 0.1 (-0.25, 1.5)
    check_values(run(sgd(), 0.1), {1.025, -2.15});
  }
  SECTION("momentum 0.9: buf = g at t = 1, then 0.9 buf + g") {
    // buf1 = (0.5, -1)           p1 = (0.95, -1.9)
    // buf2 = (0.7, 1.1)          p2 = (0.88, -2.01)
    // buf3 = (-0.37, 1.49)       p3 = (0.917, -2.159)
    check_values(run(sgd(0.9), 0.1), {0.917, -2.159});
  }
  SECTION("dampening 0.5: buf = g at t = 1 (undampened), then 0.9 buf + 0.5 g") {
    // buf1 = (0.5, -1)           p1 = (0.95, -1.9)     [(1 - d) g would give p1 = (0.975, -1.95)]
    // buf2 = (0.575, 0.1)        p2 = (0.8925, -1.91)
    // buf3 = (0.0175, 0.34)      p3 = (0.89075, -1.944)
    check_values(run(sgd(0.9, 0.5), 0.1), {0.89075, -1.944});
  }
  SECTION("nesterov: p -= lr (g + 0.9 buf)") {
    // buf as for momentum 0.9. g + 0.9 buf: t1 (0.95, -1.9), t2 (0.88, 2.99), t3 (-1.333, 1.841)
    // p3 = (1, -2) - 0.1 (0.497, 2.931)
    check_values(run(sgd(0.9, 0.0, 0.0, true), 0.1), {0.9503, -2.2931});
  }
  SECTION("weight decay 0.1: g = grad + 0.1 p") {
    // g1 = (0.6, -1.2)        p1 = (0.94, -1.88)
    // g2 = (0.344, 1.812)     p2 = (0.9056, -2.0612)
    // g3 = (-0.90944, 0.29388)  p3 = (0.996544, -2.090588)
    check_values(run(sgd(0.0, 0.0, 0.1), 0.1), {0.996544, -2.090588});
  }
  SECTION("nesterov, momentum 0.5 and weight decay 0.1 together") {
    // g1 = (0.6, -1.2)         buf1 = (0.6, -1.2)         step (0.9, -1.8)      p1 = (0.91, -1.82)
    // g2 = (0.341, 1.818)      buf2 = (0.641, 1.218)      step (0.6615, 2.427)  p2 = (0.84385, -2.0627)
    // g3 = (-0.915615, 0.29373) buf3 = (-0.595115, 0.90273)
    //                          step (-1.2131725, 0.744995) p3 = (0.96516725, -2.1372095)
    check_values(run(sgd(0.5, 0.0, 0.1, true), 0.1), {0.96516725, -2.1372095});
  }
}

TEST_CASE("adam and adamw match hand computation", "[optim]") {
  OptimizerConfig c;
  c.name = "adam";
  c.beta1 = 0.5;
  c.beta2 = 0.75;
  c.eps = 0.0;
  SECTION("adam") {
    // t1: m = (0.25, -0.5), v = (0.0625, 0.25); m/(1-.5) = (0.5, -1), sqrt(v/(1-.75)) = (0.5, 1)
    //     p1 = (1, -2) - 0.1 (1, -1) = (0.9, -1.9)
    // t2: m = (0.25, 0.75), v = (0.0625, 1.1875); bc1 = 0.75, bc2 = 0.4375
    //     p2_0 = 0.9 - 0.1/0.75 * 0.25 / (0.25/sqrt(0.4375)) = 0.9 - 0.1 sqrt(0.4375)/0.75
    //          = 0.8118082896311803
    //     p2_1 = -1.9 - 0.1/0.75 * 0.75 / (sqrt(1.1875)/sqrt(0.4375)) = -1.9606976978666883
    // t3: m = (-0.375, 0.625), v = (0.296875, 0.953125); bc1 = 0.875, bc2 = 0.578125
    //     p3 = p2 - 0.1/0.875 m / (sqrt(v)/sqrt(0.578125))
    check_values(run(c, 0.1), {0.871614636624697, -2.0163275504204106});
  }
  SECTION("adam with L2 weight decay 0.1 (added to the gradient)") {
    // t1: g = (0.6, -1.2), m = (0.3, -0.6), v = (0.09, 0.36): the step is again lr sign(g)
    // t2: g = (0.34, 1.81), m = (0.32, 0.605), v = (0.0964, 1.089025) ... as for adam
    c.weight_decay = 0.1;
    check_values(run(c, 0.1), {0.8579931595355478, -1.9942625337116797});
  }
  SECTION("adamw: decoupled decay p *= 1 - lr wd before the adam step") {
    // t1: p = (1, -2) * 0.99 = (0.99, -1.98), then the adam step (0.1, -0.1): (0.89, -1.88)
    // m and v are those of plain adam (the gradient is not modified)
    c.name = "adamw";
    c.weight_decay = 0.1;
    check_values(run(c, 0.1), {0.8447855537283852, -1.9583085734417438});
  }
  SECTION("eps is added to the bias-corrected sqrt(v)") {
    // t1 with eps 0.5: denominator sqrt(v)/sqrt(0.25) + 0.5 = (0.5 + 0.5, 1 + 0.5) = (1, 1.5)
    //     p1 = (1, -2) - 0.1/0.5 (0.25, -0.5) / (1, 1.5) = (0.95, -2 + 0.2/3)
    c.eps = 0.5;
    check_values(run(c, 0.1, 1), {0.95, -2.0 + 0.2 / 3.0});
  }
}

TEST_CASE("adagrad matches hand computation", "[optim]") {
  OptimizerConfig c;
  c.name = "adagrad";
  c.lr_decay = 0.5;
  c.eps = 0.0;
  SECTION("lr_decay 0.5: clr = 0.1 / (1 + 0.5 (t - 1))") {
    // t1: clr 0.1,  sum = (0.25, 1),       p1 = (1, -2) - 0.1 (0.5/0.5, -1/1) = (0.9, -1.9)
    // t2: clr 1/15, sum = (0.3125, 5),     p2 = p1 - (1/15) (0.25/sqrt(0.3125), 2/sqrt(5))
    // t3: clr 0.05, sum = (1.3125, 5.25),  p3 = p2 - 0.05 (-1/sqrt(1.3125), 0.5/sqrt(5.25))
    check_values(run(c, 0.1), {0.9138293383472014, -1.970539373911794});
  }
  SECTION("with weight decay 0.1") {
    // t1: g = (0.6, -1.2), sum = (0.36, 1.44), p1 = (0.9, -1.9)
    // t2: g = (0.25 + 0.09, 2 - 0.19) = (0.34, 1.81), clr 1/15, sum = (0.4756, 4.7161)
    // t3: g = p2 / 10 + g3, clr 0.05, sum += g^2
    c.weight_decay = 0.1;
    check_values(run(c, 0.1), {0.9070342926737013, -1.9625058877204105});
  }
  SECTION("eps is added to sqrt(sum)") {
    // t1 with eps 0.5: p1 = (1, -2) - 0.1 (0.5/(0.5 + 0.5), -1/(1 + 0.5)) = (0.95, -2 + 0.2/3)
    c.eps = 0.5;
    check_values(run(c, 0.1, 1), {0.95, -2.0 + 0.2 / 3.0});
  }
}

TEST_CASE("optimizer defaults follow torch", "[optim]") {
  OptimizerConfig c;
  c.name = "adam";
  CHECK(effective_eps(c) == 1e-8);
  c.name = "adamw";
  CHECK(effective_eps(c) == 1e-8);
  c.name = "adagrad";
  CHECK(effective_eps(c) == 1e-10);
  c.eps = 1e-3;
  CHECK(effective_eps(c) == 1e-3);
}

TEST_CASE("float32 updates agree with float64", "[optim]") {
  // The float32 instantiation of the CPU reference, against the float64 one: after 3 steps of
  // O(1) values the difference is float32 round-off (~1e-7 relative), far below 1e-5.
  for (const char* name : {"sgd", "adam", "adamw", "adagrad"}) {
    INFO(name);
    OptimizerConfig c;
    c.name = name;
    c.momentum = std::string(name) == "sgd" ? 0.9 : 0.0;
    c.weight_decay = 0.01;
    std::vector<double> out[2];
    int k = 0;
    for (DType dt : {DType::F32, DType::F64}) {
      Parameter p = make_param({1.0, -2.0}, dt);
      FlatParameters flat({{"w", &p}});
      auto opt = make_optimizer(flat, c);
      for (const auto& g : kGrads) {
        flat.zero_grad();
        p.grad.copy_(cast(Tensor::from_vector(g, Shape{2}), dt));
        opt->step(0.05);
      }
      out[k++] = to_doubles(p.value);
    }
    for (int i = 0; i < 2; ++i) CHECK(out[0][i] == Approx(out[1][i]).epsilon(1e-5));
  }
}

TEST_CASE("step(lr) uses the learning rate it is given, step by step", "[optim]") {
  // Plain SGD, p -= lr g: three steps with three learning rates (what a schedule does), then a
  // step with lr 0 (cosine's last value with min_lr 0), which changes nothing but counts.
  Parameter p = make_param({1.0, -2.0});
  FlatParameters flat({{"w", &p}});
  auto opt = make_optimizer(flat, OptimizerConfig{});
  const double lrs[] = {0.1, 0.05, 0.2};
  for (int t = 0; t < 3; ++t) {
    flat.zero_grad();
    p.grad.copy_(Tensor::from_vector(kGrads[t], Shape{2}));
    opt->step(lrs[t]);
  }
  // p = (1, -2) - 0.1 (0.5, -1) - 0.05 (0.25, 2) - 0.2 (-1, 0.5) = (1.1375, -2.1)
  check_values(p.value.to_vector<double>(), {1.1375, -2.1});
  opt->step(0.0);
  check_values(p.value.to_vector<double>(), {1.1375, -2.1});
  CHECK(opt->step_count() == 4);
  REQUIRE_THROWS_WITH(opt->step(-0.1), Catch::Contains("sgd") && Catch::Contains("learning rate") &&
                                           Catch::Contains("-0.1"));
  REQUIRE_THROWS_WITH(opt->step(std::nan("")), Catch::Contains("learning rate"));
  CHECK(opt->step_count() == 4);  // a refused step is not counted
}

TEST_CASE("the optimizer updates the model's flat buffers in one pass", "[optim]") {
  Parameter a = make_param({1, 2, 3, 4, 5, 6});
  a.value = a.value.view(Shape{2, 3});
  Parameter b = make_param({-1, -2, -3, -4});
  FlatParameters flat({{"a", &a}, {"b", &b}});
  auto opt = make_optimizer(flat, OptimizerConfig{});
  CHECK(&opt->parameters() == &flat);
  b.grad.fill_(3.0);
  a.grad.fill_(-1.0);
  opt->step(0.1);  // every parameter moved by one flat update
  CHECK(a.value.to_vector<double>()[0] == Approx(1.1).epsilon(1e-15));
  CHECK(b.value.to_vector<double>()[3] == Approx(-4.3).epsilon(1e-15));
  CHECK(flat.values().to_vector<double>()[9] == Approx(-4.3).epsilon(1e-15));
}

TEST_CASE("optimizer detects parameters cut loose from the flat buffers", "[optim][errors]") {
  Parameter a = make_param({1, 2});
  Parameter b = make_param({3});
  FlatParameters flat({{"conv1.weight", &a}, {"fc.bias", &b}});
  auto opt = make_optimizer(flat, OptimizerConfig{});
  opt->step(0.1);
  // What moving one layer on its own does: fresh tensors replace the views.
  b.value = b.value.clone();
  b.grad = b.grad.clone();
  REQUIRE_THROWS_WITH(opt->step(0.1), Catch::Contains("'fc.bias'") &&
                                          Catch::Contains("model.to") && Catch::Contains("sgd"));
}

TEST_CASE("optimizer rejects bad hyper-parameters", "[optim][errors]") {
  Parameter a = make_param({1, 2});
  FlatParameters flat({{"a", &a}});
  auto make = [&](OptimizerConfig c) { return make_optimizer(flat, c); };
  auto with = [](const char* name, auto&& set) {
    OptimizerConfig c;
    c.name = name;
    set(c);
    return c;
  };

  REQUIRE_THROWS_WITH(make(with("rmsprop", [](auto&) {})),
                      Catch::Contains("rmsprop") && Catch::Contains("sgd, adam, adamw or adagrad"));
  REQUIRE_THROWS_WITH(make(with("adamm", [](auto&) {})), Catch::Contains("did you mean adam"));
  REQUIRE_THROWS_WITH(make(with("sgd", [](auto& c) { c.weight_decay = -1; })),
                      Catch::Contains("weight_decay"));
  REQUIRE_THROWS_WITH(make(with("adagrad", [](auto& c) { c.weight_decay = -1; })),
                      Catch::Contains("weight_decay"));
  REQUIRE_THROWS_WITH(make(with("sgd", [](auto& c) { c.momentum = -0.5; })),
                      Catch::Contains("momentum"));
  REQUIRE_THROWS_WITH(make(with("sgd", [](auto& c) { c.nesterov = true; })),
                      Catch::Contains("nesterov") && Catch::Contains("momentum"));
  REQUIRE_THROWS_WITH(make(with("sgd",
                                [](auto& c) {
                                  c.nesterov = true;
                                  c.momentum = 0.9;
                                  c.dampening = 0.1;
                                })),
                      Catch::Contains("nesterov") && Catch::Contains("dampening"));
  REQUIRE_THROWS_WITH(make(with("adam", [](auto& c) { c.nesterov = true; })),
                      Catch::Contains("adam") && Catch::Contains("nesterov applies to sgd"));
  REQUIRE_THROWS_WITH(make(with("adam", [](auto& c) { c.beta1 = 1.0; })), Catch::Contains("beta1"));
  REQUIRE_THROWS_WITH(make(with("adamw", [](auto& c) { c.beta2 = -0.1; })),
                      Catch::Contains("beta2"));
  REQUIRE_THROWS_WITH(make(with("adagrad", [](auto& c) { c.lr_decay = -1; })),
                      Catch::Contains("lr_decay"));
  // The valid corner cases are accepted (torch allows them too), and a hyper-parameter an
  // optimizer does not read is ignored (momentum for adam).
  CHECK_NOTHROW(make(with("adam", [](auto& c) { c.beta1 = 0.0; })));
  CHECK_NOTHROW(make(with("sgd", [](auto& c) { c.momentum = 0.0; })));
  CHECK_NOTHROW(make(with("adam", [](auto& c) { c.momentum = 0.9; })));
  // check_optimizer_config is the same check, without making anything.
  CHECK_THROWS_WITH(check_optimizer_config(with("adamw", [](auto& c) { c.beta2 = 1.0; })),
                    Catch::Contains("beta2"));
  CHECK_NOTHROW(check_optimizer_config(with("sgd", [](auto& c) { c.momentum = 0.9; })));
}

TEST_CASE("optimizer registry: help, description and factory of every optimizer", "[optim]") {
  CHECK(optimizers().names() == std::vector<std::string>{"sgd", "adam", "adamw", "adagrad"});
  const std::string help = optimizers().help_text();
  for (const char* torch_name : {"torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW",
                                 "torch.optim.Adagrad"}) {
    INFO(torch_name);
    CHECK_THAT(help, Catch::Contains(torch_name));
  }
  // Each describes the hyper-parameters it reads, and only those.
  OptimizerConfig c;
  c.momentum = 0.9;
  c.weight_decay = 5e-4;
  CHECK(describe_optimizer(c) == "sgd (momentum 0.9, weight decay 0.0005)");
  c.nesterov = true;
  CHECK(describe_optimizer(c) == "sgd (momentum 0.9, weight decay 0.0005, nesterov)");
  c.nesterov = false;
  c.name = "adam";
  CHECK(describe_optimizer(c) == "adam (betas (0.9, 0.999), eps 1e-08, weight decay 0.0005)");
  c.name = "adamw";
  CHECK(describe_optimizer(c) ==
        "adamw (betas (0.9, 0.999), eps 1e-08, decoupled weight decay 0.0005)");
  c.name = "adagrad";
  CHECK(describe_optimizer(c) == "adagrad (lr decay 0, eps 1e-10, weight decay 0.0005)");
  // The factory makes the optimizer of that name.
  Parameter p = make_param({1.0});
  FlatParameters flat({{"w", &p}});
  for (const std::string& name : optimizers().names()) {
    INFO(name);
    c.name = name;
    CHECK(make_optimizer(flat, c)->config().name == name);
  }
}

TEST_CASE("optimizer state save and load continue the run exactly", "[optim]") {
  for (const char* name : {"sgd", "adam", "adamw", "adagrad"}) {
    INFO(name);
    OptimizerConfig c;
    c.name = name;
    c.momentum = std::string(name) == "sgd" ? 0.9 : 0.0;
    Parameter p = make_param({1.0, -2.0});
    FlatParameters flat({{"w", &p}});
    auto opt = make_optimizer(flat, c);
    for (int t = 0; t < 2; ++t) {
      flat.zero_grad();
      p.grad.copy_(Tensor::from_vector(kGrads[t], Shape{2}));
      opt->step(0.1);
    }
    // A second optimizer on a copy of the parameter, with the state loaded, takes the same step.
    Parameter q = make_param(p.value.to_vector<double>());
    FlatParameters flat2({{"w", &q}});
    auto opt2 = make_optimizer(flat2, c);
    std::vector<std::pair<std::string, Tensor>> state;
    for (const auto& [n, t] : opt->state()) state.emplace_back(n, t.clone());
    opt2->load_state(state, opt->step_count());
    CHECK(opt2->step_count() == 2);
    for (Parameter* x : {&p, &q}) x->grad.copy_(Tensor::from_vector(kGrads[2], Shape{2}));
    opt->step(0.1);
    opt2->step(0.1);
    CHECK(q.value.to_vector<double>() == p.value.to_vector<double>());
  }
}

TEST_CASE("optimizer state names and load_state checks", "[optim][errors]") {
  Parameter p = make_param({1.0, -2.0});
  FlatParameters flat({{"w", &p}});
  auto names = [&](OptimizerConfig c) {
    std::vector<std::string> out;
    for (const auto& [n, t] : make_optimizer(flat, c)->state()) out.push_back(n);
    return out;
  };
  OptimizerConfig c;
  CHECK(names(c).empty());  // plain SGD keeps no state
  c.momentum = 0.9;
  CHECK(names(c) == std::vector<std::string>{"momentum_buffer"});
  c.name = "adam";
  CHECK(names(c) == std::vector<std::string>{"exp_avg", "exp_avg_sq"});
  c.name = "adagrad";
  CHECK(names(c) == std::vector<std::string>{"sum"});

  c.name = "adam";
  auto opt = make_optimizer(flat, c);
  const Tensor two = Tensor::zeros(Shape{2}, DType::F64);
  const Tensor three = Tensor::zeros(Shape{3}, DType::F64);
  REQUIRE_THROWS_WITH(opt->load_state({{"exp_avg", two}, {"exp_avg_sq", three}}, 1),
                      Catch::Contains("exp_avg_sq") && Catch::Contains("(3,)") &&
                          Catch::Contains("2 elements"));
  REQUIRE_THROWS_WITH(opt->load_state({{"exp_avg", two}}, 1),
                      Catch::Contains("exp_avg_sq") && Catch::Contains("missing"));
  REQUIRE_THROWS_WITH(opt->load_state({{"exp_avg", two}, {"exp_avg_sq", two}, {"sum", two}}, 1),
                      Catch::Contains("'sum'") && Catch::Contains("unexpected"));
  REQUIRE_THROWS_WITH(
      opt->load_state({{"exp_avg", two}, {"exp_avg_sq", Tensor::zeros(Shape{2}, DType::F32)}}, 1),
      Catch::Contains("exp_avg_sq") && Catch::Contains("float32"));
  CHECK(opt->step_count() == 0);  // failed loads changed nothing
}

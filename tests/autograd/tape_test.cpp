// The tape (autograd/tape.h): gradients of random graphs with fan-out and reuse against float64
// central differences, accumulation, the errors it promises, no_grad, retain_graph, the drawing.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "autograd/ops.h"
#include "kernels/elementwise.h"
#include "../support/gradcheck.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

double scalar(const ag::Var& v) { return v.value().item<double>(); }

std::vector<double> grad_values(const ag::Var& v) {
  REQUIRE(v.grad().defined());
  return to_doubles(v.grad());
}

// A random graph over (2, 3, 5, 5) values, drawn from `structure` so that the same seed rebuilds
// the same graph: each step applies a random op to random earlier results (so results fan out and
// are reused), the convolutions share two weights (parameter reuse), and the loss adds a label-
// smoothed cross-entropy of a linear head on the last result to a projection of a random one.
struct RandomGraph {
  std::vector<ag::Var> leaves;  // x, w1, w2, cb, gamma, beta, m, fc_w, fc_b, r
  Tensor labels;
  ag::BatchNormState bn;
  std::string ops;  // the ops drawn, for the failure message

  explicit RandomGraph(Generator& g) {
    const Shape s{2, 3, 5, 5};
    auto leaf = [&](const Shape& shape, const char* name, double lo = -1.0, double hi = 1.0) {
      leaves.emplace_back(uniform_tensor(shape, g, lo, hi), true, name);
    };
    leaf(s, "x");
    leaf(Shape{3, 3, 3, 3}, "w1", -0.4, 0.4);
    leaf(Shape{3, 3, 3, 3}, "w2", -0.4, 0.4);
    leaf(Shape{3}, "conv_bias");
    leaf(Shape{3}, "gamma", 0.5, 1.5);
    leaf(Shape{3}, "beta");
    leaf(Shape{5, 5}, "m", -0.5, 0.5);
    leaf(Shape{4, 75}, "fc_w", -0.3, 0.3);
    leaf(Shape{4}, "fc_b");
    labels = label_tensor(2, 4, g);
    bn.running_mean = Tensor::zeros(Shape{3}, DType::F64);
    bn.running_var = Tensor::full(Shape{3}, 1.0, DType::F64);
  }

  ag::Var build(uint64_t structure_seed, int steps) {
    Generator g(structure_seed);
    Generator drop_gen(structure_seed + 1);
    std::vector<ag::Var> pool{leaves[0]};
    ops.clear();
    auto pick = [&] { return pool[g.below(pool.size())]; };
    for (int i = 0; i < steps; ++i) {
      const ag::Var a = pick();
      ag::Var out;
      const int op = static_cast<int>(g.below(12));
      switch (op) {
        case 0: out = ag::tanh(a); break;
        case 1: out = ag::sigmoid(a); break;
        case 2: out = ag::leaky_relu(a, 0.1); break;
        case 3: out = ag::add(a, pick()); break;
        case 4: out = ag::add_scaled(a, pick(), 0.7); break;
        case 5: out = ag::conv2d(a, leaves[1 + g.below(2)], leaves[3], {1, 1}); break;
        case 6: out = ag::batchnorm(a, leaves[4], leaves[5], bn, true); break;
        case 7: out = ag::avgpool2d(a, {3, 1, 1}); break;
        case 8: out = ag::maxpool2d(a, {3, 1, 1}); break;
        case 9: out = ag::view(ag::matmul(ag::view(a, Shape{30, 5}), leaves[6]), a.shape()); break;
        case 10: out = ag::dropout(a, 0.3, drop_gen, true); break;
        default: out = ag::relu(a); break;
      }
      ops += out.grad_fn() ? out.grad_fn()->op + " " : "? ";
      pool.push_back(out);
    }
    const ag::Var logits = ag::linear(ag::flatten(pool.back()), leaves[7], leaves[8]);
    const ag::Var ce = ag::cross_entropy(logits, labels, 0.1);
    const ag::Var other = pick();
    return ag::add_scaled(ce, ag::dot(other, ag::tanh(other)), 0.1);
  }
};

}  // namespace

TEST_CASE("tape: random graphs with fan-out and reuse match float64 central differences",
          "[autograd]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  for (int trial = 0; trial < 4; ++trial) {
    Generator g(seed + trial);
    RandomGraph graph(g);
    const uint64_t structure = seed * 31 + trial;
    ag::Var loss = graph.build(structure, 8);
    INFO("trial " << trial << ", ops: " << graph.ops);
    loss.backward();

    std::vector<GradTarget> targets;
    for (ag::Var& leaf : graph.leaves)
      if (leaf.grad().defined())  // a leaf the drawn graph never used has no gradient
        targets.push_back({leaf.name(), leaf.value().data<double>(), grad_values(leaf)});
    REQUIRE(targets.size() >= 3);  // x, fc_w, fc_b at least
    const auto replay = [&] {
      ag::NoGrad no_grad;
      return scalar(graph.build(structure, 8));
    };
    const GradCheckResult r = check_gradients(replay, targets, seed + trial);
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("tape: fan-out sums the gradients, a leaf accumulates over backward calls", "[autograd]") {
  const Tensor x0 = Tensor::from_vector<double>({0.5, -1.0, 2.0}, Shape{3});
  ag::Var x(x0.clone(), true, "x");
  // y = x + x + 3 tanh(x): x feeds three uses; dL/dx = 2 + 3 (1 - tanh^2 x) for L = sum y.
  ag::Var t = ag::tanh(x);
  ag::Var y = ag::add_scaled(ag::add(x, x), t, 3.0);
  ag::Var ones(Tensor::full(Shape{3}, 1.0, DType::F64));
  ag::Var L = ag::dot(y, ones);
  L.backward({.seed = Tensor(), .retain_graph = true});
  const std::vector<double> g1 = grad_values(x);
  for (int i = 0; i < 3; ++i) {
    const double th = std::tanh(x0.data<double>()[i]);
    CHECK(g1[i] == Approx(2 + 3 * (1 - th * th)).epsilon(1e-14));
  }
  // The intermediate t received 3 (its use, scaled) per element.
  for (double v : grad_values(t)) CHECK(v == 3.0);

  // A second backward through the retained graph adds into the leaf's gradient (the intermediate's
  // is recomputed, not accumulated).
  L.backward();
  const std::vector<double> g2 = grad_values(x);
  for (int i = 0; i < 3; ++i) CHECK(g2[i] == 2 * g1[i]);
  for (double v : grad_values(t)) CHECK(v == 3.0);
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("tape: reverse topological order runs each node after all its consumers", "[autograd]") {
  ag::Var x(Tensor::full(Shape{4}, 0.3, DType::F64), true, "x");
  ag::Var a = ag::tanh(x);
  ag::Var b = ag::sigmoid(a);
  ag::Var c = ag::add(a, b);  // a is consumed by b and by c
  ag::Var L = ag::dot(c, c);
  const std::vector<ag::Node*> order = ag::backward_order(L);
  auto pos = [&](const ag::Var& v) {
    for (size_t i = 0; i < order.size(); ++i)
      if (order[i] == v.grad_fn().get()) return static_cast<int>(i);
    return -1;
  };
  REQUIRE(pos(a) >= 0);
  CHECK(pos(c) < pos(b));
  CHECK(pos(b) < pos(a));
  CHECK(pos(c) < pos(a));
}

TEST_CASE("tape: clear errors for backward twice, a non-scalar root, a modified saved tensor",
          "[autograd]") {
  Generator g(5);
  SECTION("backward twice without retain_graph") {
    ag::Var x(uniform_tensor(Shape{3}, g), true, "x");
    ag::Var L = ag::dot(ag::tanh(x), x);
    L.backward();
    CHECK_THROWS_WITH(L.backward(), Catch::Contains("a second time") &&
                                        Catch::Contains("retain_graph"));
  }
  SECTION("non-scalar without a seed") {
    ag::Var x(uniform_tensor(Shape{2, 3}, g), true, "x");
    ag::Var y = ag::tanh(x);
    CHECK_THROWS_WITH(y.backward(), Catch::Contains("non-scalar") && Catch::Contains("seed"));
    y.backward({.seed = Tensor::full(Shape{2, 3}, 1.0, DType::F64)});  // with a seed it runs
    CHECK(x.grad().defined());
  }
  SECTION("a saved tensor modified in place") {
    ag::Var x(uniform_tensor(Shape{3}, g), true, "x");
    ag::Var y = ag::sigmoid(x);  // sigmoid's backward reads its output y
    // add saves nothing, so sigmoid is the first node that needs the changed y.
    ag::Var L = ag::dot(ag::add(y, y), ag::Var(Tensor::full(Shape{3}, 1.0, DType::F64)));
    {
      ag::NoGrad no_grad;
      y.mutable_value().fill_(0.5);
    }
    CHECK_THROWS_WITH(L.backward(), Catch::Contains("Sigmoid") && Catch::Contains("output y") &&
                                        Catch::Contains("modified in place"));
  }
  SECTION("a weight updated in place before the backward of the graph that used it") {
    ag::Var x(uniform_tensor(Shape{2, 3}, g));
    ag::Var w(uniform_tensor(Shape{4, 3}, g), true, "w");
    ag::Var L = ag::dot(ag::linear(x, w, ag::Var()), ag::linear(x, w, ag::Var()));
    L.backward({.seed = Tensor(), .retain_graph = true});
    {
      ag::NoGrad no_grad;  // an optimizer step: w -= 0.1 dL/dw
      Tensor& wv = w.mutable_value();
      add_scaled(wv, wv, w.grad(), -0.1);
    }
    CHECK_THROWS_WITH(L.backward(), Catch::Contains("linear") && Catch::Contains("weight"));
  }
  SECTION("a view shares its base's version counter") {
    ag::Var x(uniform_tensor(Shape{2, 3}, g), true, "x");
    ag::Var y = ag::tanh(x);
    ag::Var v = ag::view(y, Shape{6});
    ag::Var L = ag::dot(ag::add(y, y), ag::Var(Tensor::full(Shape{2, 3}, 1.0, DType::F64)));
    v.mutable_value();  // writing through the view changes y
    CHECK_THROWS_WITH(L.backward(), Catch::Contains("Tanh"));
  }
  SECTION("backward from a Var that needs no gradient") {
    ag::Var x(uniform_tensor(Shape{1}, g));
    CHECK_THROWS_WITH(ag::tanh(x).backward(), Catch::Contains("requires no gradient"));
  }
}

TEST_CASE("tape: no_grad records nothing", "[autograd]") {
  Generator g(6);
  ag::Var x(uniform_tensor(Shape{3}, g), true, "x");
  {
    ag::NoGrad no_grad;
    CHECK_FALSE(ag::grad_enabled());
    ag::Var y = ag::tanh(x);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  CHECK(ag::grad_enabled());
  CHECK(ag::tanh(x).grad_fn() != nullptr);
}

TEST_CASE("tape: the graph as DOT with op names, shapes and gradient norms", "[autograd]") {
  ag::Var x(Tensor::from_vector<double>({3.0, 4.0}, Shape{1, 2}), true, "x");
  ag::Var w(Tensor::from_vector<double>({1.0, 0.0, 0.0, 1.0}, Shape{2, 2}), true, "w");
  ag::Var L = ag::dot(ag::linear(x, w, ag::Var()), ag::Var(Tensor::full(Shape{1, 2}, 1.0, DType::F64)));
  const std::string before = ag::to_dot(L);
  CHECK(before.find("linear 2->2") != std::string::npos);
  CHECK(before.find("matmul") != std::string::npos);
  CHECK(before.find("|grad|") == std::string::npos);  // no backward yet
  L.backward();
  const std::string dot = ag::to_dot(L);
  CHECK(dot.find("digraph") == 0);
  CHECK(dot.find("x\\n(1, 2)") != std::string::npos);
  // dL/dx = (1, 1) w = (1, 1): norm sqrt(2); dL/dw = (1, 1)^T (3, 4): norm sqrt(2 * 25) = 7.07107.
  CHECK(dot.find("|grad| = 1.41421") != std::string::npos);
  CHECK(dot.find("|grad| = 7.07107") != std::string::npos);

  const auto dir = std::filesystem::temp_directory_path() / "minidl_tape_dot";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "graph.dot").string();
  ag::write_graph(L, path);
  std::ifstream f(path);
  CHECK(std::string(std::istreambuf_iterator<char>(f), {}) == dot);
  const std::string svg = (dir / "graph.svg").string();
  if (std::system("command -v dot > /dev/null 2>&1") == 0) {
    ag::write_graph(L, svg);
    std::ifstream s(svg);
    CHECK(std::string(std::istreambuf_iterator<char>(s), {}).find("<svg") != std::string::npos);
  } else {
    CHECK_THROWS_WITH(ag::write_graph(L, svg), Catch::Contains("graphviz"));
    CHECK_FALSE(std::filesystem::exists(svg));
  }
  std::filesystem::remove_all(dir);
}

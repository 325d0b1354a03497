#include <catch2/catch.hpp>

#include "kernels/dropout.h"
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "../support/gradcheck.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// A layer that declines to compute its input gradient, as a first layer with
// set_needs_input_grad(false) does.
class NoInputGrad : public Module {
 public:
  NoInputGrad() : Module("NoInputGrad") {}
  Tensor forward(const Tensor& x, Mode) override { return x; }
  Tensor backward(const Tensor&) override { return Tensor(); }
  Shape output_shape(const Shape& in) const override { return in; }
};

std::vector<std::string> state_names(Module& m) {
  std::vector<std::string> names;
  for (auto& np : m.named_parameters()) names.push_back(np.name);
  for (auto& nb : m.named_buffers()) names.push_back(nb.name);
  return names;
}

// conv -> bn -> tanh -> (inner: conv -> tanh) -> flatten -> fc, with named children, an unnamed
// (numbered) one and a named nested Sequential, in float64.
std::unique_ptr<Sequential> named_net(Generator& g) {
  const DType dt = DType::F64;
  auto net = std::make_unique<Sequential>();
  net->add("conv1", std::make_unique<Conv2d>(Conv2dConfig{2, 3, 3, 2, 1, false, dt}, g));
  net->add("bn1", std::make_unique<BatchNorm2d>(BatchNorm2dConfig{3, 0.1, 1e-5, dt}));
  net->add(std::make_unique<Tanh>());  // "2"
  auto inner = std::make_unique<Sequential>();
  inner->add("conv", std::make_unique<Conv2d>(Conv2dConfig{3, 2, 1, 1, 0, true, dt}, g));
  inner->add("act", std::make_unique<Tanh>());
  net->add("inner", std::move(inner));
  net->add("flatten", std::make_unique<Flatten>());
  net->add("fc", std::make_unique<Linear>(LinearConfig{2 * 3 * 3, 4, true, dt}, g));
  return net;
}

}  // namespace

TEST_CASE("Flatten is a view forward and backward", "[basic][flatten]") {
  Generator g(test_seed());
  const Tensor x = uniform_tensor(Shape{3, 2, 5, 1}, g);
  Flatten f;
  CHECK(f.output_shape(x.shape()) == Shape{3, 10});
  const Tensor y = f.forward(x, Mode::Train);
  CHECK(y.shape() == Shape{3, 10});
  CHECK(y.same_data(x));  // no copy
  const Tensor dy = uniform_tensor(Shape{3, 10}, g);
  const Tensor dx = f.backward(dy);
  CHECK(dx.shape() == x.shape());
  CHECK(dx.same_data(dy));
  // (N, F) passes through unchanged.
  CHECK(f.output_shape(Shape{4, 7}) == Shape{4, 7});
}

TEST_CASE("Flatten errors name the layer and the shapes", "[basic][flatten][errors]") {
  Flatten f;
  REQUIRE_THROWS_WITH(f.backward(Tensor::zeros(Shape{2, 3}, DType::F64)),
                      Catch::Contains("Flatten") && Catch::Contains("before forward"));
  REQUIRE_THROWS_WITH(f.forward(Tensor::zeros(Shape{5}, DType::F64), Mode::Train),
                      Catch::Contains("Flatten") && Catch::Contains("(5,)"));
  f.forward(Tensor::zeros(Shape{2, 3, 2, 2}, DType::F64), Mode::Train);
  REQUIRE_THROWS_WITH(f.backward(Tensor::zeros(Shape{2, 13}, DType::F64)),
                      Catch::Contains("Flatten") && Catch::Contains("(2, 13)") &&
                          Catch::Contains("(2, 12)"));
}

TEST_CASE("Dropout layer: backward matches finite differences", "[basic][dropout][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (Shape s : {Shape{1, 3, 5, 7}, Shape{3, 11}}) {
    Dropout layer(0.4, seed);
    GradCheckOptions opt;
    // Every forward (analytic and each finite difference) must draw the same mask.
    opt.before_forward = [&] { layer.generator().set_state(seed, 0); };
    const GradCheckResult r = check_gradients(layer, uniform_tensor(s, g), seed, opt);
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("Dropout layer: fresh masks in training, identity in eval", "[basic][dropout]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  const Tensor x = Tensor::full(Shape{2, 500}, 1.0, DType::F64);
  Dropout layer(0.5, seed);
  CHECK(layer.describe() == "Dropout(p=0.5)");

  // The first training forward uses the generator's first words: (seed, offset 0).
  const auto y_first = to_doubles(layer.forward(x, Mode::Train));
  Tensor y_ref = Tensor::empty(x.shape(), DType::F64), mask_ref = Tensor::empty(x.shape(), DType::U8);
  dropout_forward(y_ref, mask_ref, x, 0.5, seed, 0);
  CHECK(y_first == to_doubles(y_ref));
  // The next one reserves a new range, so the mask changes (identical masks of 1000 fair coins:
  // probability 2^-1000).
  CHECK(to_doubles(layer.forward(x, Mode::Train)) != y_first);
  CHECK(layer.generator().offset() >= 2 * static_cast<uint64_t>(x.numel()));

  const Tensor y = layer.forward(x, Mode::Eval);
  CHECK(y.same_data(x));
  const Tensor dy = Tensor::full(x.shape(), 2.0, DType::F64);
  CHECK(layer.backward(dy).same_data(dy));

  Dropout fresh(0.5, seed);
  REQUIRE_THROWS_WITH(fresh.backward(dy), Catch::Contains("Dropout") &&
                                              Catch::Contains("backward called before forward"));
  fresh.forward(x, Mode::Train);
  REQUIRE_THROWS_WITH(fresh.backward(Tensor::zeros(Shape{2, 499}, DType::F64)),
                      Catch::Contains("Dropout") && Catch::Contains("(2, 499)") &&
                          Catch::Contains("(2, 500)"));
}

TEST_CASE("Sequential composes shapes, flops and descriptions", "[basic][sequential]") {
  Sequential seq;
  seq.add(std::make_unique<Tanh>());
  auto& drop = seq.add("drop", std::make_unique<Dropout>(0.25, 1));
  seq.add(std::make_unique<Flatten>());
  seq.add(std::make_unique<ReLU>());
  CHECK(seq.size() == 4);
  CHECK(&seq[1] == &drop);
  CHECK(drop.path() == "drop");
  CHECK(seq[3].path() == "3");  // unnamed children take their position, as torch.nn.Sequential
  const Shape in{2, 3, 4, 5};
  CHECK(seq.output_shape(in) == Shape{2, 60});
  // Tanh and ReLU count one operation per element; Dropout and Flatten count none (Module default).
  CHECK(seq.forward_flops(in) == 2 * in.numel());
  CHECK(seq.describe() ==
        "Sequential(\n  (0): Tanh()\n  (drop): Dropout(p=0.25)\n  (2): Flatten()\n  (3): ReLU()\n)");

  Sequential outer;
  auto& inner = outer.add("features", std::make_unique<Sequential>());
  inner.add(std::make_unique<ReLU>());
  outer.add(std::make_unique<Flatten>());
  CHECK(inner[0].path() == "features.0");
  CHECK(outer.describe() ==
        "Sequential(\n  (features): Sequential(\n    (0): ReLU()\n  )\n  (1): Flatten()\n)");
  CHECK(Sequential().describe() == "Sequential()");
}

TEST_CASE("Sequential: forward in order, backward in reverse, checked by finite differences",
          "[basic][sequential][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Each layer's backward needs the gradient of its own output (Flatten checks its shape, Tanh
  // multiplies by its own saved output), so only the reverse order passes. Inputs are away from 0,
  // so the kept tanh values are too and ReLU's kink is never straddled; dropped elements are a
  // constant 0.
  for (Shape s : {Shape{1, 3, 5, 7}, Shape{3, 2, 3, 1}}) {
    Sequential seq;
    auto& drop = seq.add(std::make_unique<Dropout>(0.3, seed));
    seq.add(std::make_unique<Tanh>());
    seq.add(std::make_unique<Flatten>());
    seq.add(std::make_unique<ReLU>());
    GradCheckOptions opt;
    opt.before_forward = [&] { drop.generator().set_state(seed, 0); };
    const Tensor x = away_from_zero_tensor(s, g, 0.05);
    const GradCheckResult r = check_gradients(seq, x, seed, opt);
    INFO(r.report);
    CHECK(r.ok);

    // The forward is the composition, layer by layer.
    drop.generator().set_state(seed, 0);
    const auto y = to_doubles(seq.forward(x, Mode::Train));
    Dropout d2(0.3, seed);
    Tanh t2;
    const auto h = to_doubles(t2.forward(d2.forward(x, Mode::Train), Mode::Train));
    REQUIRE(y.size() == h.size());
    for (size_t i = 0; i < y.size(); ++i) CHECK(y[i] == std::max(h[i], 0.0));
  }
}

TEST_CASE("Sequential errors name the layer and the shape", "[basic][sequential][errors]") {
  Sequential seq;
  seq.add(std::make_unique<ReLU>());
  seq.add("flat", std::make_unique<Flatten>());
  REQUIRE_THROWS_WITH(seq.output_shape(Shape{5}),
                      Catch::Contains("Flatten 'flat'") && Catch::Contains("(5,)"));
  REQUIRE_THROWS_WITH(seq.forward(Tensor::zeros(Shape{5}, DType::F64), Mode::Train),
                      Catch::Contains("Flatten 'flat'") && Catch::Contains("(5,)"));

  // A layer in the middle that returns no input gradient is named.
  Sequential broken;
  broken.add(std::make_unique<ReLU>());
  broken.add("stub", std::make_unique<NoInputGrad>());
  const Tensor x = Tensor::zeros(Shape{2, 2}, DType::F64);
  broken.forward(x, Mode::Train);
  REQUIRE_THROWS_WITH(broken.backward(x), Catch::Contains("NoInputGrad 'stub'") &&
                                              Catch::Contains("no input gradient"));

  // The gradient backward receives must have the shape of the last forward's output.
  Sequential fresh;
  fresh.add(std::make_unique<Flatten>());
  REQUIRE_THROWS_WITH(fresh.backward(x), Catch::Contains("Sequential") && Catch::Contains("before forward"));
  fresh.forward(Tensor::zeros(Shape{2, 3, 2}, DType::F64), Mode::Train);
  REQUIRE_THROWS_WITH(fresh.backward(Tensor::zeros(Shape{2, 5}, DType::F64)),
                      Catch::Contains("Sequential") && Catch::Contains("(2, 5)") && Catch::Contains("(2, 6)"));
}

TEST_CASE("Sequential: named children name the parameters, as torch.nn.Module attributes", "[basic][sequential]") {
  Generator g(1);
  auto net = named_net(g);
  CHECK(state_names(*net) ==
        std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "inner.conv.weight", "inner.conv.bias",
                                 "fc.weight", "fc.bias", "bn1.running_mean", "bn1.running_var",
                                 "bn1.num_batches_tracked"});
  CHECK((*net)[2].path() == "2");  // numbered by position among all children
  CHECK((*net)[3].path() == "inner");

  // A transparent child adds no level: its children are named as the container's own.
  Sequential outer;
  auto group = std::make_unique<Sequential>();
  group->add("conv", std::make_unique<Conv2d>(Conv2dConfig{2, 2, 1, 1, 0, true, DType::F64}, g));
  group->add("relu", std::make_unique<ReLU>());
  auto& grp = outer.add_transparent(std::move(group));
  outer.add("fc", std::make_unique<Linear>(LinearConfig{2, 2, true, DType::F64}, g));
  CHECK(state_names(outer) == std::vector<std::string>{"conv.weight", "conv.bias", "fc.weight", "fc.bias"});
  CHECK(grp.path().empty());
  CHECK(grp[0].path() == "conv");
  CHECK(outer.describe() ==
        "Sequential(\n  Sequential(\n    (conv): Conv2d(2, 2, k=1, s=1, p=0)\n    (relu): ReLU()\n  )\n"
        "  (fc): Linear(2, 2)\n)");
  // ... and takes the path of wherever the container goes.
  Sequential root;
  auto moved = std::make_unique<Sequential>();
  auto& m = *moved;
  m.add_transparent(std::make_unique<Sequential>()).add("relu", std::make_unique<ReLU>());
  root.add("block", std::move(moved));
  CHECK(m[0].path() == "block");
  CHECK(dynamic_cast<Sequential&>(m[0])[0].path() == "block.relu");

  REQUIRE_THROWS_WITH(outer.add("fc", std::make_unique<ReLU>()),
                      Catch::Contains("Sequential") && Catch::Contains("'fc'") && Catch::Contains("exists"));
  REQUIRE_THROWS_WITH(outer.add("", std::make_unique<ReLU>()),
                      Catch::Contains("needs a name") && Catch::Contains("add_transparent"));
}

TEST_CASE("Sequential with named children: backward matches finite differences",
          "[basic][sequential][gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Convolution, BN, a nested Sequential, flatten and linear: every parameter tensor and the input
  // are checked, in training (batch statistics) and eval mode (running statistics moved away from
  // 0/1 by one training forward first). tanh has no kink, so no point needs skipping.
  for (Shape s : {Shape{2, 2, 5, 5}, Shape{3, 2, 6, 5}}) {
    for (Mode mode : {Mode::Train, Mode::Eval}) {
      INFO(s << (mode == Mode::Train ? ", train" : ", eval"));
      auto net = named_net(g);
      const Tensor x = uniform_tensor(s, g);
      net->forward(x, Mode::Train);
      GradCheckOptions opt;
      opt.mode = mode;
      const GradCheckResult r = check_gradients(*net, x, seed, opt);
      INFO(r.report);
      CHECK(r.ok);
      CHECK(net->output_shape(s) == Shape{s[0], 4});
    }
  }
}

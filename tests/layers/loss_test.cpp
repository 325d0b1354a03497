#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/softmax_xent.h"
#include "layers/loss.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("SoftmaxCrossEntropy forward, backward and count by hand", "[loss]") {
  // The case of softmax_xent_test: logits ((1, 2, 3), (1, 1, 1)), labels (2, 0):
  // loss = (0.4076059644 + log 3) / 2 = 0.7531091266, both rows correct.
  // dL/dz = (p - onehot) / 2: row 0 = (0.0900305732, 0.2447284711, 0.6652409558 - 1) / 2.
  const Tensor logits = Tensor::from_vector<double>({1, 2, 3, 1, 1, 1}, Shape{2, 3});
  const Tensor labels = Tensor::from_vector<int32_t>({2, 0}, Shape{2});
  SoftmaxCrossEntropy ce;
  const Tensor loss = ce.forward(logits, labels);
  CHECK(loss.shape() == Shape{1});
  CHECK(loss.same_data(ce.loss()));
  // float64: a few operations of round-off.
  CHECK(loss.item<double>() == Approx(0.753109126556245).epsilon(1e-12));
  CHECK(ce.correct().item<int32_t>() == 2);
  const auto g = ce.backward().to_vector<double>();
  CHECK(g[0] == Approx(0.09003057317038048 / 2).epsilon(1e-12));
  CHECK(g[2] == Approx((0.665240955774822 - 1) / 2).epsilon(1e-12));
  CHECK(g[3] == Approx((1.0 / 3 - 1) / 2).epsilon(1e-12));
  CHECK(g[4] == Approx(1.0 / 6).epsilon(1e-12));
}

TEST_CASE("SoftmaxCrossEntropy matches the kernel, with label smoothing", "[loss]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor logits = normal_tensor(Shape{5, 4}, g, 2.0);
  const Tensor labels = label_tensor(5, 4, g);
  SoftmaxCrossEntropy ce(0.2);
  const double loss = ce.forward(logits, labels).item<double>();

  Tensor l = Tensor::empty(Shape{1}, DType::F64), p = Tensor::empty(logits.shape(), DType::F64);
  Tensor c = Tensor::empty(Shape{1}, DType::I32), dz = Tensor::empty(logits.shape(), DType::F64);
  softmax_xent_forward(l, p, c, logits, labels, 0.2);
  softmax_xent_backward(dz, p, labels, 0.2);
  // The layer calls exactly these functions on the same inputs: bitwise equal results.
  CHECK(loss == l.item<double>());
  CHECK(ce.probs().to_vector<double>() == p.to_vector<double>());
  CHECK(ce.correct().item<int32_t>() == c.item<int32_t>());
  CHECK(ce.backward().to_vector<double>() == dz.to_vector<double>());
  // Smoothing changes the loss: the same logits without it give a different value.
  SoftmaxCrossEntropy plain;
  CHECK(plain.forward(logits, labels).item<double>() != loss);
}

TEST_CASE("SoftmaxCrossEntropy allocates its buffers once per shape", "[loss]") {
  Generator g(test_seed());
  SoftmaxCrossEntropy ce;
  const Tensor labels = label_tensor(3, 4, g);
  ce.forward(normal_tensor(Shape{3, 4}, g), labels);
  const Tensor loss0 = ce.loss(), probs0 = ce.probs();
  const Tensor grad0 = ce.backward();
  ce.forward(normal_tensor(Shape{3, 4}, g), labels);
  CHECK(ce.loss().same_data(loss0));
  CHECK(ce.probs().same_data(probs0));
  CHECK(ce.backward().same_data(grad0));
  // A new shape gets new buffers of that shape.
  ce.forward(normal_tensor(Shape{2, 4}, g), label_tensor(2, 4, g));
  CHECK(ce.probs().shape() == Shape{2, 4});
  CHECK(ce.backward().shape() == Shape{2, 4});
}

TEST_CASE("SoftmaxCrossEntropy errors name the loss and the values", "[loss][errors]") {
  REQUIRE_THROWS_WITH(SoftmaxCrossEntropy(-0.1),
                      Catch::Contains("SoftmaxCrossEntropy") && Catch::Contains("-0.1"));
  SoftmaxCrossEntropy ce;
  REQUIRE_THROWS_WITH(ce.backward(), Catch::Contains("SoftmaxCrossEntropy") &&
                                         Catch::Contains("before forward"));
  REQUIRE_THROWS_WITH(ce.forward(Tensor::zeros(Shape{6}, DType::F64),
                                 Tensor::zeros(Shape{6}, DType::I32)),
                      Catch::Contains("SoftmaxCrossEntropy") && Catch::Contains("(6,)"));
  REQUIRE_THROWS_WITH(ce.forward(Tensor::zeros(Shape{2, 10}, DType::F64),
                                 Tensor::from_vector<int32_t>({3, 10}, Shape{2})),
                      Catch::Contains("label 10") && Catch::Contains("index 1") &&
                          Catch::Contains("K = 10"));
}

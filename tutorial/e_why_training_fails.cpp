// Tutorial step (e): why training fails: vanishing and exploding gradients
// (docs/tutorial/e-why-training-fails.md).
//
// A 20-layer fully connected network of width 64 on one random batch, built on the tape, in three
// versions. For each it prints, layer by layer, the activations' mean and std, the norm of the
// gradient reaching the layer's output (|dL/dh|) and of its weight gradient (|dL/dW|, the column
// `train --trace-steps` prints for a real model):
//
//   sigmoid, PyTorch's default init   each layer multiplies the gradient by W^T diag(s'(h)), and
//                                     s' <= 1/4: the gradient shrinks geometrically (vanishes)
//   ReLU, weights 2x He's std         each layer multiplies it by about 2 (sqrt(2 * 4 / 2)):
//                                     it grows geometrically (explodes)
//   ReLU, residual, He/4 init         h + relu(W h): the identity path carries the gradient
//                                     through every layer with factor 1: it neither vanishes nor
//                                     explodes (the branch starts small, He's std / 4, as
//                                     zero_init_residual starts it at 0, so that 20 additions do
//                                     not double the activations' variance 20 times)
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/ops.h"

using namespace minidl;

namespace {

constexpr int kDepth = 20, kWidth = 64, kBatch = 32, kClasses = 10;

struct Stats {
  double mean, std;
};
Stats stats(const Tensor& t) {
  double s = 0, s2 = 0;
  const auto v = t.to_vector<double>();
  for (double x : v) s += x;
  const double m = s / v.size();
  for (double x : v) s2 += (x - m) * (x - m);
  return {m, std::sqrt(s2 / v.size())};
}
double norm(const Tensor& t) {
  double s = 0;
  for (double x : t.to_vector<double>()) s += x * x;
  return std::sqrt(s);
}

Tensor normal(const Shape& s, Generator& g, double std) {
  Tensor t = Tensor::empty(s, DType::F64);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = std * g.normal();
  return t;
}

enum class Kind { Sigmoid, ReluLargeInit, Residual };

// Returns the ratio |dL/dh of layer 1| / |dL/dh of layer 20| (h: a layer's output).
double run(Kind kind, const char* title) {
  Generator g(7);
  const ag::Var x(normal(Shape{kBatch, kWidth}, g, 1.0));
  Tensor labels = Tensor::empty(Shape{kBatch}, DType::I32);
  for (int i = 0; i < kBatch; ++i) labels.data<int32_t>()[i] = int32_t(g.below(kClasses));

  // PyTorch's default Linear init has std 1/sqrt(3 fan_in); He (kaiming) has sqrt(2 / fan_in).
  const double he = std::sqrt(2.0 / kWidth);
  const double std = kind == Kind::Sigmoid ? 1.0 / std::sqrt(3.0 * kWidth)
                     : kind == Kind::ReluLargeInit ? 2 * he
                                                   : he;
  std::vector<ag::Var> w, act;
  ag::Var h = x;
  for (int l = 0; l < kDepth; ++l) {
    w.emplace_back(normal(Shape{kWidth, kWidth}, g, kind == Kind::Residual ? std / 4 : std), true);
    const ag::Var z = ag::linear(h, w.back(), ag::Var());
    if (kind == Kind::Sigmoid) h = ag::sigmoid(z);
    if (kind == Kind::ReluLargeInit) h = ag::relu(z);
    if (kind == Kind::Residual) h = ag::add(h, ag::relu(z));
    act.push_back(h);
  }
  const ag::Var head(normal(Shape{kClasses, kWidth}, g, 1.0 / std::sqrt(kWidth)), true);
  ag::Var loss = ag::cross_entropy(ag::linear(h, head, ag::Var()), labels);
  loss.backward();

  std::printf("%s (loss %.4g)\n  %-6s %12s %12s %14s %14s\n", title, loss.value().item<double>(),
              "layer", "act mean", "act std", "|dL/dh|", "|dL/dW|");
  for (int l = 0; l < kDepth; ++l) {
    const Stats s = stats(act[l].value());
    std::printf("  %-6d %12.4g %12.4g %14.4g %14.4g\n", l + 1, s.mean, s.std, norm(act[l].grad()),
                norm(w[l].grad()));
  }
  // The gradient reaching each layer's output, first layer over last.
  const double ratio = norm(act.front().grad()) / norm(act.back().grad());
  std::printf("  |dL/dh layer 1| / |dL/dh layer %d| = %.3g\n\n", kDepth, ratio);
  return ratio;
}

}  // namespace

int main() {
  const double vanish = run(Kind::Sigmoid, "1. sigmoid, default init: the gradient VANISHES towards the input");
  const double explode = run(Kind::ReluLargeInit, "2. ReLU, weights at 2x He's std: the gradient EXPLODES towards the input");
  const double residual = run(Kind::Residual, "3. ReLU, residual h + relu(W h), He/4 init: the gradient reaches every layer");
  // Orders of magnitude, not tuned bounds: sigmoid's factor is at most 1/4 per layer times |W|,
  // (2x He) ReLU's about 2 per layer, so 19 layers give < 1e-3 and > 1e3; the residual stays
  // within a factor 10.
  const bool ok = vanish < 1e-3 && explode > 1e3 && residual > 0.1 && residual < 10;
  std::printf("vanishing %.2g, exploding %.2g, residual %.2g: %s\n", vanish, explode, residual,
              ok ? "as expected" : "NOT AS EXPECTED");
  return ok ? 0 : 1;
}

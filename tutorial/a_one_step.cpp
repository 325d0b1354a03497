// Tutorial step (a): one training step of a tiny network, by hand (docs/tutorial/a-one-step.md).
//
//   x (2, 3) -> Linear(3, 2) -> ReLU -> Linear(2, 3) -> softmax cross-entropy (labels 0 and 2)
//
// with weights written out below, in float64 so the printed numbers are exact to the digits shown.
// It prints every forward value and every gradient, checks three of them against the formulas of
// docs/backprop/ computed here by hand, takes one SGD step and shows that the loss went down.
#include <cmath>
#include <cstdio>
#include <string>

#include "core/rng.h"
#include "kernels/optimizer.h"
#include "layers/activation.h"
#include "layers/linear.h"
#include "layers/loss.h"

using namespace minidl;

namespace {

void print(const char* name, const Tensor& t) {
  std::printf("  %-18s", name);
  const std::vector<double> v = t.to_vector<double>();
  const int64_t cols = t.dim() == 2 ? t.size(1) : t.numel();
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0 && i % cols == 0) std::printf("\n  %-18s", "");
    std::printf(" %10.6f", v[i]);
  }
  std::printf("\n");
}

void set(Tensor& t, std::vector<double> v) { t.copy_(Tensor::from_vector<double>(v, t.shape())); }

}  // namespace

int main() {
  Generator gen(0);  // the initial weights are overwritten below
  Linear fc1(LinearConfig{3, 2, true, DType::F64}, gen);
  ReLU relu;
  Linear fc2(LinearConfig{2, 3, true, DType::F64}, gen);
  SoftmaxCrossEntropy loss_fn;
  set(fc1.weight().value, {0.2, -0.5, 0.1, 0.4, 0.3, -0.2});
  set(fc1.bias()->value, {0.1, -0.1});
  set(fc2.weight().value, {0.6, -0.3, -0.4, 0.5, 0.1, 0.2});
  set(fc2.bias()->value, {0.0, 0.05, -0.05});
  const Tensor x = Tensor::from_vector<double>({1.0, 2.0, -1.0, 0.5, -1.0, 2.0}, Shape{2, 3});
  const Tensor labels = Tensor::from_vector<int32_t>({0, 2}, Shape{2});

  std::printf("forward\n");
  print("x", x);
  print("W1", fc1.weight().value);
  print("b1", fc1.bias()->value);
  const Tensor h = fc1.forward(x, Mode::Train);
  print("h = xW1^T+b1", h);
  const Tensor a = relu.forward(h, Mode::Train);
  print("a = relu(h)", a);
  print("W2", fc2.weight().value);
  print("b2", fc2.bias()->value);
  const Tensor z = fc2.forward(a, Mode::Train);
  print("z = aW2^T+b2", z);
  const double loss = loss_fn.forward(z, labels).item<double>();
  print("p = softmax", loss_fn.probs());
  std::printf("  %-18s %10.6f   (mean of -log p[label] over the 2 rows)\n", "loss", loss);

  std::printf("\nbackward\n");
  fc1.zero_grad();
  fc2.zero_grad();
  const Tensor dz = loss_fn.backward();
  print("dz = (p-onehot)/N", dz);
  const Tensor da = fc2.backward(dz);
  print("dW2 = dz^T a", fc2.weight().grad);
  print("db2 = sum dz", fc2.bias()->grad);
  print("da = dz W2", da);
  const Tensor dh = relu.backward(da);
  print("dh = da*[h>0]", dh);
  fc1.backward(dh);
  print("dW1 = dh^T x", fc1.weight().grad);
  print("db1 = sum dh", fc1.bias()->grad);

  // Three numbers by hand, from the formulas (docs/backprop/softmax_xent.md, linear.md).
  const auto p = loss_fn.probs().to_vector<double>();
  const auto av = a.to_vector<double>(), dzv = dz.to_vector<double>(), hv = h.to_vector<double>();
  const auto w2 = fc2.weight().value.to_vector<double>();
  const double dz00 = (p[0] - 1.0) / 2;                        // label 0 in row 0
  const double dw2_01 = dzv[0] * av[1] + dzv[3] * av[3];       // dW2[0,1] = sum_n dz[n,0] a[n,1]
  const double dh_10 = hv[2] > 0 ? dzv[3] * w2[0] + dzv[4] * w2[2] + dzv[5] * w2[4] : 0.0;
  const bool ok = std::fabs(dz00 - dzv[0]) < 1e-15 &&
                  std::fabs(dw2_01 - fc2.weight().grad.to_vector<double>()[1]) < 1e-15 &&
                  std::fabs(dh_10 - dh.to_vector<double>()[2]) < 1e-15;
  std::printf("\nby hand: dz[0,0] = (p[0,0] - 1)/2 = %.6f, dW2[0,1] = %.6f, dh[1,0] = %.6f: %s\n",
              dz00, dw2_01, dh_10, ok ? "match" : "MISMATCH");

  // One SGD step, p -= lr dL/dp, on every parameter.
  const double lr = 0.5;
  for (Module* m : {static_cast<Module*>(&fc1), static_cast<Module*>(&fc2)})
    for (auto& np : m->named_parameters()) {
      Tensor none;
      sgd_update(np.param->value, np.param->grad, none, SgdParams{.lr = lr}, 1);
    }
  const double after =
      loss_fn.forward(fc2.forward(relu.forward(fc1.forward(x, Mode::Train), Mode::Train), Mode::Train),
                      labels)
          .item<double>();
  std::printf("\nSGD step with lr %.1f: loss %.6f -> %.6f (%s)\n", lr, loss, after,
              after < loss ? "went down" : "DID NOT GO DOWN");
  return ok && after < loss ? 0 : 1;
}

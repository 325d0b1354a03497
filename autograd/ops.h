// The tape's ops: one per differentiable op of the op table (kernels/backend.h), each a Var
// function whose forward and backward call the same kernel functions as the explicit layer
// (layers/), so the op table selects the same backend for both.
//
//   op table            tape op                               explicit layer
//   conv2d              conv2d(x, w, b, {stride, pad})        Conv2d
//   gemm                matmul(a, b, trans_a, trans_b), dot    (inside Linear and conv2d)
//   linear              linear(x, w, b)                       Linear
//   batchnorm           batchnorm(x, gamma, beta, state, training)  BatchNorm2d
//   activation          relu, leaky_relu, sigmoid, tanh       ReLU, LeakyReLU, Sigmoid, Tanh
//   maxpool2d           maxpool2d(x, {k, s, p})               MaxPool2d
//   avgpool2d           avgpool2d(x, {k, s, p})               AvgPool2d
//   global_avgpool      global_avgpool(x)                     GlobalAvgPool
//   softmax_xent        cross_entropy(logits, labels, eps)    SoftmaxCrossEntropy
//   dropout             dropout(x, p, gen, training)          Dropout
//   elementwise         add(a, b), add_scaled(a, b, alpha)    Residual's sum
//   (a view, no kernel) view(x, shape), flatten(x)            Flatten
//
// The op table's optimizer and augment ops are not differentiated: an optimizer step changes the
// leaves in place (inside ag::NoGrad, bumping their versions: autograd/tape.h), and augmentation
// makes the input. The backward formulas are in each kernel's header; docs/backprop/ derives them.
#pragma once

#include "autograd/tape.h"
#include "core/rng.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/pooling.h"

namespace minidl::ag {

// b may be an undefined Var (no bias).
Var conv2d(const Var& x, const Var& w, const Var& b, Conv2dParams p);
// x (N, in), w (out, in), b (out) or undefined: y = x w^T + b.
Var linear(const Var& x, const Var& w, const Var& b);
// C = op(A) op(B) for 2-D A, B; op transposes when the flag is set.
Var matmul(const Var& a, const Var& b, bool trans_a = false, bool trans_b = false);
// sum_i a_i b_i as a (1,) Var (a product (1, n) x (n, 1) on gemm): a scalar from any tensor.
Var dot(const Var& a, const Var& b);

// The running statistics a BatchNorm keeps (updated by a training forward).
struct BatchNormState {
  Tensor running_mean, running_var;
  Tensor num_batches_tracked;  // int32 counter, may be undefined
};
// training: normalise with the batch statistics (and update state); else with the running ones.
Var batchnorm(const Var& x, const Var& gamma, const Var& beta, BatchNormState& state, bool training,
              BatchNormParams p = {});

Var activation(const Var& x, Activation act, double slope = 0.01);
Var relu(const Var& x);
Var leaky_relu(const Var& x, double slope = 0.01);
Var sigmoid(const Var& x);
Var tanh(const Var& x);

Var maxpool2d(const Var& x, Pool2dParams p);
Var avgpool2d(const Var& x, Pool2dParams p);
Var global_avgpool(const Var& x);

// Mean softmax cross-entropy over the batch, a (1,) Var; labels int32 (N). `correct`, when given,
// receives the count of top-1 hits (1,) int32.
Var cross_entropy(const Var& logits, const Tensor& labels, double label_smoothing = 0.0,
                  Tensor* correct = nullptr);

// Inverted dropout drawing its mask from `gen` (as the Dropout layer does); the identity when not
// training.
Var dropout(const Var& x, double p, Generator& gen, bool training);

Var add(const Var& a, const Var& b);
// a + alpha b
Var add_scaled(const Var& a, const Var& b, double alpha);

// Same data, new shape (shares the value and its version counter with x).
Var view(const Var& x, const Shape& shape);
// (N, ...) -> (N, features)
Var flatten(const Var& x);

}  // namespace minidl::ag

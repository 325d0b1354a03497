// The tape's ops (autograd/ops.h). Each: compute the forward with the op's kernel function, then,
// when record() returns a node, save what the backward reads and give the node its backward, which
// calls the op's backward kernel functions. Input gradients that a kernel overwrites are made in a
// fresh tensor and handed to accumulate(); parameter gradients that a kernel adds into (conv and
// linear weights and biases, BN's gamma and beta) go straight into grad_sink(), as the explicit
// layers add into Parameter::grad.
#include "autograd/ops.h"

#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "kernels/softmax_xent.h"

namespace minidl::ag {

namespace {

Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }
Tensor like(const Shape& s, const Tensor& t) { return Tensor::empty(s, t.dtype(), t.device()); }

// Where a kernel that adds into a gradient writes when input i needs none: a zeroed scratch.
Tensor& sink_or_scratch(Node& n, size_t i, Tensor& scratch) {
  if (n.needs(i)) return n.grad_sink(i);
  scratch = Tensor::zeros(n.inputs[i].value().shape(), n.inputs[i].value().dtype(),
                          n.inputs[i].value().device());
  return scratch;
}

void check_defined(const Var& v, const char* op, const char* what) {
  MINIDL_CHECK(v.defined(), "ag::", op, ": the ", what, " is an undefined Var");
}

}  // namespace

// ------------------------------------------------------------------------------------ conv2d

Var conv2d(const Var& x, const Var& w, const Var& b, Conv2dParams p) {
  check_defined(x, "conv2d", "input");
  check_defined(w, "conv2d", "weight");
  const ConvGeometry g = ConvGeometry::make(x.shape(), w.shape(), p, "ag::conv2d");
  Tensor y = like(Shape{g.N, g.K, g.P, g.Q}, x.value());
  conv2d_forward(y, x.value(), w.value(), b.defined() ? &b.value() : nullptr, p);
  auto node = record("conv2d", b.defined() ? std::vector<Var>{x, w, b} : std::vector<Var>{x, w});
  if (node) {
    node->detail = str("k=", g.R, "x", g.S, " s=", p.stride, " p=", p.pad);
    node->save(x, "input x");
    node->save(w, "weight");
    node->backward = [p](Node& n, const Tensor& dy) {
      if (n.needs(1)) conv2d_backward_weight(n.grad_sink(1), dy, n.saved_tensor(0), p);
      if (n.needs(2)) conv2d_backward_bias(n.grad_sink(2), dy);
      if (n.needs(0)) {
        Tensor dx = like(n.saved_tensor(0));
        conv2d_backward_data(dx, dy, n.saved_tensor(1), p);
        n.accumulate(0, dx);
      }
    };
  }
  return Var::result(y, node);
}

// ------------------------------------------------------------------------------------ linear

Var linear(const Var& x, const Var& w, const Var& b) {
  check_defined(x, "linear", "input");
  check_defined(w, "linear", "weight");
  MINIDL_CHECK(x.value().dim() == 2 && w.value().dim() == 2, "ag::linear: expected x (N, in) and "
               "w (out, in), got ", x.value().describe(), " and ", w.value().describe(),
               " (flatten the input first: ag::flatten)");
  Tensor y = like(Shape{x.shape()[0], w.shape()[0]}, x.value());
  linear_forward(y, x.value(), w.value(), b.defined() ? &b.value() : nullptr);
  auto node = record("linear", b.defined() ? std::vector<Var>{x, w, b} : std::vector<Var>{x, w});
  if (node) {
    node->detail = str(w.shape()[1], "->", w.shape()[0]);
    node->save(x, "input x");
    node->save(w, "weight");
    node->backward = [](Node& n, const Tensor& dy) {
      Tensor dw_scratch, dx;
      Tensor& dw = sink_or_scratch(n, 1, dw_scratch);
      Tensor* db = n.needs(2) ? &n.grad_sink(2) : nullptr;
      if (n.needs(0)) dx = like(n.saved_tensor(0));
      linear_backward(n.needs(0) ? &dx : nullptr, dw, db, dy, n.saved_tensor(0),
                      n.saved_tensor(1));
      if (n.needs(0)) n.accumulate(0, dx);
    };
  }
  return Var::result(y, node);
}

// ------------------------------------------------------------------------------------ matmul

Var matmul(const Var& a, const Var& b, bool ta, bool tb) {
  check_defined(a, "matmul", "left operand");
  check_defined(b, "matmul", "right operand");
  MINIDL_CHECK(a.value().dim() == 2 && b.value().dim() == 2, "ag::matmul: expected 2-D operands, got ",
               a.value().describe(), " and ", b.value().describe());
  const int64_t m = ta ? a.shape()[1] : a.shape()[0];
  const int64_t n = tb ? b.shape()[0] : b.shape()[1];
  Tensor c = like(Shape{m, n}, a.value());
  ::minidl::matmul(c, a.value(), b.value(), ta, tb);  // checks the inner dimensions
  auto node = record("matmul", {a, b});
  if (node) {
    node->detail = str(ta ? "A^T" : "A", " ", tb ? "B^T" : "B");
    node->save(a, "left operand");
    node->save(b, "right operand");
    // C = op(A) op(B). From C_ij = sum_k op(A)_ik op(B)_kj: dL/dop(A) = dC op(B)^T and
    // dL/dop(B) = op(A)^T dC; undoing op on the left-hand side gives the four cases below
    // (docs/backprop/linear.md derives the transposes from the indices).
    node->backward = [ta, tb](Node& n, const Tensor& dc) {
      const Tensor& A = n.saved_tensor(0);
      const Tensor& B = n.saved_tensor(1);
      if (n.needs(0)) {
        Tensor da = like(A);
        if (!ta)
          ::minidl::matmul(da, dc, B, false, !tb);  // dA = dC op(B)^T
        else
          ::minidl::matmul(da, B, dc, tb, true);  // dA = op(B) dC^T
        n.accumulate(0, da);
      }
      if (n.needs(1)) {
        Tensor db = like(B);
        if (!tb)
          ::minidl::matmul(db, A, dc, !ta, false);  // dB = op(A)^T dC
        else
          ::minidl::matmul(db, dc, A, true, ta);  // dB = dC^T op(A)
        n.accumulate(1, db);
      }
    };
  }
  return Var::result(c, node);
}

Var dot(const Var& a, const Var& b) {
  check_defined(a, "dot", "left operand");
  check_defined(b, "dot", "right operand");
  MINIDL_CHECK(a.value().numel() == b.value().numel(), "ag::dot: operands of different sizes, ",
               a.value().describe(), " and ", b.value().describe());
  const int64_t n = a.value().numel();
  return view(matmul(view(a, Shape{1, n}), view(b, Shape{n, 1})), Shape{1});
}

// ------------------------------------------------------------------------------------ batchnorm

Var batchnorm(const Var& x, const Var& gamma, const Var& beta, BatchNormState& st, bool training,
              BatchNormParams p) {
  check_defined(x, "batchnorm", "input");
  check_defined(gamma, "batchnorm", "weight (gamma)");
  check_defined(beta, "batchnorm", "bias (beta)");
  MINIDL_CHECK(st.running_mean.defined() && st.running_var.defined(),
               "ag::batchnorm: the running statistics are undefined tensors");
  Tensor y = like(x.value());
  const Tensor& xv = x.value();
  Tensor mean, invstd;
  if (training) {
    mean = like(st.running_mean);
    invstd = like(st.running_mean);
    batchnorm_forward_train(y, mean, invstd, st.running_mean, st.running_var, xv, gamma.value(),
                            beta.value(), p);
    if (st.num_batches_tracked.defined()) batchnorm_count_batch(st.num_batches_tracked);
  } else {
    batchnorm_forward_eval(y, xv, gamma.value(), beta.value(), st.running_mean, st.running_var, p);
  }
  auto node = record(training ? "batchnorm" : "batchnorm_eval", {x, gamma, beta});
  if (node) {
    node->detail = str("eps=", p.eps);
    node->save(x, "input x");
    node->save(gamma, "weight (gamma)");
    // The statistics belong to this forward: plain tensors no one else writes (train), or the
    // running statistics as they were (eval: copies, since the next training forward updates them).
    const Tensor s0 = training ? mean : st.running_mean.clone();
    const Tensor s1 = training ? invstd : st.running_var.clone();
    node->backward = [training, p, s0, s1](Node& n, const Tensor& dy) {
      Tensor dx = like(dy), sg, sb;
      Tensor& dgamma = sink_or_scratch(n, 1, sg);
      Tensor& dbeta = sink_or_scratch(n, 2, sb);
      if (training)
        batchnorm_backward_train(dx, dgamma, dbeta, dy, n.saved_tensor(0), n.saved_tensor(1), s0,
                                 s1, p);
      else
        batchnorm_backward_eval(dx, dgamma, dbeta, dy, n.saved_tensor(0), n.saved_tensor(1), s0,
                                s1, p);
      n.accumulate(0, dx);
    };
  }
  return Var::result(y, node);
}

// ------------------------------------------------------------------------------------ activation

Var activation(const Var& x, Activation act, double slope) {
  check_defined(x, activation_name(act), "input");
  Tensor y = like(x.value());
  activation_forward(y, x.value(), act, slope);
  auto node = record(activation_name(act), {x});
  Var out = Var::result(y, node);
  if (node) {
    node->save(x, "input x");
    node->save(out, "output y");
    node->backward = [act, slope](Node& n, const Tensor& dy) {
      Tensor dx = like(dy);
      activation_backward(dx, dy, n.saved_tensor(0), n.saved_tensor(1), act, slope);
      n.accumulate(0, dx);
    };
  }
  return out;
}

Var relu(const Var& x) { return activation(x, Activation::ReLU); }
Var leaky_relu(const Var& x, double slope) { return activation(x, Activation::LeakyReLU, slope); }
Var sigmoid(const Var& x) { return activation(x, Activation::Sigmoid); }
Var tanh(const Var& x) { return activation(x, Activation::Tanh); }

// ------------------------------------------------------------------------------------ pooling

Var maxpool2d(const Var& x, Pool2dParams p) {
  check_defined(x, "maxpool2d", "input");
  const Shape out = pool2d_output_shape(x.shape(), p, "ag::maxpool2d");
  Tensor y = like(out, x.value());
  Tensor argmax = Tensor::empty(out, DType::I32, x.value().device());
  maxpool2d_forward(y, argmax, x.value(), p);
  auto node = record("maxpool2d", {x});
  Var v = Var::result(y, node);
  if (node) {
    node->detail = str("k=", p.kernel, " s=", p.stride, " p=", p.pad);
    node->save(x, "input x");
    node->save(v, "output y");
    node->backward = [p, argmax](Node& n, const Tensor& dy) {
      Tensor dx = like(n.saved_tensor(0));
      maxpool2d_backward(dx, dy, n.saved_tensor(0), n.saved_tensor(1), argmax, p);
      n.accumulate(0, dx);
    };
  }
  return v;
}

Var avgpool2d(const Var& x, Pool2dParams p) {
  check_defined(x, "avgpool2d", "input");
  Tensor y = like(pool2d_output_shape(x.shape(), p, "ag::avgpool2d"), x.value());
  avgpool2d_forward(y, x.value(), p);
  auto node = record("avgpool2d", {x});
  if (node) {
    node->detail = str("k=", p.kernel, " s=", p.stride, " p=", p.pad);
    const Shape in = x.shape();
    node->backward = [p, in](Node& n, const Tensor& dy) {
      Tensor dx = like(in, dy);
      avgpool2d_backward(dx, dy, p);
      n.accumulate(0, dx);
    };
  }
  return Var::result(y, node);
}

Var global_avgpool(const Var& x) {
  check_defined(x, "global_avgpool", "input");
  MINIDL_CHECK(x.value().dim() == 4, "ag::global_avgpool: expected x (N, C, H, W), got ",
               x.value().describe());
  Tensor y = like(Shape{x.shape()[0], x.shape()[1], 1, 1}, x.value());
  global_avgpool_forward(y, x.value());
  auto node = record("global_avgpool", {x});
  if (node) {
    const Shape in = x.shape();
    node->backward = [in](Node& n, const Tensor& dy) {
      Tensor dx = like(in, dy);
      global_avgpool_backward(dx, dy);
      n.accumulate(0, dx);
    };
  }
  return Var::result(y, node);
}

// ------------------------------------------------------------------------------------ loss

Var cross_entropy(const Var& logits, const Tensor& labels, double eps, Tensor* correct) {
  check_defined(logits, "cross_entropy", "logits");
  MINIDL_CHECK(logits.value().dim() == 2, "ag::cross_entropy: logits must be (N, K), got ",
               logits.value().describe());
  const Tensor& z = logits.value();
  Tensor loss = like(Shape{1}, z), probs = like(z);
  Tensor hits = Tensor::empty(Shape{1}, DType::I32, z.device());
  softmax_xent_forward(loss, probs, hits, z, labels, eps);
  if (correct) *correct = hits;
  auto node = record("cross_entropy", {logits});
  if (node) {
    node->detail = eps > 0 ? str("smoothing=", eps) : std::string();
    // probs and labels belong to this call alone (labels: the caller's; cloned so that reusing the
    // label buffer for the next batch cannot change this backward).
    const Tensor t = labels.clone();
    node->backward = [probs, t, eps](Node& n, const Tensor& dloss) {
      // dL/dz = dL/dloss * (p - q) / N: the seed's value is the kernel's `scale`.
      const double scale = dloss.dtype() == DType::F64 ? dloss.item<double>()
                                                       : static_cast<double>(dloss.item<float>());
      Tensor dz = like(probs);
      softmax_xent_backward(dz, probs, t, eps, scale);
      n.accumulate(0, dz);
    };
  }
  return Var::result(loss, node);
}

// ------------------------------------------------------------------------------------ dropout

Var dropout(const Var& x, double p, Generator& gen, bool training) {
  check_defined(x, "dropout", "input");
  if (!training) return x;  // the identity: no node, the same Var
  Tensor y = like(x.value());
  Tensor mask = Tensor::empty(x.shape(), DType::U8, x.value().device());
  // A fresh range of Philox words, as the Dropout layer reserves it (layers/basic.cpp).
  const uint64_t offset = gen.reserve(static_cast<uint64_t>(x.value().numel()));
  dropout_forward(y, mask, x.value(), p, gen.seed(), offset);
  auto node = record("dropout", {x});
  if (node) {
    node->detail = str("p=", p);
    node->backward = [mask, p](Node& n, const Tensor& dy) {
      Tensor dx = like(dy);
      dropout_backward(dx, dy, mask, p);
      n.accumulate(0, dx);
    };
  }
  return Var::result(y, node);
}

// ------------------------------------------------------------------------------------ elementwise

Var add(const Var& a, const Var& b) {
  check_defined(a, "add", "left operand");
  check_defined(b, "add", "right operand");
  Tensor y = like(a.value());
  ::minidl::add(y, a.value(), b.value());
  auto node = record("add", {a, b});
  if (node) {
    // d(a + b)/da = d(a + b)/db = 1: the output gradient goes to both inputs unchanged.
    node->backward = [](Node& n, const Tensor& dy) {
      n.accumulate(0, dy);
      n.accumulate(1, dy);
    };
  }
  return Var::result(y, node);
}

Var add_scaled(const Var& a, const Var& b, double alpha) {
  check_defined(a, "add_scaled", "left operand");
  check_defined(b, "add_scaled", "right operand");
  Tensor y = like(a.value());
  ::minidl::add_scaled(y, a.value(), b.value(), alpha);
  auto node = record("add_scaled", {a, b});
  if (node) {
    node->detail = str("alpha=", alpha);
    node->backward = [alpha](Node& n, const Tensor& dy) {
      n.accumulate(0, dy);
      if (n.needs(1)) {
        // db = alpha dy, as the same kernel: 0 + alpha dy.
        Tensor db = like(dy);
        Tensor zero = Tensor::zeros(dy.shape(), dy.dtype(), dy.device());
        ::minidl::add_scaled(db, zero, dy, alpha);
        n.accumulate(1, db);
      }
    };
  }
  return Var::result(y, node);
}

// ------------------------------------------------------------------------------------ views

Var view(const Var& x, const Shape& shape) {
  check_defined(x, "view", "input");
  MINIDL_CHECK(shape.numel() == x.value().numel(), "ag::view: cannot view ", x.value().describe(),
               " as ", shape, " (", shape.numel(), " elements)");
  auto node = record("view", {x});
  if (node) {
    const Shape in = x.shape();
    node->backward = [in](Node& n, const Tensor& dy) { n.accumulate(0, dy.view(in)); };
  }
  // A view shares the data, so it shares the version counter: writing through either is seen by
  // every node that saved the other.
  return Var::result(x.value().view(shape), node, x.version_counter());
}

Var flatten(const Var& x) {
  check_defined(x, "flatten", "input");
  MINIDL_CHECK(x.value().dim() >= 2, "ag::flatten: expected (N, ...) with at least 2 dimensions, got ",
               x.value().describe());
  return view(x, Shape{x.shape()[0], x.value().numel() / x.shape()[0]});
}

}  // namespace minidl::ag

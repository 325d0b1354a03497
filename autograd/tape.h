// A define-by-run tape: reverse-mode automatic differentiation over minidl's kernels.
//
// Every op in autograd/ops.h computes its result with the same kernel function the explicit layer
// calls (conv2d_forward, batchnorm_forward_train, ...; the op table selects the backend) and, when
// an input needs a gradient, records a Node: the op's name, its inputs (edges), the tensors its
// backward will read (saved, with the version they had) and a closure that calls the op's backward
// kernels (conv2d_backward_data, ...). Nothing else differs from the explicit layers, which is why
// a model written on the tape gets the explicit model's gradients bit for bit (tests/autograd).
//
//   Var x(tensor);                        // a leaf; Var(tensor, true, "w") wants a gradient
//   Var y = ag::relu(ag::linear(x, w, b));
//   Var loss = ag::cross_entropy(y, labels);
//   loss.backward();                      // w.grad() and b.grad() now hold dL/dw, dL/db
//
// backward() walks the nodes reachable from the root in reverse topological order (every node runs
// after all the nodes that use its output, so its output gradient is complete when it runs) and
// adds each contribution into the input's gradient (a Var used twice, fan-out, receives the sum).
// Leaves keep and accumulate their gradient across backward calls (zero_grad() clears it), as
// parameters do in the explicit layers; the gradient of an intermediate result is recomputed by
// each backward and kept for inspection (Var::grad, the graph drawing).
//
// After a backward the graph's saved tensors are released unless retain_graph is set; a second
// backward through a released graph is an error, as is a backward from a non-scalar without a seed
// gradient, and a backward that needs a saved tensor that was modified in place after it was saved
// (each Var's value has a version counter, shared with its views; in-place changes bump it).
// docs/autograd.md explains all of this with one residual block on the tape and in explicit layers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace minidl::ag {

struct Node;
struct VarImpl;

// A tensor, its gradient and the node that made it (none for a leaf).
class Var {
 public:
  Var() = default;
  // A leaf. requires_grad: backward computes dL/d(this); name: shown in errors and drawings.
  explicit Var(Tensor value, bool requires_grad = false, std::string name = "");

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const;
  // For writing into the value in place: bumps the version counter, so that a backward that saved
  // this value before the change refuses to run (instead of silently using the new numbers).
  Tensor& mutable_value();
  // The gradient of the last backward (leaves: accumulated over backward calls); undefined when no
  // backward has reached this Var.
  Tensor grad() const;
  void zero_grad();  // leaves: forget the accumulated gradient
  bool requires_grad() const;
  bool is_leaf() const;
  const std::string& name() const;
  Var& set_name(std::string name);
  const Shape& shape() const { return value().shape(); }
  // The node that computed this Var (null for a leaf).
  const std::shared_ptr<Node>& grad_fn() const;
  uint64_t version() const;

  struct BackwardOptions {
    Tensor seed;                // dL/d(this); may be omitted only for a one-element Var (then 1)
    bool retain_graph = false;  // keep the saved tensors so that backward can run again
  };
  void backward(const BackwardOptions& opt);
  void backward() { backward(BackwardOptions{}); }

  // Internal (used by the ops): a non-leaf result of `node`, sharing `version` with a base when it
  // is a view of one (nullptr: a new counter).
  static Var result(Tensor value, std::shared_ptr<Node> node,
                    std::shared_ptr<uint64_t> version = nullptr);
  VarImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<uint64_t>& version_counter() const;

 private:
  std::shared_ptr<VarImpl> impl_;
};

// A tensor a node keeps for its backward, with the version its Var had when it was saved.
struct SavedTensor {
  Tensor tensor;
  std::shared_ptr<uint64_t> version;
  uint64_t saved_version = 0;
  std::string what;  // "input x", "weight", "output"
};

// A gradient slot: the Var's gradient for this backward. `owned`: the tensor belongs to the slot
// alone, so accumulating kernels may add into it in place (a contribution that was handed over as
// is, e.g. the identity's gradient, is shared and copied before any in-place addition).
struct GradSlot {
  Tensor grad;
  bool owned = false;
};

struct Node {
  std::string op;      // "conv2d", "relu", "add", ...
  std::string detail;  // settings for the drawing: "k=3x3 s=1 p=1"
  int64_t id = 0;      // creation order
  std::vector<Var> inputs;
  std::vector<SavedTensor> saved;
  Shape out_shape;
  DType out_dtype = DType::F32;
  GradSlot out_grad;  // dL/d(output) during and after a backward
  bool released = false;
  // Reads out_grad and adds dL/d(input i) into the inputs with accumulate()/grad_sink().
  std::function<void(Node&, const Tensor& dy)> backward;

  // Whether input i wants a gradient.
  bool needs(size_t i) const;
  // Saves v's value for the backward (checked against v's version when read).
  void save(const Var& v, std::string what);
  // Saved tensor i; throws when its Var was modified in place since it was saved.
  const Tensor& saved_tensor(size_t i) const;
  // Adds `g` as a contribution to dL/d(input i): the first is kept as is, later ones are summed.
  void accumulate(size_t i, const Tensor& g);
  // The gradient tensor of input i, allocated as zeros if none, for kernels that add into their
  // output (parameter gradients: conv2d_backward_weight, batchnorm dgamma, ...).
  Tensor& grad_sink(size_t i);
  // "conv2d #12"
  std::string who() const;
};

// Starts recording an op: returns the node when gradients are being recorded and some input
// requires one, else null (the op then returns a plain Var). The op fills in backward and saves.
std::shared_ptr<Node> record(const char* op, std::vector<Var> inputs);

// Whether ops record (false inside a NoGrad scope).
bool grad_enabled();
// A scope in which ops record nothing (evaluation, optimizer updates):
//   { ag::NoGrad no_grad; ... }
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

// The nodes reachable from `root`, in the order backward runs them (reverse topological: every
// node comes after all nodes that consume its output).
std::vector<Node*> backward_order(const Var& root);

// The graph below `root` in Graphviz DOT: one box per op (name, settings, output shape, norm of
// the output's gradient after a backward), one ellipse per leaf (name, shape, gradient norm).
std::string to_dot(const Var& root);
// Writes to_dot(root) to `path` (atomically); a path ending in ".svg" is rendered with Graphviz's
// `dot -Tsvg`, an error naming the fix when `dot` is not installed.
void write_graph(const Var& root, const std::string& path);

}  // namespace minidl::ag

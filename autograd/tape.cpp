// The tape (autograd/tape.h): Vars, nodes, the backward walk, the graph drawing.
#include "autograd/tape.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "kernels/elementwise.h"

namespace minidl::ag {

struct VarImpl {
  Tensor value;
  GradSlot leaf_grad;  // leaves only: the accumulated gradient
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;
  std::shared_ptr<uint64_t> version;
  std::string name;
};

namespace {

thread_local bool g_grad_enabled = true;
int64_t g_next_node_id = 0;

// The slot that receives dL/dv: the leaf's own, or the output slot of the node that made v.
GradSlot& slot_of(const Var& v) { return v.is_leaf() ? v.impl()->leaf_grad : v.grad_fn()->out_grad; }

void add_into(GradSlot& s, const Tensor& g) {
  if (!s.grad.defined()) {
    s.grad = g;
    s.owned = false;
    return;
  }
  check_same_shape(s.grad, g, "autograd: gradient accumulation");
  Tensor sum = Tensor::empty(g.shape(), g.dtype(), g.device());
  add(sum, s.grad, g);
  s.grad = sum;
  s.owned = true;
}

}  // namespace

// ------------------------------------------------------------------------------------------ Var

Var::Var(Tensor value, bool requires_grad, std::string name) : impl_(std::make_shared<VarImpl>()) {
  MINIDL_CHECK(value.defined(), "ag::Var: the value is an undefined tensor");
  impl_->value = std::move(value);
  impl_->requires_grad = requires_grad;
  impl_->version = std::make_shared<uint64_t>(0);
  impl_->name = std::move(name);
}

Var Var::result(Tensor value, std::shared_ptr<Node> node, std::shared_ptr<uint64_t> version) {
  Var v;
  v.impl_ = std::make_shared<VarImpl>();
  v.impl_->value = std::move(value);
  v.impl_->requires_grad = node != nullptr;
  v.impl_->version = version ? std::move(version) : std::make_shared<uint64_t>(0);
  if (node) {
    node->out_shape = v.impl_->value.shape();
    node->out_dtype = v.impl_->value.dtype();
  }
  v.impl_->grad_fn = std::move(node);
  return v;
}

#define MINIDL_VAR_DEFINED(what) MINIDL_CHECK(impl_, "ag::Var::" what ": the Var is undefined")

const Tensor& Var::value() const {
  MINIDL_VAR_DEFINED("value");
  return impl_->value;
}

Tensor& Var::mutable_value() {
  MINIDL_VAR_DEFINED("mutable_value");
  ++*impl_->version;
  return impl_->value;
}

Tensor Var::grad() const {
  MINIDL_VAR_DEFINED("grad");
  return slot_of(*this).grad;
}

void Var::zero_grad() {
  MINIDL_VAR_DEFINED("zero_grad");
  slot_of(*this) = GradSlot{};
}

bool Var::requires_grad() const { return impl_ && impl_->requires_grad; }
bool Var::is_leaf() const { return impl_ && !impl_->grad_fn; }
const std::string& Var::name() const {
  MINIDL_VAR_DEFINED("name");
  return impl_->name;
}
Var& Var::set_name(std::string name) {
  MINIDL_VAR_DEFINED("set_name");
  impl_->name = std::move(name);
  return *this;
}
const std::shared_ptr<Node>& Var::grad_fn() const {
  MINIDL_VAR_DEFINED("grad_fn");
  return impl_->grad_fn;
}
uint64_t Var::version() const {
  MINIDL_VAR_DEFINED("version");
  return *impl_->version;
}
const std::shared_ptr<uint64_t>& Var::version_counter() const {
  MINIDL_VAR_DEFINED("version_counter");
  return impl_->version;
}

// ------------------------------------------------------------------------------------- grad mode

bool grad_enabled() { return g_grad_enabled; }
NoGrad::NoGrad() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGrad::~NoGrad() { g_grad_enabled = prev_; }

// ------------------------------------------------------------------------------------------ Node

std::shared_ptr<Node> record(const char* op, std::vector<Var> inputs) {
  if (!g_grad_enabled) return nullptr;
  bool any = false;
  for (const Var& v : inputs) any = any || v.requires_grad();
  if (!any) return nullptr;
  auto n = std::make_shared<Node>();
  n->op = op;
  n->id = g_next_node_id++;
  n->inputs = std::move(inputs);
  return n;
}

bool Node::needs(size_t i) const { return i < inputs.size() && inputs[i].requires_grad(); }

std::string Node::who() const { return str(op, " #", id); }

void Node::save(const Var& v, std::string what) {
  saved.push_back(SavedTensor{v.value(), v.version_counter(), v.version(), std::move(what)});
}

const Tensor& Node::saved_tensor(size_t i) const {
  MINIDL_CHECK(i < saved.size(), "autograd: ", who(), " reads saved tensor ", i, " of ",
               saved.size());
  const SavedTensor& s = saved[i];
  MINIDL_CHECK(*s.version == s.saved_version, "autograd: ", who(), " needs its saved ", s.what,
               " (", s.tensor.describe(), ") for backward, but it was modified in place after the "
               "forward saved it (version ", s.saved_version, " then, ", *s.version,
               " now), so the gradient would use the wrong numbers. Fix: change a clone() of it, "
               "or make the in-place change after backward()");
  return s.tensor;
}

void Node::accumulate(size_t i, const Tensor& g) {
  if (!needs(i)) return;
  add_into(slot_of(inputs[i]), g);
}

Tensor& Node::grad_sink(size_t i) {
  MINIDL_CHECK(needs(i), "autograd: ", who(), " asked for the gradient of input ", i,
               ", which requires none");
  GradSlot& s = slot_of(inputs[i]);
  const Tensor& v = inputs[i].value();
  if (!s.grad.defined()) {
    s.grad = Tensor::zeros(v.shape(), v.dtype(), v.device());
    s.owned = true;
  } else if (!s.owned) {
    s.grad = s.grad.clone();  // shared with another slot: copy before adding in place
    s.owned = true;
  }
  return s.grad;
}

// ------------------------------------------------------------------------------------- backward

// Depth-first post-order from the root over the input edges, then reversed: a node appears after
// every node that consumes its output. Iterative, so that a deep network cannot overflow the stack.
std::vector<Node*> backward_order(const Var& root) {
  std::vector<Node*> post;
  if (!root.defined() || !root.grad_fn()) return post;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<Node*, size_t>> stack{{root.grad_fn().get(), 0}};
  seen.insert(root.grad_fn().get());
  while (!stack.empty()) {
    auto& [n, next] = stack.back();
    if (next < n->inputs.size()) {
      const Var& in = n->inputs[next++];
      Node* child = in.defined() ? in.grad_fn().get() : nullptr;
      if (child && seen.insert(child).second) stack.push_back({child, 0});
    } else {
      post.push_back(n);
      stack.pop_back();
    }
  }
  return {post.rbegin(), post.rend()};
}

void Var::backward(const BackwardOptions& opt) {
  MINIDL_VAR_DEFINED("backward");
  MINIDL_CHECK(requires_grad(), "autograd: backward() from a Var that requires no gradient (",
               value().describe(), "): no input of the ops that made it has requires_grad, or it "
               "was computed inside ag::NoGrad");
  Tensor seed = opt.seed;
  if (!seed.defined()) {
    MINIDL_CHECK(value().numel() == 1, "autograd: backward() from a non-scalar ",
                 value().describe(), " needs a seed gradient dL/d(output) of the same shape "
                 "(BackwardOptions::seed); only a one-element output (a loss) has the implicit "
                 "seed 1");
    seed = Tensor::full(value().shape(), 1.0, value().dtype(), value().device());
  }
  check_same_shape(seed, value(), "autograd: backward seed");
  MINIDL_CHECK(seed.dtype() == value().dtype() && seed.device() == value().device(),
               "autograd: backward seed ", seed.describe(), " must match the output ",
               value().describe());

  const std::vector<Node*> order = backward_order(*this);
  for (Node* n : order)
    MINIDL_CHECK(!n->released, "autograd: backward through ", n->who(), " a second time: the "
                 "first backward released the tensors it saved. Pass retain_graph = true to the "
                 "first backward to run backward through the same graph again");
  // An intermediate's gradient belongs to one backward: clear them all before summing anew.
  for (Node* n : order) n->out_grad = GradSlot{};

  add_into(slot_of(*this), seed);
  for (Node* n : order) {
    const Tensor dy = n->out_grad.grad;
    if (dy.defined()) n->backward(*n, dy);
  }
  if (!opt.retain_graph)
    for (Node* n : order) {
      n->saved.clear();
      n->backward = nullptr;
      n->released = true;
    }
}

// -------------------------------------------------------------------------------------- drawing

namespace {

double l2_norm(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  double s = 0;
  if (h.dtype() == DType::F64)
    for (double v : h.to_vector<double>()) s += v * v;
  else if (h.dtype() == DType::F32)
    for (float v : h.to_vector<float>()) s += double(v) * v;
  else
    return NAN;
  return std::sqrt(s);
}

std::string shape_text(const Shape& s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

// Quotes escaped for a DOT string; the labels' line breaks are DOT's own "\n" escapes, so
// backslashes pass through.
std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string to_dot(const Var& root) {
  std::ostringstream o;
  o << "digraph tape {\n  rankdir=BT;\n  node [fontname=\"monospace\", fontsize=10];\n";
  std::unordered_map<const VarImpl*, std::string> leaves;
  auto grad_text = [](const Tensor& g) {
    return g.defined() ? str("\\n|grad| = ", l2_norm(g)) : std::string();
  };
  auto leaf_id = [&](const Var& v) {
    auto it = leaves.find(v.impl());
    if (it != leaves.end()) return it->second;
    const std::string id = str("v", leaves.size());
    leaves[v.impl()] = id;
    const std::string label = (v.name().empty() ? std::string("leaf") : v.name()) + "\\n" +
                              shape_text(v.shape()) + grad_text(v.grad());
    o << "  " << id << " [shape=ellipse, style=filled, fillcolor=\""
      << (v.requires_grad() ? "lightblue" : "lightgrey") << "\", label=\"" << escape(label)
      << "\"];\n";
    return id;
  };
  const std::vector<Node*> order = backward_order(root);
  for (Node* n : order) {
    std::string label = n->op + (n->detail.empty() ? "" : " " + n->detail) + "\\n" +
                        shape_text(n->out_shape) + grad_text(n->out_grad.grad);
    o << "  n" << n->id << " [shape=box, style=filled, fillcolor=\"lightyellow\", label=\""
      << escape(label) << "\"];\n";
  }
  for (Node* n : order)
    for (const Var& in : n->inputs) {
      const std::string from = in.grad_fn() ? str("n", in.grad_fn()->id) : leaf_id(in);
      o << "  " << from << " -> n" << n->id << ";\n";
    }
  if (root.defined() && !root.grad_fn()) leaf_id(root);
  o << "}\n";
  return o.str();
}

void write_graph(const Var& root, const std::string& path) {
  namespace fs = std::filesystem;
  const bool svg = path.size() > 4 && path.substr(path.size() - 4) == ".svg";
  const std::string dot_path = svg ? path + ".dot.tmp" : path + ".tmp";
  {
    std::ofstream f(dot_path, std::ios::binary);
    MINIDL_CHECK(f.good(), "ag::write_graph: cannot write '", dot_path, "'");
    f << to_dot(root);
    MINIDL_CHECK(f.good(), "ag::write_graph: writing '", dot_path, "' failed");
  }
  std::error_code ec;
  if (!svg) {
    fs::rename(dot_path, path, ec);
    MINIDL_CHECK(!ec, "ag::write_graph: cannot rename '", dot_path, "' to '", path, "': ",
                 ec.message());
    return;
  }
  const bool have_dot = std::system("command -v dot > /dev/null 2>&1") == 0;
  if (!have_dot) fs::remove(dot_path, ec);
  MINIDL_CHECK(have_dot, "ag::write_graph: '", path, "' needs Graphviz's `dot` to render SVG; "
               "install it (Debian: apt-get install graphviz) or write a .dot file instead");
  const std::string svg_tmp = path + ".tmp";
  const std::string cmd = str("dot -Tsvg '", dot_path, "' -o '", svg_tmp, "'");
  const int rc = std::system(cmd.c_str());
  fs::remove(dot_path, ec);
  MINIDL_CHECK(rc == 0, "ag::write_graph: `", cmd, "` failed (exit ", rc, ")");
  fs::rename(svg_tmp, path, ec);
  MINIDL_CHECK(!ec, "ag::write_graph: cannot rename '", svg_tmp, "' to '", path, "': ",
               ec.message());
}

}  // namespace minidl::ag

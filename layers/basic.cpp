// Flatten, Dropout and Sequential (layers/basic.h).
//
// As every layer: input gradients are overwritten (Dropout's dx_ buffer) and parameter gradients
// accumulate (here only in Sequential's children). Flatten's output and input gradient are views
// of the tensors it is given, except for a channels-last input with H*W > 1, converted to and
// from NCHW in buffers of its own (basic.h).
#include "layers/basic.h"

#include "kernels/convert.h"
#include "kernels/dropout.h"
#include "layers/forward_observer.h"

namespace minidl {

// ---------------------------------------------------------------- Flatten

Shape Flatten::output_shape(const Shape& in) const {
  MINIDL_CHECK(in.dim() >= 2, who(), ": expected an input (N, ...) with at least 2 dimensions, got ",
               in);
  int64_t features = 1;
  for (int d = 1; d < in.dim(); ++d) features *= in[d];
  return Shape{in[0], features};
}

Tensor Flatten::forward(const Tensor& x, Mode) {
  check_input(x);
  const Shape out = output_shape(x.shape());
  in_shape_ = x.shape();
  in_layout_ = x.layout();
  if (layouts_coincide(x.shape()) || x.layout() == Layout::NCHW) return x.view(out);
  ensure_tensor(nchw_, x.shape(), x.dtype(), x.device(), Layout::NCHW);
  convert(nchw_, x);  // (n, h, w, c) -> (n, c, h, w): PyTorch's flatten order
  return nchw_.view(out);
}

Tensor Flatten::backward(const Tensor& dy) {
  MINIDL_CHECK(in_shape_.dim() > 0, who(), ": backward called before forward");
  check_shape(dy, output_shape(in_shape_), who().c_str(), "output gradient");
  const Tensor g = dy.view(in_shape_);  // NCHW
  if (in_layout_ == Layout::NCHW) return g;
  if (layouts_coincide(in_shape_)) return g.relabel(in_layout_);
  ensure_tensor(dx_, in_shape_, dy.dtype(), dy.device(), in_layout_);
  convert(dx_, g);
  return dx_;
}

// ---------------------------------------------------------------- Dropout

Dropout::Dropout(double p, uint64_t seed) : Module("Dropout"), p_(p), gen_(seed) {
  MINIDL_CHECK(p >= 0.0 && p < 1.0, "Dropout: drop probability p must be in [0, 1), got ", p);
}

std::string Dropout::describe() const { return str("Dropout(p=", p_, ")"); }

Tensor Dropout::forward(const Tensor& x, Mode mode) {
  check_input(x);
  last_mode_ = mode;
  if (mode == Mode::Eval) return x;
  ensure_tensor(y_, x.shape(), x.dtype(), x.device(), x.layout());
  ensure_tensor(mask_, x.shape(), DType::U8, x.device(), x.layout());
  // A fresh, disjoint range of Philox words for this mask: (seed, offset) is all a kernel needs.
  const uint64_t offset = gen_.reserve(static_cast<uint64_t>(x.numel()));
  dropout_forward(y_, mask_, x, p_, gen_.seed(), offset);
  return y_;
}

Tensor Dropout::backward(const Tensor& dy) {
  if (last_mode_ == Mode::Eval) return dy;  // the forward was the identity
  MINIDL_CHECK(mask_.defined(), who(), ": backward called before forward");
  check_shape(dy, mask_.shape(), who().c_str(), "output gradient");
  ensure_tensor(dx_, dy.shape(), dy.dtype(), dy.device(), dy.layout());
  dropout_backward(dx_, dy, mask_, p_);
  return dx_;
}

// ---------------------------------------------------------------- Sequential

void Sequential::check_name(const std::string& name) const {
  MINIDL_CHECK(!name.empty(), who(), ": add() needs a name; add(layer) numbers it, add_transparent(layer) ",
               "gives it none");
  for (const auto& [n, child] : children())
    MINIDL_CHECK(n != name, who(), ": a child named '", name, "' exists already");
}

Tensor Sequential::forward(const Tensor& x, Mode mode) {
  check_input(x);
  // A wrong input is reported before any work, by this container's output_shape (a composite's
  // override names the block or model and what it expected).
  out_shape_ = output_shape(x.shape());
  forwarded_ = true;
  Tensor h = x;
  for (auto& layer : layers_) {
    h = layer->forward(h, mode);
    if (forward_observer()) forward_observer()(*layer, h);
  }
  return h;
}

Tensor Sequential::backward(const Tensor& dy) {
  MINIDL_CHECK(forwarded_, who(), ": backward called before forward");
  check_shape(dy, out_shape_, who().c_str(), "output gradient");
  // Each child turns the gradient of its output into the gradient of its input (overwriting its
  // own buffer) and adds its parameters' gradients; the chain rule is this loop.
  Tensor g = dy;
  for (size_t i = layers_.size(); i-- > 0;) {
    g = layers_[i]->backward(g);
    backward_done(*layers_[i]);
    MINIDL_CHECK(g.defined() || i == 0, who(), ": ", layers_[i]->who(),
                 " returned no input gradient, but the layers before it need one "
                 "(set_needs_input_grad(false) belongs on the first layer only)");
  }
  return g;
}

Shape Sequential::output_shape(const Shape& in) const {
  Shape s = in;
  for (const auto& layer : layers_) s = layer->output_shape(s);
  return s;
}

int64_t Sequential::forward_flops(const Shape& in) const {
  int64_t flops = 0;
  Shape s = in;
  for (const auto& layer : layers_) {
    flops += layer->forward_flops(s);
    s = layer->output_shape(s);
  }
  return flops;
}

std::string Sequential::describe() const {
  // torch.nn.Sequential's layout: one "(name): child" line per child, nested containers indented.
  std::string out = "Sequential(";
  for (const auto& [name, child] : children()) {
    std::string d = child->describe();
    for (size_t pos = d.find('\n'); pos != std::string::npos; pos = d.find('\n', pos + 1))
      d.insert(pos + 1, "  ");
    out += "\n  " + (name.empty() ? "" : "(" + name + "): ") + d;  // a transparent child has no name
  }
  return out + (children().empty() ? ")" : "\n)");
}

}  // namespace minidl

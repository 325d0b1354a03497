#include "layers/module.h"

#include "layers/forward_observer.h"

namespace minidl {

namespace {
// A child registered under "" (transparent) takes its parent's path.
std::string join(const std::string& a, const std::string& b) {
  if (b.empty()) return a;
  return a.empty() ? b : a + "." + b;
}
}  // namespace

Module::~Module() = default;

namespace {
ForwardObserver& observer_slot() {
  static ForwardObserver f;
  return f;
}
}  // namespace

void set_forward_observer(ForwardObserver observer) { observer_slot() = std::move(observer); }
const ForwardObserver& forward_observer() { return observer_slot(); }

int64_t Module::forward_flops(const Shape& in) const {
  (void)in;
  return 0;
}

std::string Module::who() const { return path_.empty() ? type_ : str(type_, " '", path_, "'"); }

Parameter* Module::register_parameter(const std::string& name, Tensor value) {
  auto p = std::make_unique<Parameter>();
  p->grad = Tensor::zeros(value.shape(), value.dtype(), value.device());
  p->value = std::move(value);
  device_ = p->value.device();
  dtype_ = p->value.dtype();
  has_state_ = true;
  Parameter* raw = p.get();
  params_.emplace_back(name, std::move(p));
  return raw;
}

Tensor* Module::register_buffer(const std::string& name, Tensor value) {
  has_state_ = true;
  buffers_.emplace_back(name, std::make_unique<Tensor>(std::move(value)));
  return buffers_.back().second.get();
}

void Module::register_module(const std::string& name, Module* child) {
  MINIDL_ASSERT(child != nullptr);
  children_.emplace_back(name, child);
  child->set_path(join(path_, name));
  // A container takes the device and dtype of what it holds.
  if (child->has_state_) {
    device_ = child->device_;
    dtype_ = child->dtype_;
    has_state_ = true;
  }
}

void Module::set_path(const std::string& path) {
  path_ = path;
  for (auto& [name, c] : children_) c->set_path(join(path_, name));
}

std::vector<NamedParameter> Module::named_parameters() {
  std::vector<NamedParameter> out;
  for (auto& [name, p] : params_) out.push_back({join(path_, name), p.get()});
  for (auto& [name, c] : children_)
    for (auto& np : c->named_parameters()) out.push_back(np);
  return out;
}

std::vector<NamedBuffer> Module::named_buffers() {
  std::vector<NamedBuffer> out;
  for (auto& [name, b] : buffers_) out.push_back({join(path_, name), b.get()});
  for (auto& [name, c] : children_)
    for (auto& nb : c->named_buffers()) out.push_back(nb);
  return out;
}

int64_t Module::parameter_count() {
  int64_t n = 0;
  for (auto& np : named_parameters()) n += np.param->value.numel();
  return n;
}

FlatParameters& Module::flat_parameters() {
  if (!flat_) {
    MINIDL_CHECK(path_.empty(), who(), ": flat_parameters() belongs to the model (the root module), "
                 "not to a part of it");
    flat_ = std::make_unique<FlatParameters>(named_parameters());
  }
  return *flat_;
}

void Module::zero_grad() {
  if (flat_) {
    flat_->zero_grad();
    return;
  }
  for (auto& [name, p] : params_) p->grad.zero_();
  for (auto& [name, c] : children_) c->zero_grad();
}

void Module::to(Device d) {
  // The flat buffers first: then every parameter is already on `d`, and the loop below leaves it
  // alone (Tensor::to returns the tensor itself when it is already there).
  if (flat_) flat_->to(d);
  for (auto& [name, p] : params_) {
    p->value = p->value.to(d);
    p->grad = p->grad.to(d);
  }
  for (auto& [name, b] : buffers_)
    if (b->defined()) *b = b->to(d);
  for (auto& [name, c] : children_) c->to(d);
  device_ = d;
}

void Module::check_input(const Tensor& x) const {
  MINIDL_CHECK(x.defined(), who(), ": input is undefined");
  if (!has_state_) return;  // stateless layers run wherever their input is
  MINIDL_CHECK(x.device() == device_, who(), ": input is on ", x.device(), " but the layer is on ",
               device_, " (move the model with .to(device) or the input with .to(", device_, "))");
  // A float32 layer also takes bfloat16/float16 input (mixed precision: its float32 parameters are
  // the master weights; the ops take 16-bit activations, kernels/backend.h's dtype column).
  MINIDL_CHECK(x.dtype() == dtype_ || (dtype_ == DType::F32 && is_low_precision(x.dtype())),
               who(), ": input has dtype ", x.dtype(), " but the layer has ", dtype_);
}

void Module::set_backward_hook(const BackwardHook& hook) {
  backward_hook_ = hook;
  for (auto& [name, child] : children_) child->set_backward_hook(hook);
}

}  // namespace minidl

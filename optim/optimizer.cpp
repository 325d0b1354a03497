// The optimizer base: gathering parameters into flat buffers, zero_grad, state loading, and the
// factory. The three optimizers are in optimizers.cpp.
#include "optim/optimizer.h"

#include <cmath>
#include <set>

namespace minidl {

double effective_eps(const OptimizerConfig& cfg) {
  if (cfg.eps >= 0.0) return cfg.eps;
  return cfg.name == "adagrad" ? 1e-10 : 1e-8;
}

Optimizer::Optimizer(std::vector<NamedParameter> params, const OptimizerConfig& cfg)
    : cfg_(cfg), lr_(cfg.lr), params_(std::move(params)) {
  const std::string who = "optimizer " + cfg_.name;
  MINIDL_CHECK(std::isfinite(cfg_.lr) && cfg_.lr > 0.0, who, ": lr must be > 0, got ", cfg_.lr);
  MINIDL_CHECK(std::isfinite(cfg_.weight_decay) && cfg_.weight_decay >= 0.0, who,
               ": weight_decay must be >= 0, got ", cfg_.weight_decay);
  MINIDL_CHECK(!params_.empty(), who, ": no parameters to optimise");

  // Every parameter must live where the first one does: the flat buffer is one allocation.
  const Tensor& first = params_[0].param->value;
  std::set<const Parameter*> seen;
  offsets_.push_back(0);
  for (const NamedParameter& np : params_) {
    MINIDL_CHECK(np.param != nullptr && np.param->value.defined(), who, ": parameter '", np.name,
                 "' has no value");
    const Tensor& v = np.param->value;
    MINIDL_CHECK(v.device() == first.device() && v.dtype() == first.dtype(), who, ": parameter '",
                 np.name, "' is ", v.describe(), " but '", params_[0].name, "' is ",
                 first.describe(), " (all parameters must share one device and dtype)");
    MINIDL_CHECK(seen.insert(np.param).second, who, ": parameter '", np.name,
                 "' is listed twice (it would be updated twice per step)");
    offsets_.push_back(offsets_.back() + v.numel());
  }
  MINIDL_CHECK(offsets_.back() > 0, who, ": the parameters have no elements");

  values_ = Tensor::empty(Shape{offsets_.back()}, first.dtype(), first.device());
  grads_ = Tensor::zeros(Shape{offsets_.back()}, first.dtype(), first.device());
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = *params_[i].param;
    const Shape shape = p.value.shape();
    Tensor value = values_.slice(offsets_[i], offsets_[i + 1]).view(shape);
    value.copy_(p.value);
    p.value = value;
    p.grad = grads_.slice(offsets_[i], offsets_[i + 1]).view(shape);
  }
}

void Optimizer::zero_grad() { grads_.zero_(); }

Tensor Optimizer::flat_zeros() const {
  return Tensor::zeros(values_.shape(), values_.dtype(), values_.device());
}

void Optimizer::check_still_bound() const {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Parameter& p = *params_[i].param;
    const Tensor expect_v = values_.slice(offsets_[i], offsets_[i + 1]);
    const Tensor expect_g = grads_.slice(offsets_[i], offsets_[i + 1]);
    MINIDL_CHECK(p.value.same_data(expect_v) && p.grad.same_data(expect_g), "optimizer ",
                 cfg_.name, ": parameter '", params_[i].name,
                 "' no longer points into the optimizer's flat buffers (it is now ",
                 p.value.describe(), "). The model was moved with .to(device), or the parameter "
                 "replaced, after the optimizer was created: call model.to(device) first, then "
                 "make the optimizer");
  }
}

void Optimizer::load_named_state(const char* who,
                                 const std::vector<std::pair<std::string, Tensor>>& state,
                                 const std::vector<std::pair<std::string, Tensor*>>& buffers,
                                 int64_t step) {
  MINIDL_CHECK(step >= 0, who, ": load_state: step count must be >= 0, got ", step);
  std::string expected;
  for (const auto& [name, buf] : buffers) expected += (expected.empty() ? "'" : ", '") + name + "'";
  if (expected.empty()) expected = "none";
  for (const auto& [name, t] : state) {
    bool known = false;
    for (const auto& b : buffers) known = known || b.first == name;
    MINIDL_CHECK(known, who, ": load_state: unexpected state tensor '", name, "' (expected ",
                 expected, ")");
  }
  // Check everything before copying anything, so a failed load leaves the optimizer unchanged.
  std::vector<const Tensor*> sources;
  for (const auto& [name, buf] : buffers) {
    const Tensor* src = nullptr;
    for (const auto& s : state)
      if (s.first == name) src = &s.second;
    MINIDL_CHECK(src != nullptr, who, ": load_state: state tensor '", name, "' is missing");
    MINIDL_CHECK(src->numel() == buf->numel() && src->dtype() == buf->dtype(), who,
                 ": load_state: state tensor '", name, "' is ", src->describe(), ", expected ",
                 buf->numel(), " elements of ", buf->dtype(),
                 " (was it saved for a different model?)");
    sources.push_back(src);
  }
  for (size_t i = 0; i < buffers.size(); ++i) buffers[i].second->copy_(*sources[i]);
  step_ = step;
}

std::unique_ptr<Optimizer> make_optimizer(std::vector<NamedParameter> params,
                                          const OptimizerConfig& cfg) {
  if (cfg.name == "sgd") return std::make_unique<Sgd>(std::move(params), cfg);
  if (cfg.name == "adam") return std::make_unique<Adam>(std::move(params), cfg, false);
  if (cfg.name == "adamw") return std::make_unique<Adam>(std::move(params), cfg, true);
  if (cfg.name == "adagrad") return std::make_unique<Adagrad>(std::move(params), cfg);
  throw_error(str("unknown optimizer '", cfg.name, "' (known: sgd, adam, adamw, adagrad)"));
}

}  // namespace minidl

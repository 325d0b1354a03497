// The optimizer base: step(lr) around each optimizer's update, state loading, and the registry
// with the factory. The three optimizers are in optimizers.cpp.
#include "optim/optimizer.h"

#include <cmath>

namespace minidl {

double effective_eps(const OptimizerConfig& cfg) {
  if (cfg.eps >= 0.0) return cfg.eps;
  return cfg.name == "adagrad" ? 1e-10 : 1e-8;
}

Optimizer::Optimizer(FlatParameters& params, const OptimizerConfig& cfg)
    : cfg_(cfg), params_(&params), state_device_(params.device()) {
  check_optimizer_config(cfg_);
}

void Optimizer::step(double lr) {
  const std::string who = "optimizer " + cfg_.name;
  MINIDL_CHECK(std::isfinite(lr) && lr >= 0.0, who, ": step: the learning rate must be >= 0, got ",
               lr);
  params_->check_bound(who);
  MINIDL_CHECK(params_->device() == state_device_ || state().empty(), who,
               ": the parameters are on ", params_->device(), " but the optimizer state is on ",
               state_device_, " (the model was moved after the optimizer was made): make the "
               "optimizer after model.to(device)");
  ++step_;
  Tensor values = params_->values();  // a handle: the update writes into the model's buffer
  update(values, params_->grads(), lr);
}

Tensor Optimizer::flat_zeros() const {
  return Tensor::zeros(Shape{params_->numel()}, params_->dtype(), state_device_);
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

void check_optimizer_config(const OptimizerConfig& cfg) { optimizers().at(cfg.name).check(cfg); }

std::string describe_optimizer(const OptimizerConfig& cfg) {
  return str(cfg.name, " (", optimizers().at(cfg.name).describe(cfg), ")");
}

std::unique_ptr<Optimizer> make_optimizer(FlatParameters& params, const OptimizerConfig& cfg) {
  return optimizers().at(cfg.name).make(params, cfg);
}

}  // namespace minidl

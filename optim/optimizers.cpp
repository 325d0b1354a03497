// SGD, Adam/AdamW and Adagrad: hyper-parameter checks (torch.optim's), one flat update per step,
// and named state for checkpoints. The updates themselves are in kernels/optimizer.{h,cpp,cu}.
#include <cmath>

#include "optim/optimizer.h"

namespace minidl {

namespace {

OptimizerConfig named(OptimizerConfig cfg, const char* name) {
  cfg.name = name;
  return cfg;
}

void check_range(bool ok, const char* who, const char* field, const char* expected, double got) {
  MINIDL_CHECK(ok, "optimizer ", who, ": ", field, " must be ", expected, ", got ", got);
}

}  // namespace

// ------------------------------------------------------------------ SGD

Sgd::Sgd(std::vector<NamedParameter> params, const OptimizerConfig& cfg)
    : Optimizer(std::move(params), named(cfg, "sgd")) {
  check_range(std::isfinite(cfg.momentum) && cfg.momentum >= 0.0, "sgd", "momentum", ">= 0",
              cfg.momentum);
  check_range(std::isfinite(cfg.dampening), "sgd", "dampening", "finite", cfg.dampening);
  MINIDL_CHECK(!cfg.nesterov || (cfg.momentum > 0.0 && cfg.dampening == 0.0),
               "optimizer sgd: nesterov requires momentum > 0 and dampening 0 (as in torch), got "
               "momentum ", cfg.momentum, " and dampening ", cfg.dampening);
  if (cfg.momentum > 0.0) momentum_buf_ = flat_zeros();
}

void Sgd::step() {
  check_still_bound();
  ++step_;
  const SgdParams p{lr_, cfg_.momentum, cfg_.dampening, cfg_.weight_decay, cfg_.nesterov};
  sgd_update(values_, grads_, momentum_buf_, p, step_);
}

std::vector<std::pair<std::string, Tensor>> Sgd::state() const {
  if (!momentum_buf_.defined()) return {};
  return {{"momentum_buffer", momentum_buf_}};
}

void Sgd::load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) {
  std::vector<std::pair<std::string, Tensor*>> buffers;
  if (momentum_buf_.defined()) buffers.emplace_back("momentum_buffer", &momentum_buf_);
  load_named_state("optimizer sgd", state, buffers, step);
}

// ------------------------------------------------------------------ Adam / AdamW

Adam::Adam(std::vector<NamedParameter> params, const OptimizerConfig& cfg, bool decoupled)
    : Optimizer(std::move(params), named(cfg, decoupled ? "adamw" : "adam")), decoupled_(decoupled) {
  const char* who = decoupled ? "adamw" : "adam";
  check_range(cfg.beta1 >= 0.0 && cfg.beta1 < 1.0, who, "beta1", "in [0, 1)", cfg.beta1);
  check_range(cfg.beta2 >= 0.0 && cfg.beta2 < 1.0, who, "beta2", "in [0, 1)", cfg.beta2);
  const double eps = effective_eps(cfg_);
  check_range(std::isfinite(eps), who, "eps", "finite", eps);
  exp_avg_ = flat_zeros();
  exp_avg_sq_ = flat_zeros();
}

void Adam::step() {
  check_still_bound();
  ++step_;
  const AdamParams p{lr_, cfg_.beta1, cfg_.beta2, effective_eps(cfg_), cfg_.weight_decay,
                     decoupled_};
  adam_update(values_, grads_, exp_avg_, exp_avg_sq_, p, step_);
}

std::vector<std::pair<std::string, Tensor>> Adam::state() const {
  return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}};
}

void Adam::load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) {
  load_named_state(decoupled_ ? "optimizer adamw" : "optimizer adam", state,
                   {{"exp_avg", &exp_avg_}, {"exp_avg_sq", &exp_avg_sq_}}, step);
}

// ------------------------------------------------------------------ Adagrad

Adagrad::Adagrad(std::vector<NamedParameter> params, const OptimizerConfig& cfg)
    : Optimizer(std::move(params), named(cfg, "adagrad")) {
  check_range(std::isfinite(cfg.lr_decay) && cfg.lr_decay >= 0.0, "adagrad", "lr_decay", ">= 0",
              cfg.lr_decay);
  const double eps = effective_eps(cfg_);
  check_range(std::isfinite(eps), "adagrad", "eps", "finite", eps);
  sum_ = flat_zeros();
}

void Adagrad::step() {
  check_still_bound();
  ++step_;
  const AdagradParams p{lr_, cfg_.lr_decay, cfg_.weight_decay, effective_eps(cfg_)};
  adagrad_update(values_, grads_, sum_, p, step_);
}

std::vector<std::pair<std::string, Tensor>> Adagrad::state() const { return {{"sum", sum_}}; }

void Adagrad::load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) {
  load_named_state("optimizer adagrad", state, {{"sum", &sum_}}, step);
}

}  // namespace minidl

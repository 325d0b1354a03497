// SGD, Adam/AdamW and Adagrad: hyper-parameter checks (torch.optim's), one flat update per step,
// named state for checkpoints, and the registry entry of each (what it reads, how it describes
// itself, how it is made). The updates themselves are in kernels/optimizer.{h,cpp,cu}.
#include <cmath>

#include "optim/optimizer.h"

namespace minidl {

namespace {

OptimizerConfig named(OptimizerConfig cfg, const char* name) {
  cfg.name = name;
  return cfg;
}

void check_range(bool ok, const std::string& who, const char* field, const char* expected,
                 double got) {
  MINIDL_CHECK(ok, "optimizer ", who, ": ", field, " must be ", expected, ", got ", got);
}

void check_weight_decay(const OptimizerConfig& cfg) {
  check_range(std::isfinite(cfg.weight_decay) && cfg.weight_decay >= 0.0, cfg.name,
              "weight_decay", ">= 0", cfg.weight_decay);
}

// Nesterov momentum is SGD's: a switch another optimizer would silently ignore.
void check_no_nesterov(const OptimizerConfig& cfg) {
  MINIDL_CHECK(!cfg.nesterov, "optimizer ", cfg.name,
               ": nesterov applies to sgd only (nesterov momentum)");
}

}  // namespace

// ------------------------------------------------------------------ SGD

namespace {

void check_sgd(const OptimizerConfig& cfg) {
  check_weight_decay(cfg);
  check_range(std::isfinite(cfg.momentum) && cfg.momentum >= 0.0, cfg.name, "momentum", ">= 0",
              cfg.momentum);
  check_range(std::isfinite(cfg.dampening), cfg.name, "dampening", "finite", cfg.dampening);
  MINIDL_CHECK(!cfg.nesterov || (cfg.momentum > 0.0 && cfg.dampening == 0.0),
               "optimizer sgd: nesterov requires momentum > 0 and dampening 0 (as in torch), got "
               "momentum ", cfg.momentum, " and dampening ", cfg.dampening);
}

std::string describe_sgd(const OptimizerConfig& cfg) {
  return str("momentum ", cfg.momentum,
             cfg.dampening != 0.0 ? str(", dampening ", cfg.dampening) : std::string(),
             ", weight decay ", cfg.weight_decay, cfg.nesterov ? ", nesterov" : "");
}

}  // namespace

Sgd::Sgd(FlatParameters& params, const OptimizerConfig& cfg)
    : Optimizer(params, named(cfg, "sgd")) {
  if (cfg_.momentum > 0.0) momentum_buf_ = flat_zeros();
}

void Sgd::update(Tensor& values, const Tensor& grads, double lr) {
  const SgdParams p{lr, cfg_.momentum, cfg_.dampening, cfg_.weight_decay, cfg_.nesterov};
  sgd_update(values, grads, momentum_buf_, p, step_);
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

namespace {

void check_adam(const OptimizerConfig& cfg) {
  check_weight_decay(cfg);
  check_no_nesterov(cfg);
  check_range(cfg.beta1 >= 0.0 && cfg.beta1 < 1.0, cfg.name, "beta1", "in [0, 1)", cfg.beta1);
  check_range(cfg.beta2 >= 0.0 && cfg.beta2 < 1.0, cfg.name, "beta2", "in [0, 1)", cfg.beta2);
  const double eps = effective_eps(cfg);
  check_range(std::isfinite(eps), cfg.name, "eps", "finite", eps);
}

std::string describe_adam(const OptimizerConfig& cfg) {
  return str("betas (", cfg.beta1, ", ", cfg.beta2, "), eps ", effective_eps(cfg),
             cfg.name == "adamw" ? ", decoupled weight decay " : ", weight decay ", cfg.weight_decay);
}

}  // namespace

Adam::Adam(FlatParameters& params, const OptimizerConfig& cfg, bool decoupled)
    : Optimizer(params, named(cfg, decoupled ? "adamw" : "adam")), decoupled_(decoupled) {
  exp_avg_ = flat_zeros();
  exp_avg_sq_ = flat_zeros();
}

void Adam::update(Tensor& values, const Tensor& grads, double lr) {
  const AdamParams p{lr, cfg_.beta1, cfg_.beta2, effective_eps(cfg_), cfg_.weight_decay,
                     decoupled_};
  adam_update(values, grads, exp_avg_, exp_avg_sq_, p, step_);
}

std::vector<std::pair<std::string, Tensor>> Adam::state() const {
  return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}};
}

void Adam::load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) {
  load_named_state(decoupled_ ? "optimizer adamw" : "optimizer adam", state,
                   {{"exp_avg", &exp_avg_}, {"exp_avg_sq", &exp_avg_sq_}}, step);
}

// ------------------------------------------------------------------ Adagrad

namespace {

void check_adagrad(const OptimizerConfig& cfg) {
  check_weight_decay(cfg);
  check_no_nesterov(cfg);
  check_range(std::isfinite(cfg.lr_decay) && cfg.lr_decay >= 0.0, cfg.name, "lr_decay", ">= 0",
              cfg.lr_decay);
  const double eps = effective_eps(cfg);
  check_range(std::isfinite(eps), cfg.name, "eps", "finite", eps);
}

std::string describe_adagrad(const OptimizerConfig& cfg) {
  return str("lr decay ", cfg.lr_decay, ", eps ", effective_eps(cfg), ", weight decay ",
             cfg.weight_decay);
}

}  // namespace

Adagrad::Adagrad(FlatParameters& params, const OptimizerConfig& cfg)
    : Optimizer(params, named(cfg, "adagrad")) {
  sum_ = flat_zeros();
}

void Adagrad::update(Tensor& values, const Tensor& grads, double lr) {
  const AdagradParams p{lr, cfg_.lr_decay, cfg_.weight_decay, effective_eps(cfg_)};
  adagrad_update(values, grads, sum_, p, step_);
}

std::vector<std::pair<std::string, Tensor>> Adagrad::state() const { return {{"sum", sum_}}; }

void Adagrad::load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) {
  load_named_state("optimizer adagrad", state, {{"sum", &sum_}}, step);
}

// ------------------------------------------------------------------ the registry

namespace {

std::unique_ptr<Optimizer> make_sgd(FlatParameters& p, const OptimizerConfig& c) {
  return std::make_unique<Sgd>(p, c);
}
std::unique_ptr<Optimizer> make_adam(FlatParameters& p, const OptimizerConfig& c) {
  return std::make_unique<Adam>(p, c, /*decoupled=*/false);
}
std::unique_ptr<Optimizer> make_adamw(FlatParameters& p, const OptimizerConfig& c) {
  return std::make_unique<Adam>(p, c, /*decoupled=*/true);
}
std::unique_ptr<Optimizer> make_adagrad(FlatParameters& p, const OptimizerConfig& c) {
  return std::make_unique<Adagrad>(p, c);
}

}  // namespace

const Registry<OptimizerKind>& optimizers() {
  static const Registry<OptimizerKind> r(
      "optimizer",
      {{"sgd", "SGD with momentum, dampening, nesterov and L2 weight decay (torch.optim.SGD)",
        {check_sgd, describe_sgd, make_sgd}},
       {"adam", "Adam, weight decay added to the gradient (torch.optim.Adam)",
        {check_adam, describe_adam, make_adam}},
       {"adamw", "AdamW: Adam with decoupled weight decay (torch.optim.AdamW)",
        {check_adam, describe_adam, make_adamw}},
       {"adagrad", "Adagrad, initial accumulator 0 (torch.optim.Adagrad)",
        {check_adagrad, describe_adagrad, make_adagrad}}});
  return r;
}

}  // namespace minidl

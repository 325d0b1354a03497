// Optimizers over a model's parameters.
//
// On construction the optimizer gathers every parameter into one contiguous buffer (and every
// gradient into another) and re-points each Parameter's value/grad at its slice. A step is then
// one pass (one kernel launch on a GPU) over all parameters, and zero_grad is one memset. State
// (momentum, Adam moments) lives in buffers of the same flat layout.
//
// Layers hold Parameter* and read p->value / p->grad at every forward/backward, so they see the
// re-pointed tensors without knowing about the optimizer. Module::to(device) however replaces the
// value/grad tensors with fresh ones, which cuts them loose from the flat buffers:
//
//     model.to(device);                      // first
//     auto opt = make_optimizer(model.named_parameters(), cfg);   // then
//
// step() checks that every parameter still points into the flat buffers and throws, naming the
// parameter, when the model was moved (or a parameter replaced) after the optimizer was made.
//
// Update formulas (torch.optim's, exactly) are in kernels/optimizer.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/optimizer.h"
#include "layers/module.h"

namespace minidl {

struct OptimizerConfig {
  std::string name = "sgd";  // sgd | adam | adamw | adagrad
  double lr = 0.1;
  double momentum = 0.0;     // sgd
  double dampening = 0.0;    // sgd
  bool nesterov = false;     // sgd
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999;  // adam/adamw
  // Negative means torch's default for the optimizer: 1e-8 for adam/adamw, 1e-10 for adagrad.
  double eps = -1.0;
  double lr_decay = 0.0;     // adagrad
};
// cfg.eps, or the optimizer's default when it is negative.
double effective_eps(const OptimizerConfig& cfg);

class Optimizer {
 public:
  // Throws, naming the parameter, when the parameters do not share one device and dtype, and,
  // naming the field, when a hyper-parameter is out of range.
  Optimizer(std::vector<NamedParameter> params, const OptimizerConfig& cfg);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update with the current learning rate; increments step_count().
  virtual void step() = 0;
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  int64_t step_count() const { return step_; }
  const OptimizerConfig& config() const { return cfg_; }

  // State for checkpoints: named flat tensors ("momentum_buffer", "exp_avg", ...) plus step count.
  // load_state checks names and sizes and names what does not match.
  virtual std::vector<std::pair<std::string, Tensor>> state() const = 0;
  virtual void load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) = 0;

  const Tensor& flat_values() const { return values_; }
  const Tensor& flat_grads() const { return grads_; }
  const std::vector<NamedParameter>& parameters() const { return params_; }

 protected:
  // Throws when a parameter's value or grad no longer views the flat buffers (see the top).
  void check_still_bound() const;
  // Allocates a zeroed state buffer of the flat layout.
  Tensor flat_zeros() const;
  // Copies `state` into `buffers` by name (every name required, nothing else allowed) and sets the
  // step count. `who` names the optimizer in errors.
  void load_named_state(const char* who, const std::vector<std::pair<std::string, Tensor>>& state,
                        const std::vector<std::pair<std::string, Tensor*>>& buffers, int64_t step);

  OptimizerConfig cfg_;
  double lr_;
  int64_t step_ = 0;
  std::vector<NamedParameter> params_;
  // params_[i] occupies [offsets_[i], offsets_[i + 1]) of the flat buffers.
  std::vector<int64_t> offsets_;
  Tensor values_, grads_;  // flat, all parameters
};

// torch.optim.SGD (momentum, dampening, nesterov, weight decay). State: "momentum_buffer" when
// momentum > 0, none otherwise.
class Sgd : public Optimizer {
 public:
  Sgd(std::vector<NamedParameter> params, const OptimizerConfig& cfg);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) override;

 private:
  Tensor momentum_buf_;
};

// torch.optim.Adam, or AdamW when decoupled. State: "exp_avg", "exp_avg_sq".
class Adam : public Optimizer {
 public:
  Adam(std::vector<NamedParameter> params, const OptimizerConfig& cfg, bool decoupled);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) override;

 private:
  bool decoupled_;
  Tensor exp_avg_, exp_avg_sq_;
};

// torch.optim.Adagrad (initial accumulator 0). State: "sum".
class Adagrad : public Optimizer {
 public:
  Adagrad(std::vector<NamedParameter> params, const OptimizerConfig& cfg);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) override;

 private:
  Tensor sum_;
};

// Throws naming the unknown optimizer and listing the known ones.
std::unique_ptr<Optimizer> make_optimizer(std::vector<NamedParameter> params,
                                          const OptimizerConfig& cfg);

}  // namespace minidl

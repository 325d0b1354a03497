// Optimizers over a model's flat parameter buffers.
//
// The model owns its parameters in one flat value buffer and one flat gradient buffer
// (layers/parameters.h, Module::flat_parameters()); an optimizer works on those buffers and owns
// only its state (momentum, Adam moments), in buffers of the same flat layout. A step is one pass
// (one kernel launch on a GPU) over all parameters:
//
//     model.zero_grad();                      // one memset
//     ... forward, backward ...
//     opt->step(schedule.lr_at(epoch));       // the learning rate comes from the schedule
//
// The learning rate is an argument of step(), not optimizer state: the schedule (optim/schedule.h)
// owns the base learning rate, and whoever needs the last one used records it.
//
// The model may be moved with model.to(device) before or after the optimizer is made (the flat
// buffers move with it). The optimizer state stays where it was made: step() throws when the
// parameters have moved away from it, and when a parameter no longer views the flat buffers.
//
// Update formulas (torch.optim's, exactly) are in kernels/optimizer.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/registry.h"
#include "kernels/optimizer.h"
#include "layers/parameters.h"

namespace minidl {

// Every optimizer's hyper-parameters in one struct; each optimizer reads the fields its registry
// entry lists (see optimizers() below) and ignores the others.
struct OptimizerConfig {
  std::string name = "sgd";  // an entry of optimizers()
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
  // Keeps a reference to `params` (the model's flat buffers: the model must outlive the
  // optimizer) and allocates the state on their device. Throws, naming the field, when a
  // hyper-parameter is out of range (check_optimizer_config).
  Optimizer(FlatParameters& params, const OptimizerConfig& cfg);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter with learning rate `lr` (>= 0) from the gradients in the flat
  // gradient buffer; increments step_count() first (torch counts steps from 1).
  void step(double lr);

  int64_t step_count() const { return step_; }
  const OptimizerConfig& config() const { return cfg_; }
  const FlatParameters& parameters() const { return *params_; }

  // State for checkpoints: named flat tensors ("momentum_buffer", "exp_avg", ...) plus step count.
  // load_state checks names and sizes and names what does not match.
  virtual std::vector<std::pair<std::string, Tensor>> state() const = 0;
  virtual void load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) = 0;

 protected:
  // The update itself, on the flat buffers (step() has checked them and counted the step).
  virtual void update(Tensor& values, const Tensor& grads, double lr) = 0;
  // Allocates a zeroed state buffer of the flat layout.
  Tensor flat_zeros() const;
  // Copies `state` into `buffers` by name (every name required, nothing else allowed) and sets the
  // step count. `who` names the optimizer in errors.
  void load_named_state(const char* who, const std::vector<std::pair<std::string, Tensor>>& state,
                        const std::vector<std::pair<std::string, Tensor*>>& buffers, int64_t step);

  OptimizerConfig cfg_;
  int64_t step_ = 0;

 private:
  FlatParameters* params_;
  Device state_device_;  // where flat_zeros() allocates the state
};

// torch.optim.SGD (momentum, dampening, nesterov, weight decay). State: "momentum_buffer" when
// momentum > 0, none otherwise.
class Sgd : public Optimizer {
 public:
  Sgd(FlatParameters& params, const OptimizerConfig& cfg);
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) override;

 protected:
  void update(Tensor& values, const Tensor& grads, double lr) override;

 private:
  Tensor momentum_buf_;
};

// torch.optim.Adam, or AdamW when decoupled. State: "exp_avg", "exp_avg_sq".
class Adam : public Optimizer {
 public:
  Adam(FlatParameters& params, const OptimizerConfig& cfg, bool decoupled);
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) override;

 protected:
  void update(Tensor& values, const Tensor& grads, double lr) override;

 private:
  bool decoupled_;
  Tensor exp_avg_, exp_avg_sq_;
};

// torch.optim.Adagrad (initial accumulator 0). State: "sum".
class Adagrad : public Optimizer {
 public:
  Adagrad(FlatParameters& params, const OptimizerConfig& cfg);
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state, int64_t step) override;

 protected:
  void update(Tensor& values, const Tensor& grads, double lr) override;

 private:
  Tensor sum_;
};

// What an optimizer's registry entry holds besides its name and help line.
struct OptimizerKind {
  // Throws minidl::Error naming the optimizer and the field when a hyper-parameter this optimizer
  // reads is out of range, or when one it has no use for is switched on (nesterov for adam).
  void (*check)(const OptimizerConfig& cfg);
  // The hyper-parameters it reads, with their values: "momentum 0.9, weight decay 0.0005".
  std::string (*describe)(const OptimizerConfig& cfg);
  std::unique_ptr<Optimizer> (*make)(FlatParameters& params, const OptimizerConfig& cfg);
};

// sgd, adam, adamw, adagrad: for `train --optimizer`, its --help and make_optimizer.
const Registry<OptimizerKind>& optimizers();

// optimizers().at(cfg.name).check(cfg); also throws for an unknown name, listing the known ones.
void check_optimizer_config(const OptimizerConfig& cfg);
// "sgd (momentum 0.9, weight decay 0.0005)": the optimizer and the hyper-parameters it uses.
std::string describe_optimizer(const OptimizerConfig& cfg);
// Throws naming an unknown optimizer and listing the known ones.
std::unique_ptr<Optimizer> make_optimizer(FlatParameters& params, const OptimizerConfig& cfg);

}  // namespace minidl

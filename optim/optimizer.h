// Optimizers over a model's parameters.
//
// On construction the optimizer gathers every parameter into one contiguous buffer (and every
// gradient into another) and re-points each Parameter's value/grad at its slice. A step is then
// one pass (one kernel launch on a GPU) over all parameters, and zero_grad is one memset. State
// (momentum, Adam moments) lives in buffers of the same flat layout.
//
// Update formulas (torch.optim's, exactly) are in kernels/optimizer.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
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
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam/adamw (adagrad eps default 1e-10)
  double lr_decay = 0.0;     // adagrad
};

class Optimizer {
 public:
  Optimizer(std::vector<NamedParameter> params, const OptimizerConfig& cfg);
  virtual ~Optimizer() = default;

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

 protected:
  OptimizerConfig cfg_;
  double lr_;
  int64_t step_ = 0;
  std::vector<NamedParameter> params_;
  Tensor values_, grads_;  // flat, all parameters
};

// Throws naming the unknown optimizer and listing the known ones.
std::unique_ptr<Optimizer> make_optimizer(std::vector<NamedParameter> params,
                                          const OptimizerConfig& cfg);

}  // namespace minidl

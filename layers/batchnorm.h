// BatchNorm2d (torch.nn.BatchNorm2d, affine, track_running_stats): parameters "weight" (gamma, 1s)
// and "bias" (beta, 0s); buffers "running_mean" (0s), "running_var" (1s) and "num_batches_tracked"
// (int32 count, kept for state_dict compatibility). Train mode normalises with batch statistics
// and updates the running ones; eval mode uses the running ones. Math in kernels/batchnorm.h.
#pragma once

#include "kernels/batchnorm.h"
#include "layers/module.h"

namespace minidl {

struct BatchNorm2dConfig {
  int64_t channels = 0;
  double momentum = 0.1;
  double eps = 1e-5;
  DType dtype = DType::F32;
};

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(const BatchNorm2dConfig& cfg);
  Tensor forward(const Tensor& x, Mode mode) override;
  Tensor backward(const Tensor& dy) override;
  Shape output_shape(const Shape& in) const override;
  int64_t forward_flops(const Shape& in) const override;
  std::string describe() const override;
  const BatchNorm2dConfig& config() const { return cfg_; }

  Parameter& weight() { return *gamma_; }
  Parameter& bias() { return *beta_; }
  Tensor& running_mean() { return *running_mean_; }
  Tensor& running_var() { return *running_var_; }

 private:
  BatchNorm2dConfig cfg_;
  Parameter* gamma_ = nullptr;
  Parameter* beta_ = nullptr;
  Tensor* running_mean_ = nullptr;
  Tensor* running_var_ = nullptr;
  Tensor* num_batches_tracked_ = nullptr;
  Mode last_mode_ = Mode::Train;
  Tensor x_, y_, dx_, save_mean_, save_invstd_;
};

}  // namespace minidl

// BatchNorm2d (torch.nn.BatchNorm2d, affine, track_running_stats): parameters "weight" (gamma, 1s)
// and "bias" (beta, 0s); buffers "running_mean" (0s), "running_var" (1s) and "num_batches_tracked"
// (int32 count, kept for state_dict compatibility). Train mode normalises with batch statistics
// and updates the running ones; eval mode uses the running ones. Math in kernels/batchnorm.h.
//
// Synchronised (SyncBatchNorm, `train --sync-bn` under mpirun; set_sync): train mode normalises
// with the statistics of the global batch, all ranks' images. Forward reduces each channel's
// sum, sum of squares and count over the ranks; backward reduces the two channel sums its formula
// needs, sum dy and sum dy * xhat (docs/backprop/sync_batchnorm.md). The running statistics are
// updated from the global statistics, so they are the same on every rank. dweight and dbias stay
// this rank's own sums: the gradient averaging of data-parallel training (dist/grad_sync.h) adds
// them up like every other parameter gradient.
#pragma once

#include <functional>
#include <vector>

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

  // Sums a vector over the ranks of a data-parallel job in place (every rank calls it in the same
  // order, with vectors of the same length). Set: synchronised batch statistics (see the top);
  // empty: this rank's own, as BatchNorm2d always did.
  using ChannelSum = std::function<void(std::vector<double>& v)>;
  void set_sync(ChannelSum sum) { sync_ = std::move(sum); }
  bool synchronised() const { return static_cast<bool>(sync_); }

 private:
  BatchNorm2dConfig cfg_;
  Parameter* gamma_ = nullptr;
  Parameter* beta_ = nullptr;
  Tensor* running_mean_ = nullptr;
  Tensor* running_var_ = nullptr;
  Tensor* num_batches_tracked_ = nullptr;
  Mode last_mode_ = Mode::Train;
  Tensor x_, y_, dx_, save_mean_, save_invstd_;

  // Synchronised mode (set_sync).
  void forward_sync(const Tensor& x, const BatchNormParams& p);
  void backward_sync(const Tensor& dy, const BatchNormParams& p);
  ChannelSum sync_;
  double sync_count_ = 0;                        // M: images x H x W over all ranks
  std::vector<double> sync_mean_, sync_invstd_;  // global statistics of the last forward
  Tensor scratch_mean_, scratch_var_, sync_var_, dgamma_, dbeta_, tmp_, scratch_dx_;
};

}  // namespace minidl

// Batches for training and evaluation: per-epoch shuffling with the seed, optional drop-last,
// CIFAR augmentation (random crop with zero padding, horizontal flip, cutout) and normalisation,
// all fused into one pass by augment_batch (kernels/augment.h).
//
// Background threads (LoaderConfig::workers, one by default) prepare the next batches while the
// caller computes on batch i. With
// `device` = CUDA the uint8 dataset is copied to the GPU once and augmentation runs there as one
// kernel, so the host only draws the random crop/flip numbers; on the CPU the thread augments.
// The random draws depend only on (seed, epoch), so a run is reproducible and resumable.
// On CUDA, start_epoch draws and uploads the whole epoch's order and crop/flip numbers at once and
// next() only queues the kernel on the caller's thread, so no second thread touches the GPU.
// A DataLoader is used from one thread (the one that calls start_epoch and next).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/cifar.h"
#include "kernels/augment.h"

namespace minidl {

struct LoaderConfig {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;
  bool augment = false;  // random crop (pad 4) + horizontal flip
  int cutout = 0;        // cutout square side in pixels (0: off); only with augment
  ChannelStats norm;     // normalisation (usually channel_stats of the training set)
  uint64_t seed = 0;
  Device device = Device::cpu();
  // Data-parallel training (docs/DISTRIBUTED.md), PyTorch's DistributedSampler: every rank draws
  // the same epoch plan (order and augmentation, from seed and epoch) and takes positions rank,
  // rank + world, rank + 2 world, ... of it. With `pad` (training) the plan is first extended by
  // its own first positions to a multiple of `world`, so every rank gets the same number of
  // samples and steps; without (evaluation) the slices are disjoint and cover each sample once,
  // and may differ in length by one. world = 1 is the whole plan, as without these fields.
  int rank = 0;
  int world = 1;
  bool pad = true;
  // Threads preparing batches (--workers, 1 to 64): worker w prepares batches w, w + workers, ...
  // On the CPU, and for a folder dataset on every device (it decodes on the host); an in-memory
  // dataset on CUDA has none (next() queues the augmentation kernel). The batches, and where an
  // error stops the epoch, are the same for any number.
  int workers = 1;
};

struct Batch {
  Tensor images;  // float32 (n, 3, 32, 32) on the loader's device
  Tensor labels;  // int32 (n) on the loader's device
  std::vector<int32_t> indices;  // dataset indices of the batch (for reports)
  int64_t size = 0;
};

class DataLoader {
 public:
  DataLoader(const Dataset& data, const LoaderConfig& cfg);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Begins epoch `epoch` (its shuffle order and augmentation draws are a function of seed and
  // epoch) and starts preparing the first batch.
  void start_epoch(int64_t epoch);
  // Fills `b` with the next batch; false at the end of the epoch. The tensors are valid until the
  // call after next (double buffering). An error of a worker preparing this batch (a file that
  // cannot be decoded) is rethrown here, and by every later call until start_epoch.
  bool next(Batch& b);
  int64_t num_batches() const;
  int64_t num_samples() const;  // per epoch and rank, after drop_last
  const Dataset& dataset() const { return data_; }

 private:
  int64_t plan_size() const;
  struct Impl;
  const Dataset& data_;
  LoaderConfig cfg_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace minidl

// Gradient averaging of data-parallel training (docs/DISTRIBUTED.md): after backward, every rank
// holds the mean over ranks of the model's flat gradient buffer (layers/parameters.h).
//
// Buckets. The flat buffer is cut into buckets of about `bucket_bytes`, starting from its end:
// the buffer is in state_dict order (first layer first) and backward produces the gradients in
// reverse layer order, so bucket 0 (the last layers) is complete first. A cut falls wherever the
// byte count says, inside a tensor too. A bucket is complete when every parameter that overlaps
// it has had its gradient computed, which the model reports through Module::set_backward_hook
// (each child of a Sequential or Residual, as soon as its backward returns). Each bucket is
// launched as soon as it is complete, so communication overlaps the rest of backward (DDP's
// buckets, Caffe's layer_wise_reduce); finish() launches what is left and waits.
//
// Launching: on the CPU a communication thread runs the all-reduce (MPI) on a communicator of its
// own (needs MPI_THREAD_MULTIPLE, which mpirun grants with Open MPI 4), waiting for it without
// spinning (dist/comm.h, "Waiting"). On a GPU the buckets are reduced on a communication stream
// of their own (dist/cuda_streams.h): a bucket's all-reduce waits for an event recorded on the
// compute stream after its last gradient, and after backward the compute stream (the optimizer)
// waits for an event recorded after the last all-reduce. With NCCL the backward thread queues
// ncclAllReduce on that stream; host-staged (no NCCL), the communication thread copies the
// bucket to the host on that stream, all-reduces it with MPI and queues the copy back. Every
// rank launches the buckets in the same order (the same model backward in the same order), as
// MPI and NCCL require. `overlap = false` (train --no-overlap) reduces the whole buffer in one
// call after backward, for comparison.
//
// The average: each bucket is summed and divided by the number of ranks (Reduce::Mean). With
// each rank's loss the mean over its own batch, this is the gradient of the mean loss over the
// global batch when the ranks' batches are equally large (the sampler pads them to be).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dist/comm.h"
#include "layers/module.h"

namespace minidl::dist {

namespace detail {
class CommStream;  // dist/cuda_streams.h
}

struct GradSyncConfig {
  int64_t bucket_bytes = 25000000;  // 25 MB, as --bucket-mb and PyTorch DDP's bucket_cap_mb
  bool overlap = true;
};

// [begin, end) element ranges of a flat buffer of `numel` elements of `elem_size` bytes, cut
// from the end into pieces of at most `bucket_bytes` (at least one element each): bucket 0 is
// the last piece.
std::vector<std::pair<int64_t, int64_t>> bucket_ranges(int64_t numel, size_t elem_size,
                                                       int64_t bucket_bytes);

class GradientSync {
 public:
  // The model's flat parameters (model.flat_parameters()) averaged over `comm`'s ranks. Installs
  // the model's backward hook; the destructor removes it.
  GradientSync(Module& model, Comm& comm, const GradSyncConfig& cfg);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Before a step's backward: every bucket pending.
  void start();
  // After backward: launches the buckets still pending and waits for all of them. The flat
  // gradient buffer then holds the mean over ranks.
  void finish();

  size_t num_buckets() const { return ranges_.size(); }
  const std::vector<std::pair<int64_t, int64_t>>& buckets() const { return ranges_; }
  // Buckets of the latest step launched before finish() (the ones backward overlapped).
  size_t launched_early() const { return launched_early_; }
  // Seconds the latest finish() took: communication that backward did not hide. With NCCL only
  // the host's side (queueing; the GPU's wait is on the stream, not timed here).
  double exposed_seconds() const { return exposed_seconds_; }
  // True when the buckets are reduced while backward runs (overlap asked for, and possible).
  bool overlapping() const { return overlap_; }
  // One line for the log: buckets, sizes, overlap (and why not, when asked for and impossible).
  std::string describe() const;

 private:
  void on_backward_done(Module& m);
  void launch(size_t bucket);
  void reduce(size_t bucket, Comm& comm);
  void worker_loop();

  Module& model_;
  FlatParameters& flat_;
  Comm& comm_;
  GradSyncConfig cfg_;
  bool overlap_ = false;
  bool threaded_ = false;     // CPU or host-staged: a communication thread does the reductions
  bool host_staged_ = false;  // a GPU buffer reduced through host memory
  std::unique_ptr<detail::CommStream> gpu_;  // a GPU buffer, overlapped: the communication stream
  Tensor staging_;                           // host-staged: the host copy of the flat gradients
  std::string why_not_;                      // overlap asked for but impossible
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  std::vector<std::vector<size_t>> param_buckets_;  // parameter index -> buckets it overlaps
  std::vector<int> bucket_total_;                   // parameters overlapping each bucket
  std::unordered_map<const Parameter*, size_t> param_index_;
  std::unordered_map<const Module*, std::vector<size_t>> module_params_;  // cached, recursive

  // Per step.
  std::vector<char> param_ready_;
  std::vector<int> bucket_pending_;
  std::vector<char> bucket_launched_;
  size_t launched_ = 0, launched_early_ = 0;
  double exposed_seconds_ = 0.0;

  // The communication thread (threaded_).
  Comm thread_comm_;
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<size_t> queue_;
  size_t done_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace minidl::dist

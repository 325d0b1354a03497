// The communication stream of the gradient buckets on a GPU (dist/grad_sync.h): each bucket's
// all-reduce runs on a stream of its own, ordered by events against the device's compute stream
// (core/cuda_context.h), so that it runs while backward goes on with the earlier layers:
//
//   compute stream: ... backward of bucket k's layers | record ready[k] | backward of earlier ...
//   comm stream:          wait ready[k] | all-reduce bucket k (NCCL, or the host-staged copies)
//   compute stream (after backward): wait reduced | optimizer ...
//
// CUDA builds only (dist/cuda_streams.cpp; cudasim in the emulator's tree, where a stream runs
// each call at once, so only the calls themselves are checked there, not the concurrency).
#pragma once

#include <cstddef>
#include <vector>

#include "core/cuda_context.h"

struct CUevent_st;

namespace minidl::dist::detail {

class CommStream {
 public:
  // A non-blocking stream on device `device` and an event per bucket.
  CommStream(int device, size_t buckets);
  ~CommStream();
  CommStream(const CommStream&) = delete;
  CommStream& operator=(const CommStream&) = delete;

  cudaStream stream() const { return stream_; }
  // Bucket k's gradients are all queued on the compute stream: records ready[k] there and makes
  // the communication stream wait for it. From the thread that runs backward.
  void bucket_ready(size_t k);
  // Host-staged: copies bytes of a ready bucket from the device on the communication stream
  // (behind its wait for ready[k]) and waits for the copy (any thread).
  void copy_to_host(void* host, const void* dev, size_t bytes);
  // Host-staged: queues the copy back on the communication stream; `host` must stay untouched
  // until join() (the next copy_to_host of the same bytes comes after it on the stream).
  void copy_to_device(void* dev, const void* host, size_t bytes);
  // Everything queued on the communication stream so far happens before what is queued on the
  // compute stream from now on (the optimizer): records `reduced` there, the compute stream waits.
  void join();

 private:
  int device_ = 0;
  cudaStream stream_ = nullptr;
  std::vector<CUevent_st*> ready_;
  CUevent_st* reduced_ = nullptr;
};

}  // namespace minidl::dist::detail

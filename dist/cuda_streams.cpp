// The gradient buckets' communication stream on a GPU (dist/cuda_streams.h).
#include "dist/cuda_streams.h"

#include "core/cuda_check.h"

namespace minidl::dist::detail {

CommStream::CommStream(int device, size_t buckets) : device_(device), ready_(buckets, nullptr) {
  cuda_set_device(device_);
  (void)cuda_context(device_);  // the compute stream exists before the first event on it
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  // No timing: the cheapest events, what cudaStreamWaitEvent needs.
  for (CUevent_st*& e : ready_) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&reduced_, cudaEventDisableTiming));
}

CommStream::~CommStream() {
  // Nothing may be in flight when the buffers go: wait, ignoring errors (a destructor).
  cudaSetDevice(device_);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (CUevent_st* e : ready_)
    if (e != nullptr) cudaEventDestroy(e);
  if (reduced_ != nullptr) cudaEventDestroy(reduced_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void CommStream::bucket_ready(size_t k) {
  cuda_set_device(device_);
  CUDA_CHECK(cudaEventRecord(ready_.at(k), cuda_context(device_).stream));
  CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_[k], 0));
}

void CommStream::copy_to_host(void* host, const void* dev, size_t bytes) {
  cuda_set_device(device_);
  // The stream already waits for ready[k] (bucket_ready); the copy is queued behind it.
  CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CommStream::copy_to_device(void* dev, const void* host, size_t bytes) {
  cuda_set_device(device_);
  CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream_));
}

void CommStream::join() {
  cuda_set_device(device_);
  CUDA_CHECK(cudaEventRecord(reduced_, stream_));
  CUDA_CHECK(cudaStreamWaitEvent(cuda_context(device_).stream, reduced_, 0));
}

}  // namespace minidl::dist::detail

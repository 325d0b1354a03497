// Per-device CUDA resources: one stream, a cuBLAS handle and a cuDNN handle, created on first use
// and kept for the life of the process. Everything minidl launches on a device goes to that
// device's stream, so work is ordered without device-wide synchronisation.
//
// This header only forward-declares the CUDA types, so host code that never touches a GPU can
// include it without the CUDA headers.
#pragma once

#include <cstddef>

#include "core/device.h"

struct CUstream_st;
struct cublasContext;
struct cudnnContext;

namespace minidl {

using cudaStream = CUstream_st*;  // == cudaStream_t

struct CudaContext {
  int device = 0;
  cudaStream stream = nullptr;
  cublasContext* cublas = nullptr;  // == cublasHandle_t
  cudnnContext* cudnn = nullptr;    // == cudnnHandle_t
};

// The context of CUDA device `index` (creates it, and selects the device, on first use).
// Throws "no CUDA device: ..." where there is none.
CudaContext& cuda_context(int index);
inline CudaContext& cuda_context(const Device& d) { return cuda_context(d.index); }

// Make `index` the current device of the calling thread (cudaSetDevice), checked.
void cuda_set_device(int index);
// Wait for all work on the device's stream (used where a value is needed on the host).
void cuda_synchronize(const Device& d);

// Copies between any two devices. Host<->device copies are synchronous with respect to the host
// (the host buffer is usable on return); device->device copies are queued on the stream.
void memcpy_any(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
void memset_zero(void* dst, Device dev, size_t bytes);

}  // namespace minidl

#if MINIDL_WITH_CUDA
#define MINIDL_IF_CUDA(...) __VA_ARGS__
#else
#define MINIDL_IF_CUDA(...)                                                                \
  ::minidl::throw_error(::minidl::str(__func__, ": minidl was built without CUDA "         \
                                      "(configure with nvcc on PATH and -DMINIDL_CUDA=ON)"))
#endif

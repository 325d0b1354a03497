// One check for every CUDA runtime, cuBLAS and cuDNN call (handle and descriptor creation
// included): on failure it throws minidl::Error with file:line, the call as written and the
// library's own error string. Include only from CUDA translation units.
//
// After each kernel launch, MINIDL_CHECK_LAUNCH() reads cudaGetLastError(). With the environment
// variable MINIDL_SYNC_LAUNCHES=1 it also synchronises the stream, so an asynchronous fault is
// reported at the launch that caused it instead of at some later call (slow: debugging only).
#pragma once

#include <cstdint>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "core/error.h"

namespace minidl::detail {

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line);
[[noreturn]] void throw_cudnn_error(cudnnStatus_t s, const char* call, const char* file, int line);
void check_launch(cudaStream_t stream, const char* file, int line);

}  // namespace minidl::detail

#define CUDA_CHECK(call)                                                              \
  do {                                                                                \
    cudaError_t minidl_e_ = (call);                                                   \
    if (minidl_e_ != cudaSuccess)                                                     \
      ::minidl::detail::throw_cuda_error(minidl_e_, #call, __FILE__, __LINE__);       \
  } while (0)

#define CUBLAS_CHECK(call)                                                            \
  do {                                                                                \
    cublasStatus_t minidl_s_ = (call);                                                \
    if (minidl_s_ != CUBLAS_STATUS_SUCCESS)                                           \
      ::minidl::detail::throw_cublas_error(minidl_s_, #call, __FILE__, __LINE__);     \
  } while (0)

#define CUDNN_CHECK(call)                                                             \
  do {                                                                                \
    cudnnStatus_t minidl_s_ = (call);                                                 \
    if (minidl_s_ != CUDNN_STATUS_SUCCESS)                                            \
      ::minidl::detail::throw_cudnn_error(minidl_s_, #call, __FILE__, __LINE__);      \
  } while (0)

#define MINIDL_CHECK_LAUNCH(stream) ::minidl::detail::check_launch((stream), __FILE__, __LINE__)

namespace minidl {
struct CudaContext;

// Blocks for a 1-D launch over n elements, one per thread, at most max_blocks (a kernel that has
// no grid-stride loop must stay below the cap: one thread per channel, per row).
inline unsigned grid_for(long long n, int threads, int max_blocks = 65535 * 8) {
  long long b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}

// Blocks for a grid-stride launch on ctx's device: grid_for(n, threads, max_blocks), lowered to
// the device's DeviceSettings::max_grid_blocks when that is set. The CUDA tests set it (to 4,
// test_grid_blocks() in tests/support/backends.h) so that each thread's loop runs several passes
// on tensors far smaller than the one-pass size of the real caps (2112 blocks of 256 threads).
unsigned grid_stride_blocks(const CudaContext& ctx, long long n, int threads,
                            int max_blocks = 65535 * 8);

// A size a kernel indexes with 32-bit integers (64-bit divisions would dominate memory-bound
// kernels); the launcher checks it first, naming it.
inline int32_t as_int(int64_t v, const char* what) {
  MINIDL_ASSERT(v >= 0 && v <= INT32_MAX, what, " = ", v, " does not fit the 32-bit indexing");
  return static_cast<int32_t>(v);
}
}  // namespace minidl

// Everything in core/ that talks to the CUDA runtime, cuBLAS or cuDNN: error reporting, device
// queries, per-device contexts, the caching allocator and copies. Compiled only in CUDA builds.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/allocator.h"
#include "core/cuda_check.h"
#include "core/cuda_context.h"
#include "core/device.h"
#include "core/device_settings.h"

namespace minidl {

namespace detail {

void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  throw Error(str("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") at ", file,
                  ":", line, " in ", call));
}

void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line) {
  throw Error(str("cuBLAS error ", cublasGetStatusName(s), " (", cublasGetStatusString(s), ") at ",
                  file, ":", line, " in ", call));
}

void throw_cudnn_error(cudnnStatus_t s, const char* call, const char* file, int line) {
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof detail);
  throw Error(str("cuDNN error ", cudnnGetErrorString(s), " at ", file, ":", line, " in ", call,
                  detail[0] ? str(": ", detail) : std::string()));
}

static bool sync_launches() {
  static const bool on = [] {
    const char* v = std::getenv("MINIDL_SYNC_LAUNCHES");
    return v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

void check_launch(cudaStream_t stream, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && sync_launches()) e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) throw_cuda_error(e, "kernel launch", file, line);
}

}  // namespace detail

unsigned grid_stride_blocks(const CudaContext& ctx, long long n, int threads, int max_blocks) {
  const unsigned cap = device_settings(Device::cuda(ctx.device)).max_grid_blocks;
  if (cap > 0 && cap < static_cast<unsigned>(max_blocks)) max_blocks = static_cast<int>(cap);
  return grid_for(n, threads, max_blocks);
}

// ---------------------------------------------------------------- device queries

namespace {
// cudaGetDeviceCount on a machine without a driver returns an error rather than 0; that is the
// normal case on the development machines, so it becomes a count of 0 and a reason string.
struct Probe {
  int count = 0;
  std::string reason;
};
const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    cudaError_t e = cudaGetDeviceCount(&r.count);
    if (e != cudaSuccess) {
      r.count = 0;
      r.reason = str(cudaGetErrorName(e), ": ", cudaGetErrorString(e));
      cudaGetLastError();  // clear the sticky-free error so later calls start clean
    } else if (r.count == 0) {
      r.reason = "the CUDA runtime reports 0 devices";
    }
    return r;
  }();
  return p;
}
}  // namespace

int cuda_device_count() { return probe().count; }
bool cuda_available() { return probe().count > 0; }

void require_device(const Device& d) {
  if (d.is_cpu()) return;
  MINIDL_CHECK(cuda_available(), "no CUDA device: ", d, " was requested but none can be used (",
               probe().reason, "); run on a machine with an NVIDIA GPU or pass --device cpu");
  MINIDL_CHECK(d.index >= 0 && d.index < cuda_device_count(), "no CUDA device: ", d,
               " does not exist (", cuda_device_count(), " visible)");
}

std::string cuda_device_summary() {
  if (!cuda_available()) return str("no CUDA device: ", probe().reason);
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  const size_t cudnn = cudnnGetVersion();
  return str(prop.name, " (sm_", prop.major, prop.minor, ", ", prop.multiProcessorCount, " SMs, ",
             prop.totalGlobalMem >> 20, " MiB), driver ", driver / 1000, ".", (driver % 1000) / 10,
             ", runtime ", runtime / 1000, ".", (runtime % 1000) / 10, ", cuDNN ", cudnn / 10000,
             ".", (cudnn % 10000) / 100, ".", cudnn % 100);
}

// ---------------------------------------------------------------- contexts

void cuda_set_device(int index) { CUDA_CHECK(cudaSetDevice(index)); }

namespace {
struct ContextOwner {
  CudaContext ctx;
  ~ContextOwner() {
    // Destruction order at exit is unspecified relative to the driver's own teardown, so errors
    // here are ignored on purpose.
    if (ctx.cudnn) cudnnDestroy(ctx.cudnn);
    if (ctx.cublas) cublasDestroy(ctx.cublas);
    if (ctx.stream) cudaStreamDestroy(ctx.stream);
  }
};
std::mutex g_ctx_mutex;
std::map<int, std::unique_ptr<ContextOwner>>& contexts() {
  static std::map<int, std::unique_ptr<ContextOwner>> m;
  return m;
}
}  // namespace

CudaContext& cuda_context(int index) {
  std::lock_guard<std::mutex> lock(g_ctx_mutex);
  auto& m = contexts();
  auto it = m.find(index);
  if (it != m.end()) {
    CUDA_CHECK(cudaSetDevice(index));
    return it->second->ctx;
  }
  require_device(Device::cuda(index));
  auto owner = std::make_unique<ContextOwner>();
  CudaContext& c = owner->ctx;
  c.device = index;
  CUDA_CHECK(cudaSetDevice(index));
  CUDA_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&c.cublas));
  CUBLAS_CHECK(cublasSetStream(c.cublas, c.stream));
  // Full fp32 unless TF32 is asked for explicitly (see kernels/gemm.h).
  CUBLAS_CHECK(cublasSetMathMode(c.cublas, CUBLAS_PEDANTIC_MATH));
  CUDNN_CHECK(cudnnCreate(&c.cudnn));
  CUDNN_CHECK(cudnnSetStream(c.cudnn, c.stream));
  m[index] = std::move(owner);
  return c;
}

void cuda_synchronize(const Device& d) {
  if (d.is_cpu()) return;
  CUDA_CHECK(cudaStreamSynchronize(cuda_context(d.index).stream));
}

namespace {
// A copy between two devices runs on the destination's stream, but the source was written by work
// queued on the source device's stream, which the destination stream does not wait for. An event
// orders the copy after that work; a second one makes later work on the source stream (which may
// reuse the source block through the caching allocator) wait until the copy has read it.
void copy_peer(void* dst, int dst_index, const void* src, int src_index, size_t bytes) {
  cudaStream_t src_stream = cuda_context(src_index).stream;  // current device: src_index
  cudaEvent_t src_done = nullptr, copy_done = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&src_done, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(src_done, src_stream));
  cudaStream_t dst_stream = cuda_context(dst_index).stream;  // current device: dst_index
  CUDA_CHECK(cudaStreamWaitEvent(dst_stream, src_done, 0));
  CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_index, src, src_index, bytes, dst_stream));
  CUDA_CHECK(cudaEventCreateWithFlags(&copy_done, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(copy_done, dst_stream));
  CUDA_CHECK(cudaStreamWaitEvent(src_stream, copy_done, 0));
  // Destroying a recorded event is allowed; its resources go once the stream has passed it.
  CUDA_CHECK(cudaEventDestroy(src_done));
  CUDA_CHECK(cudaEventDestroy(copy_done));
}
}  // namespace

void memcpy_any(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const Device gpu = dst_dev.is_cuda() ? dst_dev : src_dev;
  cudaStream_t s = cuda_context(gpu.index).stream;
  if (dst_dev.is_cuda() && src_dev.is_cuda()) {
    if (dst_dev.index == src_dev.index)
      CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
    else
      copy_peer(dst, dst_dev.index, src, src_dev.index, bytes);
    return;
  }
  // Host <-> device: queue on the stream (after the work that produced the data), then wait so the
  // host buffer is ready (D2H) or reusable (H2D) on return.
  const cudaMemcpyKind kind = dst_dev.is_cuda() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
}

void memset_zero(void* dst, Device dev, size_t bytes) {
  if (bytes == 0) return;
  if (dev.is_cpu()) {
    std::memset(dst, 0, bytes);
    return;
  }
  CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, cuda_context(dev.index).stream));
}

// ---------------------------------------------------------------- caching allocator

namespace {
// Blocks are rounded up to 512 bytes (small) or 2 MiB (large) so that slightly different requests
// share a bucket. A freed block is kept on its bucket's list and handed out again; all work is on
// one stream per device, so a block freed by the host may be reused by later work on that stream
// without synchronisation (stream order guarantees the earlier kernels read it first).
//
// MINIDL_CUDA_NO_CACHE=1 (for compute-sanitizer runs) turns the cache off: every request is a
// cudaMalloc of exactly the bytes asked for, and a released block is freed at once, after the
// device has finished the work queued on it. A kernel that writes or reads a few elements past a
// tensor then leaves its allocation, which memcheck reports; with the cache the rounding padding
// (up to 2 MiB) or a neighbouring cached block would absorb it silently. Slow: tests only.
bool no_cache() {
  static const bool on = [] {
    const char* v = std::getenv("MINIDL_CUDA_NO_CACHE");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

struct DeviceCache {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_lists;  // rounded size -> blocks
  MemoryStats stats;
};

DeviceCache& cache(int device) {
  static std::mutex m;
  static std::map<int, std::unique_ptr<DeviceCache>> caches;
  std::lock_guard<std::mutex> lock(m);
  auto& c = caches[device];
  if (!c) c = std::make_unique<DeviceCache>();
  return *c;
}

size_t round_size(size_t bytes) {
  const size_t small = 512, large = size_t(2) << 20;
  if (bytes == 0) return small;
  if (bytes < large) return (bytes + small - 1) / small * small;
  return (bytes + large - 1) / large * large;
}
}  // namespace

namespace detail {

void* cuda_allocate(size_t bytes, int device) {
  DeviceCache& c = cache(device);
  // Without the cache: the exact size (1 byte for an empty tensor, so that it still has an address).
  const size_t r = no_cache() ? std::max<size_t>(bytes, 1) : round_size(bytes);
  std::lock_guard<std::mutex> lock(c.mutex);
  c.stats.allocations++;
  void* p = nullptr;
  auto& list = c.free_lists[r];  // always empty without the cache
  if (!list.empty()) {
    p = list.back();
    list.pop_back();
  } else {
    cuda_set_device(device);
    cudaError_t e = cudaMalloc(&p, r);
    if (e == cudaErrorMemoryAllocation) {
      // Give every cached block back and try once more before failing.
      cudaGetLastError();
      for (auto& [size, blocks] : c.free_lists)
        for (void* b : blocks) {
          CUDA_CHECK(cudaFree(b));
          c.stats.reserved -= size;
        }
      c.free_lists.clear();
      e = cudaMalloc(&p, r);
    }
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw Error(str("CUDA out of memory: could not allocate ", bytes, " bytes on cuda:", device,
                      " (", c.stats.in_use >> 20, " MiB in use by minidl); reduce --batch-size"));
    }
    if (e != cudaSuccess) {
      // Not a shortage of memory: typically a sticky error left by an earlier kernel (e.g. an
      // illegal address) or a broken context. Say which, since "out of memory" would mislead.
      cudaGetLastError();
      throw Error(str("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                      ") in cudaMalloc of ", bytes, " bytes on cuda:", device,
                      "; an earlier kernel may have failed (MINIDL_SYNC_LAUNCHES=1 finds it)"));
    }
    c.stats.reserved += r;
    c.stats.system_allocations++;
  }
  c.stats.in_use += r;
  if (c.stats.in_use > c.stats.peak_in_use) c.stats.peak_in_use = c.stats.in_use;
  return p;
}

void cuda_deallocate(void* p, size_t bytes, int device) {
  DeviceCache& c = cache(device);
  if (no_cache()) {
    const size_t r = std::max<size_t>(bytes, 1);
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stats.in_use -= r;
    c.stats.reserved -= r;
    // Kernels queued on any stream may still use the block: wait for them, then free it. Called
    // from destructors, so errors are reported, not thrown; at process exit the runtime may
    // already be unloading, which is not an error worth a message.
    int previous = -1;
    cudaGetDevice(&previous);
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaFree(p);
    if (previous >= 0 && previous != device) cudaSetDevice(previous);
    if (e != cudaSuccess && e != cudaErrorCudartUnloading)
      std::fprintf(stderr, "minidl: freeing %zu bytes on cuda:%d (MINIDL_CUDA_NO_CACHE): %s (%s)\n",
                   bytes, device, cudaGetErrorName(e), cudaGetErrorString(e));
    return;
  }
  const size_t r = round_size(bytes);
  std::lock_guard<std::mutex> lock(c.mutex);
  c.free_lists[r].push_back(p);
  c.stats.in_use -= r;
}

MemoryStats cuda_memory_stats(int device) {
  DeviceCache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

void cuda_reset_peak(int device) {
  DeviceCache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  c.stats.peak_in_use = c.stats.in_use;
}

void cuda_release_cached(int device) {
  DeviceCache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mutex);
  cuda_set_device(device);
  CUDA_CHECK(cudaDeviceSynchronize());
  for (auto& [size, blocks] : c.free_lists)
    for (void* b : blocks) {
      CUDA_CHECK(cudaFree(b));
      c.stats.reserved -= size;
    }
  c.free_lists.clear();
}

}  // namespace detail
}  // namespace minidl

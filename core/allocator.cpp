#include "core/allocator.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace minidl {

namespace detail {
// Implemented in core/cuda_runtime.cpp (CUDA builds only).
void* cuda_allocate(size_t bytes, int device);
void cuda_deallocate(void* p, size_t bytes, int device);
MemoryStats cuda_memory_stats(int device);
void cuda_reset_peak(int device);
void cuda_release_cached(int device);
}  // namespace detail

namespace {
std::mutex g_cpu_mutex;
MemoryStats g_cpu_stats;
std::unordered_map<size_t, std::vector<void*>> g_cpu_free;  // rounded size -> cached blocks

// 64-byte multiples below 64 KiB, 64 KiB multiples below 4 MiB, 1 MiB multiples above: at most
// ~1.6% of a large block is padding.
size_t cpu_round_size(size_t bytes) {
  auto up = [](size_t n, size_t m) { return (n + m - 1) / m * m; };
  if (bytes == 0) return 64;
  if (bytes < (size_t(64) << 10)) return up(bytes, 64);
  if (bytes < (size_t(4) << 20)) return up(bytes, size_t(64) << 10);
  return up(bytes, size_t(1) << 20);
}
}  // namespace

void* allocate(size_t bytes, Device d) {
  if (d.is_cuda()) {
#if MINIDL_WITH_CUDA
    return detail::cuda_allocate(bytes, d.index);
#else
    require_device(d);
#endif
  }
  // Host blocks are cached like device blocks: glibc returns large blocks to the kernel on free,
  // so a training step that allocated its scratch anew page-faulted and zeroed ~1 GiB per step
  // (measured on ResNet-18, docs/BENCHMARKS.md). Rounded sizes let similar requests share a list.
  const size_t rounded = cpu_round_size(bytes);
  std::lock_guard<std::mutex> lock(g_cpu_mutex);
  void* p = nullptr;
  auto& list = g_cpu_free[rounded];
  if (!list.empty()) {
    p = list.back();
    list.pop_back();
  } else {
    p = std::aligned_alloc(64, rounded);
    MINIDL_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes");
    g_cpu_stats.reserved += rounded;
    g_cpu_stats.system_allocations++;
  }
  g_cpu_stats.in_use += rounded;
  g_cpu_stats.allocations++;
  if (g_cpu_stats.in_use > g_cpu_stats.peak_in_use) g_cpu_stats.peak_in_use = g_cpu_stats.in_use;
  return p;
}

void deallocate(void* p, size_t bytes, Device d) {
  if (!p) return;
  if (d.is_cuda()) {
#if MINIDL_WITH_CUDA
    detail::cuda_deallocate(p, bytes, d.index);
#endif
    return;
  }
  const size_t rounded = cpu_round_size(bytes);
  std::lock_guard<std::mutex> lock(g_cpu_mutex);
  g_cpu_free[rounded].push_back(p);
  g_cpu_stats.in_use -= rounded;
}

MemoryStats memory_stats(Device d) {
  if (d.is_cuda()) {
#if MINIDL_WITH_CUDA
    return detail::cuda_memory_stats(d.index);
#else
    require_device(d);
#endif
  }
  std::lock_guard<std::mutex> lock(g_cpu_mutex);
  return g_cpu_stats;
}

void reset_peak_memory(Device d) {
  if (d.is_cuda()) {
#if MINIDL_WITH_CUDA
    detail::cuda_reset_peak(d.index);
#endif
    return;
  }
  std::lock_guard<std::mutex> lock(g_cpu_mutex);
  g_cpu_stats.peak_in_use = g_cpu_stats.in_use;
}

void release_cached_memory(Device d) {
  if (d.is_cuda()) {
#if MINIDL_WITH_CUDA
    detail::cuda_release_cached(d.index);
#endif
    return;
  }
  std::lock_guard<std::mutex> lock(g_cpu_mutex);
  for (auto& [size, blocks] : g_cpu_free)
    for (void* b : blocks) {
      std::free(b);
      g_cpu_stats.reserved -= size;
    }
  g_cpu_free.clear();
}

std::string memory_report(Device d) {
  const MemoryStats s = memory_stats(d);
  auto mib = [](size_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  std::ostringstream os;
  os.precision(1);
  os << std::fixed << d.str() << " memory: peak " << mib(s.peak_in_use) << " MiB in use, "
     << mib(s.in_use) << " MiB now, " << mib(s.reserved) << " MiB reserved, " << s.allocations
     << " allocations (" << s.system_allocations << " from the system)";
  return os.str();
}

}  // namespace minidl

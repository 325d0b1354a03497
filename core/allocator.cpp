#include "core/allocator.h"

#include <cstdlib>
#include <mutex>

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
}  // namespace

void* allocate(size_t bytes, Device d) {
  if (d.is_cuda()) {
#if MINIDL_WITH_CUDA
    return detail::cuda_allocate(bytes, d.index);
#else
    require_device(d);
#endif
  }
  // Round up to the alignment (aligned_alloc requires a multiple) and never ask for 0 bytes.
  const size_t rounded = (bytes + 63) / 64 * 64 + (bytes == 0 ? 64 : 0);
  void* p = std::aligned_alloc(64, rounded);
  MINIDL_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes");
  std::lock_guard<std::mutex> lock(g_cpu_mutex);
  g_cpu_stats.in_use += bytes;
  g_cpu_stats.reserved += bytes;
  g_cpu_stats.allocations++;
  g_cpu_stats.system_allocations++;
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
  std::free(p);
  std::lock_guard<std::mutex> lock(g_cpu_mutex);
  g_cpu_stats.in_use -= bytes;
  g_cpu_stats.reserved -= bytes;
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
#if MINIDL_WITH_CUDA
  if (d.is_cuda()) detail::cuda_release_cached(d.index);
#else
  (void)d;
#endif
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

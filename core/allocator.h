// Memory for tensors.
//
// CPU: 64-byte aligned heap blocks, cached for reuse (see allocator.cpp). CUDA: a caching allocator
// per device. cudaMalloc and cudaFree
// synchronise the device and cost tens of microseconds, so a training loop must not call them:
// freed blocks go to a free list keyed by their rounded size and the next request of that size
// reuses them. After the first step of a run every allocation is a list pop. Statistics
// (in use, peak, reserved) are kept per device for the memory report.
// MINIDL_CUDA_NO_CACHE=1 disables the CUDA cache: exact-size cudaMalloc per request, and cudaFree
// (after a device synchronize) at release, so that compute-sanitizer's memcheck sees an access a
// few bytes past a tensor. scripts/gpu-check.sh sets it for the sanitizer steps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/device.h"

namespace minidl {

struct MemoryStats {
  size_t in_use = 0;         // bytes handed out and not yet returned
  size_t peak_in_use = 0;    // maximum of in_use since the last reset
  size_t reserved = 0;       // bytes obtained from the system (cudaMalloc/malloc) and not released
  uint64_t allocations = 0;  // allocate() calls
  uint64_t system_allocations = 0;  // calls that had to go to cudaMalloc/malloc
};

void* allocate(size_t bytes, Device d);
void deallocate(void* p, size_t bytes, Device d);

MemoryStats memory_stats(Device d);
void reset_peak_memory(Device d);
// Give cached but unused CUDA blocks back to the driver (e.g. before a benchmark of another model).
void release_cached_memory(Device d);
std::string memory_report(Device d);

}  // namespace minidl

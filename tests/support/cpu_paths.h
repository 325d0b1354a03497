// Test helper: sets the run-wide CPU kernel path (kernels/cpu_kernels.h) for one scope and restores
// the previous one, even when a check throws.
#pragma once

#include "kernels/cpu_kernels.h"

namespace minidl::test {

struct CpuKernelsGuard {
  CpuKernels old = cpu_kernels();
  explicit CpuKernelsGuard(CpuKernels k) { set_cpu_kernels(k); }
  ~CpuKernelsGuard() { set_cpu_kernels(old); }
};

}  // namespace minidl::test

// Test helper: sets the run-wide CPU kernel choice (core/device_settings.h) for one scope and
// restores every device's settings afterwards, even when a check throws.
#pragma once

#include "core/device_settings.h"

namespace minidl::test {

struct CpuKernelsGuard {
  ScopedDeviceSettings saved;
  explicit CpuKernelsGuard(CpuKernels k) {
    DeviceSettings s = device_settings(Device::cpu());
    s.cpu_kernels = k;
    set_device_settings(Device::cpu(), s);
  }
};

}  // namespace minidl::test

// Where a tensor lives. A CUDA device carries its ordinal so that nothing assumes one GPU
// (multi-GPU through NCCL is planned); every per-device resource is looked up by that index.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "core/error.h"

namespace minidl {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static constexpr Device cpu() { return {DeviceType::CPU, 0}; }
  static constexpr Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  constexpr bool is_cpu() const { return type == DeviceType::CPU; }
  constexpr bool is_cuda() const { return type == DeviceType::CUDA; }
  constexpr bool operator==(const Device&) const = default;

  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  // Parses "cpu", "cuda", "cuda:N"; throws naming the text otherwise.
  static Device parse(const std::string& s);
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

// True when minidl was built with CUDA and at least one device can be opened.
bool cuda_available();
// Number of visible CUDA devices (0 when built without CUDA or without a driver).
int cuda_device_count();
// Throws "no CUDA device: <reason>" when `d` is a CUDA device that cannot be used.
void require_device(const Device& d);
// One line naming the GPU, driver, runtime and cuDNN versions, or why there is none.
std::string cuda_device_summary();
// Whether this build compiled the CUDA backend.
constexpr bool built_with_cuda() {
#if MINIDL_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace minidl

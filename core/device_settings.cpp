// Per-device run settings (device_settings.h).
#include "core/device_settings.h"

#include <array>
#include <mutex>

#include "core/error.h"

namespace minidl {

namespace {

// Slot 0 is the CPU, slot 1 + i is cuda:i. 64 GPUs is more than one process drives today; an
// index beyond that is reported, not wrapped.
constexpr int kMaxCudaDevices = 64;

struct SettingsTable {
  std::mutex mutex;
  std::array<DeviceSettings, 1 + kMaxCudaDevices> slots{};
};

SettingsTable& table() {
  static SettingsTable t;
  return t;
}

size_t slot(const Device& d) {
  if (d.is_cpu()) return 0;
  MINIDL_CHECK(d.index >= 0 && d.index < kMaxCudaDevices, "device settings: ", d,
               " is out of range (minidl keeps settings for cuda:0 .. cuda:", kMaxCudaDevices - 1,
               ")");
  return 1 + static_cast<size_t>(d.index);
}

void check_settings(const DeviceSettings& s) {
  MINIDL_CHECK(s.cpu_kernels != CpuKernels::Onednn || onednn_available(),
               "--cpu-kernels onednn: this build has no oneDNN (install libdnnl-dev, e.g. with "
               "scripts/setup.sh, and configure again); use --cpu-kernels handwritten");
}

struct Notes {
  std::mutex mutex;
  std::vector<std::string> notes;
};
Notes& notes() {
  static Notes n;
  return n;
}

}  // namespace

const char* kernel_path_name(KernelPath p) {
  switch (p) {
    case KernelPath::Handwritten: return "handwritten";
    case KernelPath::Cublas: return "cublas";
    case KernelPath::Cudnn: return "cudnn";
  }
  return "?";
}

const Registry<KernelPath>& kernel_paths() {
  static const Registry<KernelPath> r(
      "kernel path",
      {{"handwritten", "minidl's own CUDA kernels only (im2col + tiled SGEMM convolutions)",
        KernelPath::Handwritten},
       {"cublas", "as handwritten, with every matrix product on cuBLAS", KernelPath::Cublas},
       {"cudnn", "cuDNN for convolution, batchnorm, pooling; cuBLAS for products",
        KernelPath::Cudnn}});
  return r;
}

const char* cpu_kernels_name(CpuKernels k) {
  switch (k) {
    case CpuKernels::Handwritten: return "handwritten";
    case CpuKernels::Onednn: return "onednn";
  }
  return "?";
}

const Registry<CpuKernels>& cpu_kernel_paths() {
  using Entry = Registry<CpuKernels>::Entry;
  static const Registry<CpuKernels> r = [] {
    std::vector<Entry> entries;
    if (onednn_available())
      entries.push_back({"onednn", "float32 convolutions on oneDNN (as PyTorch's CPU convolutions)",
                         CpuKernels::Onednn});
    entries.push_back({"handwritten", "minidl's own CPU kernels only (im2col + OpenBLAS)",
                       CpuKernels::Handwritten});
    return Registry<CpuKernels>("CPU kernel path", std::move(entries));
  }();
  return r;
}

DeviceSettings device_settings(const Device& d) {
  SettingsTable& t = table();
  const size_t i = slot(d);
  std::lock_guard<std::mutex> lock(t.mutex);
  return t.slots[i];
}

void set_device_settings(const Device& d, const DeviceSettings& s) {
  check_settings(s);
  SettingsTable& t = table();
  const size_t i = slot(d);
  std::lock_guard<std::mutex> lock(t.mutex);
  t.slots[i] = s;
}

void set_run_settings(const DeviceSettings& s) {
  check_settings(s);
  SettingsTable& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.slots.fill(s);
}

ScopedDeviceSettings::ScopedDeviceSettings() {
  SettingsTable& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  saved_.assign(t.slots.begin(), t.slots.end());
}

ScopedDeviceSettings::ScopedDeviceSettings(const DeviceSettings& s) : ScopedDeviceSettings() {
  set_run_settings(s);
}

ScopedDeviceSettings::~ScopedDeviceSettings() {
  SettingsTable& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  std::copy(saved_.begin(), saved_.end(), t.slots.begin());
}

void add_determinism_note(const std::string& note) {
  Notes& n = notes();
  std::lock_guard<std::mutex> lock(n.mutex);
  n.notes.push_back(note);
}

std::vector<std::string> take_determinism_notes() {
  Notes& n = notes();
  std::lock_guard<std::mutex> lock(n.mutex);
  std::vector<std::string> out;
  out.swap(n.notes);
  return out;
}

}  // namespace minidl

// Run-wide settings of how ops run, kept per device (the device context's settings).
//
// Each op has several implementations ("backends", kernels/backend.h); which one runs is decided
// per call by the op's select_<op>_backend() from the tensors and from these settings, which a
// run (train, bench_train) sets once at the start:
//
//   kernels       which family of CUDA implementations to prefer (train --kernels):
//     handwritten   minidl's own kernels only (im2col + our tiled SGEMM, our reductions, ...);
//     cublas        as handwritten, but every matrix product goes to cuBLAS;
//     cudnn         cuDNN where it has the op (convolution, batchnorm, pooling, activations),
//                   cuBLAS for products, our kernels for the rest (loss, dropout, optimizer).
//   cpu_kernels   the same choice on the CPU (train --cpu-kernels):
//     handwritten   minidl's own CPU kernels (im2col + OpenBLAS, vectorised loops);
//     onednn        oneDNN for float32 convolutions where minidl was built with it.
//   allow_tf32    cuBLAS/cuDNN may use TF32 tensor cores for float32 products (train --tf32).
//   deterministic only algorithms whose result does not depend on scheduling, chosen in a fixed
//                 order rather than by timing (train --deterministic). Set it before the first
//                 convolution: cuDNN plans are cached with the algorithm they chose.
//   conv_col_budget  bytes of the im2col column buffer; 0 means the default (64 MiB on the CPU,
//                 512 MiB on a GPU). Tests lower it to force the batch into several chunks.
//   max_grid_blocks  an upper bound on the blocks of every grid-stride CUDA launch
//                 (grid_stride_blocks in core/cuda_check.h); 0 means each kernel's own cap. Tests
//                 lower it so that every grid-stride loop runs several passes on small tensors.
//
// Settings are per device (no global assumes one GPU); set_run_settings() gives every device the
// same ones, which is what a single-device run wants. Reads copy them under a lock.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/registry.h"

namespace minidl {

enum class KernelPath { Handwritten, Cublas, Cudnn };
enum class CpuKernels { Handwritten, Onednn };

const char* kernel_path_name(KernelPath p);
// The --kernels choices: handwritten, cublas, cudnn (name, help line, value; core/registry.h).
const Registry<KernelPath>& kernel_paths();

// Whether this build has the oneDNN CPU path.
constexpr bool onednn_available() {
#if MINIDL_HAVE_DNNL
  return true;
#else
  return false;
#endif
}
const char* cpu_kernels_name(CpuKernels k);
// The --cpu-kernels choices this build has, fastest first (onednn only with oneDNN built in).
const Registry<CpuKernels>& cpu_kernel_paths();

struct DeviceSettings {
  KernelPath kernels = KernelPath::Cudnn;
  // The fastest path built in.
  CpuKernels cpu_kernels = onednn_available() ? CpuKernels::Onednn : CpuKernels::Handwritten;
  bool allow_tf32 = false;
  bool deterministic = false;
  size_t conv_col_budget = 0;
  unsigned max_grid_blocks = 0;
};

// The settings ops on `d` run with.
DeviceSettings device_settings(const Device& d);
// Sets them for one device. Throws when cpu_kernels is Onednn in a build without oneDNN (with
// the fix), or the CUDA index is out of range.
void set_device_settings(const Device& d, const DeviceSettings& s);
// Sets them for the CPU and every CUDA device: what a run does once at its start.
void set_run_settings(const DeviceSettings& s);

// Restores every device's settings when it goes out of scope (tests, benchmarks).
class ScopedDeviceSettings {
 public:
  ScopedDeviceSettings();
  // Saves, then applies `s` to every device.
  explicit ScopedDeviceSettings(const DeviceSettings& s);
  ~ScopedDeviceSettings();
  ScopedDeviceSettings(const ScopedDeviceSettings&) = delete;
  ScopedDeviceSettings& operator=(const ScopedDeviceSettings&) = delete;

 private:
  std::vector<DeviceSettings> saved_;
};

// What deterministic mode changed ("conv2d backward-filter ...: algorithm 1 instead of 0"), for
// the training log: ops add a note, the trainer takes and prints them.
void add_determinism_note(const std::string& note);
std::vector<std::string> take_determinism_notes();

}  // namespace minidl

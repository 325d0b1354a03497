// Which implementation an op uses on a CUDA device. On the CPU this choice is ignored; the CPU
// path is chosen once per run by kernels/cpu_kernels.h (handwritten | onednn).
//
//   Handwritten: minidl's own kernels only: im2col + our tiled SGEMM for convolution and linear
//                layers, our reductions for batchnorm, our pooling/activation/loss kernels.
//   Cublas:      as Handwritten, but every matrix product goes to cuBLAS (im2col conv on cuBLAS).
//   Cudnn:       cuDNN for convolution, batchnorm, pooling and activations; cuBLAS for matrix
//                products; our kernels for what cuDNN lacks (loss, dropout, optimizer). Default.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"

namespace minidl {

enum class KernelPath { Handwritten, Cublas, Cudnn };

inline const char* kernel_path_name(KernelPath p) {
  switch (p) {
    case KernelPath::Handwritten: return "handwritten";
    case KernelPath::Cublas: return "cublas";
    case KernelPath::Cudnn: return "cudnn";
  }
  return "?";
}

inline KernelPath parse_kernel_path(const std::string& s) {
  if (s == "handwritten") return KernelPath::Handwritten;
  if (s == "cublas") return KernelPath::Cublas;
  if (s == "cudnn") return KernelPath::Cudnn;
  throw_error(str("kernel path '", s, "': expected handwritten, cublas or cudnn"));
}

// Deterministic mode (train --deterministic): ops choose only algorithms whose result does not
// depend on timing or scheduling, and choose them in a fixed order rather than by timing (so that
// two runs pick the same one). Today that concerns cuDNN's convolution algorithms (conv2d.cu);
// every other CUDA kernel of minidl, and the whole CPU path, is deterministic already (no float
// atomics).
// Set it before the first convolution: cuDNN plans are cached with the algorithm they chose.
// Header-only so that both the CPU build and nvcc see the same flag.
inline std::atomic<bool>& deterministic_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}
inline void set_deterministic(bool on) { deterministic_flag().store(on); }
inline bool deterministic() { return deterministic_flag().load(); }

// What deterministic mode changed ("conv2d backward-filter ...: algorithm 1 instead of 0"), for the
// training log: ops add a note, the trainer takes and prints them.
struct DeterminismNotes {
  std::mutex mutex;
  std::vector<std::string> notes;
};
inline DeterminismNotes& determinism_notes() {
  static DeterminismNotes n;
  return n;
}
inline void add_determinism_note(const std::string& note) {
  DeterminismNotes& n = determinism_notes();
  std::lock_guard<std::mutex> lock(n.mutex);
  n.notes.push_back(note);
}
inline std::vector<std::string> take_determinism_notes() {
  DeterminismNotes& n = determinism_notes();
  std::lock_guard<std::mutex> lock(n.mutex);
  std::vector<std::string> out;
  out.swap(n.notes);
  return out;
}

}  // namespace minidl

// Which implementation an op uses on the CPU, chosen once per run (the CPU twin of KernelPath,
// which selects among the CUDA implementations per layer):
//
//   Handwritten: minidl's own CPU kernels: im2col + OpenBLAS for convolutions (a plain GEMM for
//                1x1 stride-1 convolutions), our vectorised loops for everything else. float64
//                always runs here: it is the reference every other path is compared with.
//   Onednn:      oneDNN (Intel's DNNL, the library PyTorch's CPU convolutions run on) for float32
//                convolution forward, backward data and backward weight, with one primitive per
//                shape created once and cached; our kernels for the rest. Available when minidl
//                was built with oneDNN (MINIDL_HAVE_DNNL; Debian: libdnnl-dev).
//
// The default is the fastest path built in: Onednn when available, else Handwritten.
#pragma once

#include <string>
#include <vector>

#include "core/error.h"

namespace minidl {

enum class CpuKernels { Handwritten, Onednn };

// Whether this build has the oneDNN path.
constexpr bool onednn_available() {
#if MINIDL_HAVE_DNNL
  return true;
#else
  return false;
#endif
}

// The run-wide setting. Selecting Onednn in a build without oneDNN throws with a hint.
void set_cpu_kernels(CpuKernels k);
CpuKernels cpu_kernels();
// True when float32 CPU ops should go to oneDNN.
inline bool use_onednn() { return onednn_available() && cpu_kernels() == CpuKernels::Onednn; }

// Wraps a call into the oneDNN path: compiled only in builds with oneDNN (use_onednn() is false
// in the others, so the branch around it is never taken there).
#if MINIDL_HAVE_DNNL
#define MINIDL_IF_DNNL(...) __VA_ARGS__
#else
#define MINIDL_IF_DNNL(...) \
  ::minidl::throw_error(::minidl::str(__func__, ": minidl was built without oneDNN"))
#endif

const char* cpu_kernels_name(CpuKernels k);
// "handwritten" | "onednn"; throws naming the text and the choices otherwise.
CpuKernels parse_cpu_kernels(const std::string& s);
// The names this build accepts, fastest first.
std::vector<std::string> cpu_kernels_names();
// One line: the path in use, oneDNN's version when built in, and the CPU features dispatched.
std::string cpu_kernels_summary();

}  // namespace minidl

// What the CPU backends of this build are, for logs: the CPU kernel choice itself
// (handwritten | onednn) is a device setting (core/device_settings.h), and each op's selector
// turns it into cpu-reference or cpu-fast (kernels/backend.h).
//
//   handwritten: minidl's own CPU kernels (cpu-reference): im2col + OpenBLAS for convolutions (a
//                plain GEMM for 1x1 stride-1 convolutions), our vectorised loops for everything
//                else. float64 always runs here: it is the reference every other path is
//                compared with.
//   onednn:      oneDNN (Intel's DNNL, the library PyTorch's CPU convolutions run on) for float32
//                convolution forward, backward data and backward weight (cpu-fast), with one
//                primitive per shape created once and cached; our kernels for the rest.
//                Available when minidl was built with oneDNN (MINIDL_HAVE_DNNL; Debian:
//                libdnnl-dev).
#pragma once

#include <string>

#include "core/device_settings.h"
#include "core/error.h"

namespace minidl {

// Wraps a call into the oneDNN backend: compiled only in builds with oneDNN (check_backend stops
// cpu-fast before it in the others).
#if MINIDL_HAVE_DNNL
#define MINIDL_IF_DNNL(...) __VA_ARGS__
#else
#define MINIDL_IF_DNNL(...) \
  ::minidl::throw_error(::minidl::str(__func__, ": minidl was built without oneDNN"))
#endif

// One line: the CPU kernels in use, oneDNN's version when built in, and the CPU features.
std::string cpu_kernels_summary();

}  // namespace minidl

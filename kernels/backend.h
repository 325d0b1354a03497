// The op table: every op lists its implementations ("backends") once, and one rule per op
// (select_<op>_backend, as ATen's _select_batch_norm_backend) picks the one a call runs on.
//
//   cpu-reference     minidl's own CPU kernels: plain or vectorised loops, im2col + OpenBLAS.
//                     float32 and float64; float64 is the reference every other backend is
//                     compared with.
//   cpu-fast          a vendor library on the CPU: oneDNN (float32 convolutions), when built in.
//   cuda-handwritten  minidl's own CUDA kernels (im2col + our tiled SGEMM, our reductions, ...).
//   cuda-cublas       as cuda-handwritten, but the matrix products run on cuBLAS.
//   cuda-vendor       cuDNN (convolution, batchnorm, pooling, activations).
//
// The emulator: a build configured with -DMINIDL_CUDA_SIM=ON runs cuda-handwritten and
// cuda-cublas on cudasim (docs/GPU.md), which emulates no cuDNN, so cuda-vendor is not built
// there and every selector falls back to the next backend.
//
// Every op's public entry point comes in two forms:
//
//   batchnorm_forward_train(y, ..., p);              // selects: select_batchnorm_backend(...)
//   batchnorm_forward_train(Backend b, y, ..., p);   // runs backend b (tests, benchmarks)
//
// Both check their arguments once and then dispatch on the backend; check_backend() below says
// why a backend cannot run (not the op's, not built, other device, unsupported dtype).
// Layers call the first form only: they never name a device or a backend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/device_settings.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace minidl {

enum class Backend : uint8_t { CpuReference, CpuFast, CudaHandwritten, CudaCublas, CudaVendor };

// "cpu-reference", "cpu-fast", "cuda-handwritten", "cuda-cublas", "cuda-vendor".
const char* backend_name(Backend b);
DeviceType backend_device_type(Backend b);
// Whether this build compiled the backend (cpu-fast: oneDNN found; cuda-*: the CUDA backend or
// the emulator; cuda-vendor: a real CUDA build, not the emulator).
bool backend_built(Backend b);
// Built, and for cuda-* a GPU (or the emulator) is there to run it.
bool backend_runnable(Backend b);
// The dtypes a backend computes in unless the op's entry says otherwise (OpBackend::dtypes):
// cpu-reference float32 and float64, every other float32.
std::vector<DType> backend_dtypes(Backend b);

struct OpBackend {
  Backend backend;
  const char* what;  // what this backend is for this op: "im2col + cuBLAS SGEMM"
  // The tensor dtypes this backend of this op takes (the op table's dtype column); empty means
  // backend_dtypes(backend). bfloat16/float16 always compute in float32 (sums accumulate in
  // float32), reading and writing 16-bit tensors.
  std::vector<DType> dtypes = {};
};

struct OpInfo {
  const char* name;                 // "conv2d"
  const char* functions;            // the public functions it covers, for the docs
  std::vector<OpBackend> backends;  // in preference order within each device
  // The condition under which the selector skips cuda-vendor, "" when none.
  const char* vendor_condition = "";

  bool has(Backend b) const;
  // The dtypes backend b of this op takes (empty when the op has no such backend).
  std::vector<DType> dtypes(Backend b) const;
  // Whether backend b of this op takes `dtype` on this machine: listed in its dtypes, and for
  // cpu-fast bfloat16 the CPU has AVX512_BF16 (cpu_has_bf16(); a declared rule, not a fallback).
  bool computes(Backend b, DType dtype) const;
};

// Whether this CPU has native bfloat16 dot products (AVX512_BF16 or AMX-BF16): oneDNN's bf16
// convolutions and products are only fast (and only chosen) there.
bool cpu_has_bf16();

// Every op, in the order docs/ARCHITECTURE.md lists them.
const std::vector<const OpInfo*>& op_table();
// Throws naming the op and listing the known ones.
const OpInfo& find_op(const std::string& name);

// The op's backends that can run in this process on devices of type `type`.
std::vector<Backend> runnable_backends(const OpInfo& op, DeviceType type);

// The shared selection rule, from the device's settings (core/device_settings.h), taking only
// backends whose entry computes the dtype (OpInfo::computes):
//   CPU:  cpu-fast when the op has one, it is built, it computes the dtype and cpu_kernels =
//         onednn; otherwise cpu-reference.
//   CUDA: kernels = cudnn:       cuda-vendor when the op has one, it is built and vendor_ok
//                                 (the op's own condition), else as cublas;
//         kernels = cublas:      cuda-cublas when the op has one, else cuda-handwritten;
//         kernels = handwritten: cuda-handwritten.
Backend select_backend(const OpInfo& op, const Device& d, DType dtype, bool vendor_ok = true);

// Throws, naming `who`, the backend and the fix, unless `b` is one of op's backends, built, for
// devices of d's type, and computing in `dtype`.
void check_backend(const OpInfo& op, Backend b, const Device& d, DType dtype, const char* who);

// A Markdown table of op_table(): op, functions, and each backend with what it is. The op table
// in docs/ARCHITECTURE.md is this text (a test keeps the two equal).
std::string op_table_markdown();

// Run `fn.template operator()<kNhwc>()` with kNhwc = (layout == NHWC), for CPU loops that index
// both layouts (core/tensor.h) with a compile-time stride. Usage:
//   dispatch_layout(x.layout(), [&]<bool kNhwc>() { cpu::pool<T, kNhwc>(...); });
template <typename Fn>
decltype(auto) dispatch_layout(Layout layout, Fn&& fn) {
  if (layout == Layout::NHWC) return fn.template operator()<true>();
  return fn.template operator()<false>();
}

}  // namespace minidl

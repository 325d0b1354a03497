// The op table's shared rules (backend.h). Each op's own entry (its backends and its selector)
// is in kernels/<op>.cpp beside the code it dispatches to.
#include "kernels/backend.h"

#include <algorithm>

#include "kernels/activation.h"
#include "kernels/augment.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "kernels/optimizer.h"
#include "kernels/pooling.h"
#include "kernels/softmax_xent.h"

namespace minidl {

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::CpuReference: return "cpu-reference";
    case Backend::CpuFast: return "cpu-fast";
    case Backend::CudaHandwritten: return "cuda-handwritten";
    case Backend::CudaCublas: return "cuda-cublas";
    case Backend::CudaVendor: return "cuda-vendor";
  }
  return "?";
}

DeviceType backend_device_type(Backend b) {
  return (b == Backend::CpuReference || b == Backend::CpuFast) ? DeviceType::CPU : DeviceType::CUDA;
}

bool backend_built(Backend b) {
  switch (b) {
    case Backend::CpuReference: return true;
    case Backend::CpuFast: return onednn_available();
    case Backend::CudaHandwritten:
    case Backend::CudaCublas: return built_with_cuda();
    case Backend::CudaVendor: return built_with_cuda() && !MINIDL_CUDA_SIM;
  }
  return false;
}

bool backend_runnable(Backend b) {
  if (!backend_built(b)) return false;
  return backend_device_type(b) == DeviceType::CPU || cuda_available();
}

std::vector<DType> backend_dtypes(Backend b) {
  if (b == Backend::CpuReference) return {DType::F32, DType::F64};
  return {DType::F32};
}

bool OpInfo::has(Backend b) const {
  return std::any_of(backends.begin(), backends.end(),
                     [b](const OpBackend& ob) { return ob.backend == b; });
}

const std::vector<const OpInfo*>& op_table() {
  static const std::vector<const OpInfo*> table{
      &conv2d_op(),       &gemm_op(),      &linear_op(),      &batchnorm_op(),
      &activation_op(),   &maxpool2d_op(), &avgpool2d_op(),   &global_avgpool_op(),
      &softmax_xent_op(), &dropout_op(),   &elementwise_op(), &optimizer_op(),
      &augment_op()};
  return table;
}

const OpInfo& find_op(const std::string& name) {
  std::string known;
  for (const OpInfo* op : op_table()) {
    if (op->name == name) return *op;
    known += str(known.empty() ? "" : ", ", op->name);
  }
  throw_error(str("op '", name, "' is not in the op table (kernels/backend.h); known: ", known));
}

std::vector<Backend> runnable_backends(const OpInfo& op, DeviceType type) {
  std::vector<Backend> out;
  for (const OpBackend& ob : op.backends)
    if (backend_device_type(ob.backend) == type && backend_runnable(ob.backend))
      out.push_back(ob.backend);
  return out;
}

Backend select_backend(const OpInfo& op, const Device& d, DType dtype, bool vendor_ok) {
  const DeviceSettings s = device_settings(d);
  if (d.is_cpu()) {
    if (op.has(Backend::CpuFast) && backend_built(Backend::CpuFast) && dtype == DType::F32 &&
        s.cpu_kernels == CpuKernels::Onednn)
      return Backend::CpuFast;
    return Backend::CpuReference;
  }
  switch (s.kernels) {
    case KernelPath::Cudnn:
      if (op.has(Backend::CudaVendor) && backend_built(Backend::CudaVendor) && vendor_ok)
        return Backend::CudaVendor;
      [[fallthrough]];
    case KernelPath::Cublas:
      if (op.has(Backend::CudaCublas)) return Backend::CudaCublas;
      [[fallthrough]];
    case KernelPath::Handwritten: break;
  }
  return Backend::CudaHandwritten;
}

void check_backend(const OpInfo& op, Backend b, const Device& d, DType dtype, const char* who) {
  MINIDL_CHECK(op.has(b), who, ": ", op.name, " has no ", backend_name(b),
               " backend (its backends are listed in the op table, kernels/backend.h)");
  MINIDL_CHECK(backend_built(b), who, ": the ", backend_name(b), " backend is not in this build",
               b == Backend::CpuFast ? " (install libdnnl-dev and configure again)"
               : b == Backend::CudaVendor && MINIDL_CUDA_SIM
                   ? " (the emulator has no cuDNN; run it on a GPU build)"
                   : " (configure with nvcc on PATH and -DMINIDL_CUDA=ON)");
  MINIDL_CHECK(backend_device_type(b) == d.type, who, ": the ", backend_name(b),
               " backend cannot run on tensors on ", d);
  const std::vector<DType> dtypes = backend_dtypes(b);
  if (std::find(dtypes.begin(), dtypes.end(), dtype) == dtypes.end())
    throw_error(str(who, ": the ", backend_name(b), " backend computes in float32 only, got ",
                    dtype_name(dtype), d.is_cuda() ? " (float64 runs on the CPU)" : ""));
}

std::string op_table_markdown() {
  std::string s = "| op | functions | backends |\n|---|---|---|\n";
  for (const OpInfo* op : op_table()) {
    std::string backends;
    for (const OpBackend& ob : op->backends)
      backends +=
          str(backends.empty() ? "" : "<br>", "`", backend_name(ob.backend), "`: ", ob.what);
    if (*op->vendor_condition)
      backends += str("<br>(cuda-vendor only when ", op->vendor_condition, ")");
    s += str("| ", op->name, " | ", op->functions, " | ", backends, " |\n");
  }
  return s;
}

}  // namespace minidl

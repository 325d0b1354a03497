// The op table's shared rules (backend.h). Each op's own entry (its backends and its selector)
// is in kernels/<op>.cpp beside the code it dispatches to.
#include "kernels/backend.h"

#include <algorithm>

#include "kernels/activation.h"
#include "kernels/augment.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/convert.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/grad_scale.h"
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

std::vector<DType> OpInfo::dtypes(Backend b) const {
  for (const OpBackend& ob : backends)
    if (ob.backend == b) return ob.dtypes.empty() ? backend_dtypes(b) : ob.dtypes;
  return {};
}

bool OpInfo::computes(Backend b, DType dtype) const {
  const std::vector<DType> ds = dtypes(b);
  if (std::find(ds.begin(), ds.end(), dtype) == ds.end()) return false;
  return !(b == Backend::CpuFast && dtype == DType::BF16 && !cpu_has_bf16());
}

bool cpu_has_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx512bf16") ||
                          __builtin_cpu_supports("amx-bf16");
  return has;
#else
  return false;
#endif
}

const std::vector<const OpInfo*>& op_table() {
  static const std::vector<const OpInfo*> table{
      &conv2d_op(),       &gemm_op(),      &linear_op(),      &batchnorm_op(),
      &activation_op(),   &maxpool2d_op(), &avgpool2d_op(),   &global_avgpool_op(),
      &softmax_xent_op(), &dropout_op(),   &elementwise_op(), &optimizer_op(),
      &augment_op(),      &convert_op(),   &grad_scale_op()};
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
    if (op.has(Backend::CpuFast) && backend_built(Backend::CpuFast) &&
        op.computes(Backend::CpuFast, dtype) && s.cpu_kernels == CpuKernels::Onednn)
      return Backend::CpuFast;
    return Backend::CpuReference;
  }
  switch (s.kernels) {
    case KernelPath::Cudnn:
      if (op.has(Backend::CudaVendor) && backend_built(Backend::CudaVendor) && vendor_ok &&
          op.computes(Backend::CudaVendor, dtype))
        return Backend::CudaVendor;
      [[fallthrough]];
    case KernelPath::Cublas:
      if (op.has(Backend::CudaCublas) && op.computes(Backend::CudaCublas, dtype))
        return Backend::CudaCublas;
      [[fallthrough]];
    case KernelPath::Handwritten: break;
  }
  return Backend::CudaHandwritten;
}

namespace {
std::string dtype_list(const std::vector<DType>& ds) {
  std::string s;
  for (DType t : ds) s += str(s.empty() ? "" : ", ", dtype_name(t));
  return s;
}
}  // namespace

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
  if (!op.computes(b, dtype)) {
    const std::vector<DType> listed = op.dtypes(b);
    const std::string list = dtype_list(listed);
    const bool no_bf16_cpu = b == Backend::CpuFast && dtype == DType::BF16 &&
                             std::find(listed.begin(), listed.end(), dtype) != listed.end();
    throw_error(str(who, ": the ", backend_name(b), " backend of ", op.name, " computes in ", list,
                    ", got ", dtype_name(dtype),
                    no_bf16_cpu ? " (this CPU has no AVX512_BF16: cpu-reference computes bfloat16)"
                    : is_low_precision(dtype) ? " (--precision fp32 trains in float32)"
                    : d.is_cuda()             ? " (float64 runs on the CPU)"
                                              : ""));
  }
}


std::string op_table_markdown() {
  std::string s = "| op | functions | backends | dtypes |\n|---|---|---|---|\n";
  for (const OpInfo* op : op_table()) {
    std::string backends, dtypes;
    for (const OpBackend& ob : op->backends) {
      backends +=
          str(backends.empty() ? "" : "<br>", "`", backend_name(ob.backend), "`: ", ob.what);
      dtypes += str(dtypes.empty() ? "" : "<br>", "`", backend_name(ob.backend),
                    "`: ", dtype_list(op->dtypes(ob.backend)));
    }
    if (*op->vendor_condition)
      backends += str("<br>(cuda-vendor only when ", op->vendor_condition, ")");
    s += str("| ", op->name, " | ", op->functions, " | ", backends, " | ", dtypes, " |\n");
  }
  return s;
}

}  // namespace minidl

#include "backends.h"

#include "test_util.h"

namespace minidl::test {

namespace {
DeviceType g_tested = DeviceType::CPU;
}  // namespace

std::string BackendCase::name() const {
  return std::string(backend_name(backend)) + " " + dtype_name(dtype);
}

void set_tested_device_type(DeviceType t) { g_tested = t; }
DeviceType tested_device_type() { return g_tested; }

std::vector<BackendCase> backend_cases(const OpInfo& op, bool with_reference) {
  std::vector<BackendCase> out;
  for (const OpBackend& ob : op.backends) {
    const Backend b = ob.backend;
    if (backend_device_type(b) != g_tested) continue;
    if (!backend_runnable(b)) {
      WARN(op.name << ": the " << backend_name(b) << " backend is not tested here: "
                   << (b == Backend::CpuFast ? "this build has no oneDNN (libdnnl-dev)"
                       : MINIDL_CUDA_SIM     ? "the emulator has no cuDNN (a GPU run covers it: "
                                               "scripts/gpu-check.sh)"
                                             : "no GPU in this process"));
      continue;
    }
    const Device d = g_tested == DeviceType::CPU ? Device::cpu() : Device::cuda(0);
    for (DType t : backend_dtypes(b)) {
      if (b == Backend::CpuReference && t == DType::F64 && !with_reference) continue;
      out.push_back({b, t, d});
    }
  }
  return out;
}

DeviceSettings settings_selecting(Backend b) {
  DeviceSettings s;
  switch (b) {
    case Backend::CpuReference: s.cpu_kernels = CpuKernels::Handwritten; break;
    case Backend::CpuFast: s.cpu_kernels = CpuKernels::Onednn; break;
    case Backend::CudaHandwritten: s.kernels = KernelPath::Handwritten; break;
    case Backend::CudaCublas: s.kernels = KernelPath::Cublas; break;
    case Backend::CudaVendor: s.kernels = KernelPath::Cudnn; break;
  }
  return s;
}

Tensor to_case(const BackendCase& c, const Tensor& t) { return cast(t, c.dtype).to(c.device); }

Tensor poisoned(const BackendCase& c, const Shape& s) { return poisoned(c, s, c.dtype); }

Tensor poisoned(const BackendCase& c, const Shape& s, DType dtype) {
  Tensor t = Tensor::empty(s, dtype, c.device);
  poison(t);
  return t;
}

}  // namespace minidl::test

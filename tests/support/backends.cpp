#include "backends.h"

#include "test_util.h"

#include <cstdlib>
#include <tuple>

namespace minidl::test {

namespace {
DeviceType g_tested = DeviceType::CPU;
}  // namespace

std::string BackendCase::name() const {
  return std::string(backend_name(backend)) + " " + dtype_name(dtype);
}

void set_tested_device_type(DeviceType t) {
  g_tested = t;
  if (t != DeviceType::CUDA) return;
  DeviceSettings s = device_settings(Device::cpu());
  s.max_grid_blocks = test_grid_blocks();
  set_run_settings(s);
}

unsigned test_grid_blocks() {
  static const unsigned n = [] {
    const char* v = std::getenv("MINIDL_TEST_GRID_BLOCKS");
    return v && *v ? static_cast<unsigned>(std::strtoul(v, nullptr, 10)) : 4u;
  }();
  return n;
}
DeviceType tested_device_type() { return g_tested; }

namespace {
// The runnable backends of `op` on the tested device type, each with every dtype its entry lists.
std::vector<BackendCase> all_cases(const OpInfo& op) {
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
    for (DType t : op.dtypes(b)) {
      if (!op.computes(b, t)) {
        WARN(op.name << ": " << backend_name(b) << " " << dtype_name(t)
                     << " is not tested here: this CPU has no AVX512_BF16");
        continue;
      }
      out.push_back({b, t, d});
    }
  }
  return out;
}
}  // namespace

std::vector<BackendCase> backend_cases(const OpInfo& op, bool with_reference) {
  std::vector<BackendCase> out;
  for (const BackendCase& c : all_cases(op)) {
    if (is_low_precision(c.dtype)) continue;
    if (c.backend == Backend::CpuReference && c.dtype == DType::F64 && !with_reference) continue;
    out.push_back(c);
  }
  return out;
}

std::vector<BackendCase> low_precision_cases(const OpInfo& op) {
  std::vector<BackendCase> out;
  for (const BackendCase& c : all_cases(op))
    if (is_low_precision(c.dtype)) out.push_back(c);
  return out;
}

DeviceSettings settings_selecting(Backend b) {
  DeviceSettings s;
  if (g_tested == DeviceType::CUDA) s.max_grid_blocks = test_grid_blocks();
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

Tensor poisoned(const BackendCase& c, const Shape& s, DType dtype, Layout layout) {
  Tensor t = Tensor::empty(s, dtype, c.device, layout);
  poison(t);
  return t;
}

void check_layer_against_float64(const BackendCase& c, Module& layer, Module& ref, const Tensor& x,
                                 const Tensor& dy, double tol) {
  ScopedDeviceSettings settings(settings_selecting(c.backend));
  std::vector<NamedParameter> params = layer.named_parameters(), ref_params = ref.named_parameters();
  REQUIRE(params.size() == ref_params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    REQUIRE(params[i].name == ref_params[i].name);
    ref_params[i].param->value.copy_(cast(params[i].param->value, DType::F64));
  }
  layer.to(c.device);
  layer.zero_grad();
  ref.zero_grad();
  const Tensor y = layer.forward(to_case(c, x), Mode::Train);
  const Tensor y_ref = ref.forward(cast(x, DType::F64), Mode::Train);
  const Tensor dx = layer.backward(to_case(c, dy));
  const Tensor dx_ref = ref.backward(cast(dy, DType::F64));
  CHECK(y.device() == c.device);
  CHECK(dx.device() == c.device);
  std::vector<std::tuple<std::string, Tensor, Tensor>> pairs{{"y", y, y_ref}, {"dx", dx, dx_ref}};
  params = layer.named_parameters();  // to() replaced the tensors
  for (size_t i = 0; i < params.size(); ++i)
    pairs.emplace_back("d" + params[i].name, params[i].param->grad, ref_params[i].param->grad);
  for (const auto& [name, out, expect] : pairs) {
    const Comparison cmp = compare(out, expect, tol, tol);
    INFO(name << ": " << cmp.report);
    CHECK(cmp.ok);
  }
}

}  // namespace minidl::test

// The run-wide CPU kernel setting (cpu_kernels.h).
#include "kernels/cpu_kernels.h"

#include <atomic>

#include "core/error.h"

#if MINIDL_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace minidl {

namespace {
std::atomic<CpuKernels> g_cpu_kernels{onednn_available() ? CpuKernels::Onednn
                                                          : CpuKernels::Handwritten};
}  // namespace

void set_cpu_kernels(CpuKernels k) {
  MINIDL_CHECK(k != CpuKernels::Onednn || onednn_available(),
               "--cpu-kernels onednn: this build has no oneDNN (install libdnnl-dev, e.g. with "
               "scripts/setup.sh, and configure again); use --cpu-kernels handwritten");
  g_cpu_kernels.store(k);
}

CpuKernels cpu_kernels() { return g_cpu_kernels.load(std::memory_order_relaxed); }

const char* cpu_kernels_name(CpuKernels k) {
  switch (k) {
    case CpuKernels::Handwritten: return "handwritten";
    case CpuKernels::Onednn: return "onednn";
  }
  return "?";
}

CpuKernels parse_cpu_kernels(const std::string& s) {
  if (s == "handwritten") return CpuKernels::Handwritten;
  if (s == "onednn") return CpuKernels::Onednn;
  throw_error(str("--cpu-kernels '", s, "': expected handwritten or onednn"));
}

std::vector<std::string> cpu_kernels_names() {
  if (onednn_available()) return {"onednn", "handwritten"};
  return {"handwritten"};
}

std::string cpu_kernels_summary() {
  std::string isa = "generic";
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f"))
    isa = "avx512";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    isa = "avx2";
#endif
  std::string s = str("cpu kernels ", cpu_kernels_name(cpu_kernels()), ", cpu features ", isa);
#if MINIDL_HAVE_DNNL
  const dnnl_version_t* v = dnnl_version();
  s += str(", oneDNN ", v->major, ".", v->minor, ".", v->patch);
#else
  s += ", no oneDNN in this build";
#endif
  return s;
}

}  // namespace minidl

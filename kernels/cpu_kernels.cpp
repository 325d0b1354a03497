// What the CPU backends of this build are (cpu_kernels.h).
#include "kernels/cpu_kernels.h"

#include <atomic>

#include "core/error.h"
#include "kernels/cpu_simd.h"

#if MINIDL_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace minidl {

namespace {
std::atomic<bool> avx512_copy_allowed{true};
}  // namespace

bool cpu::cpu_has_avx512() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return has;
#else
  return false;
#endif
}

bool cpu::use_avx512_copy() {
  return cpu_has_avx512() && avx512_copy_allowed.load(std::memory_order_relaxed);
}

void cpu::allow_avx512_copy(bool allowed) {
  avx512_copy_allowed.store(allowed, std::memory_order_relaxed);
}

std::string cpu_kernels_summary() {
  std::string isa = "generic";
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f"))
    isa = "avx512";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    isa = "avx2";
#endif
  std::string s = str("cpu kernels ", cpu_kernels_name(device_settings(Device::cpu()).cpu_kernels),
                      ", cpu features ", isa);
#if MINIDL_HAVE_DNNL
  const dnnl_version_t* v = dnnl_version();
  s += str(", oneDNN ", v->major, ".", v->minor, ".", v->patch);
#else
  s += ", no oneDNN in this build";
#endif
  return s;
}

}  // namespace minidl

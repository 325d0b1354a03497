// Device queries and the CPU side of memory. Everything that calls the CUDA runtime is in
// core/cuda_runtime.cpp, compiled only when the CUDA backend is built; this file provides the
// answers for a CPU-only build.
#include "core/device.h"

#include <cstdlib>
#include <cstring>

#include "core/allocator.h"
#include "core/cuda_context.h"

namespace minidl {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    const std::string n = s.substr(5);
    MINIDL_CHECK(!n.empty() && n.find_first_not_of("0123456789") == std::string::npos,
                 "device '", s, "': expected cpu, cuda or cuda:N");
    return cuda(std::stoi(n));
  }
  throw_error(minidl::str("device '", s, "': expected cpu, cuda or cuda:N"));
}

#if !MINIDL_WITH_CUDA
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_device_summary() { return "no CUDA device: minidl was built without CUDA"; }
void require_device(const Device& d) {
  MINIDL_CHECK(d.is_cpu(), "no CUDA device: ", d,
               " was requested but minidl was built without CUDA (configure with nvcc on PATH)");
}
CudaContext& cuda_context(int) { MINIDL_IF_CUDA(); }
void cuda_set_device(int) { MINIDL_IF_CUDA(); }
void cuda_synchronize(const Device& d) { MINIDL_CHECK(d.is_cpu(), "no CUDA device: ", d); }
void memcpy_any(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  MINIDL_CHECK(dst_dev.is_cpu() && src_dev.is_cpu(), "no CUDA device: copy between ", src_dev,
               " and ", dst_dev);
  if (bytes) std::memcpy(dst, src, bytes);
}
void memset_zero(void* dst, Device dev, size_t bytes) {
  MINIDL_CHECK(dev.is_cpu(), "no CUDA device: ", dev);
  if (bytes) std::memset(dst, 0, bytes);
}
#endif

}  // namespace minidl

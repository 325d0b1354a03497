// Elementwise add: argument checks, device dispatch and the CPU reference (formulas in
// elementwise.h). The CUDA kernel is in elementwise.cu.
//
// out may alias a or b: element i is read and written by the same iteration only, so no pointer is
// declared __restrict__ and the in-place forms (a += b for residual sums) are safe.
#include "kernels/elementwise.h"

#include "kernels/cpu_simd.h"

namespace minidl {

namespace cpu {

// T is the storage type, the sum runs in compute_t<T> (float for bfloat16/float16).
// 16-bit T runs the AVX-512 copy where the CPU has it (cpu_simd.h).
template <typename T>
void add_scaled(T* out, const T* a, const T* b, compute_t<T> alpha, int64_t n) {
  parallel_chunks<T>(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) out[i] = narrow<T>(widen(a[i]) + alpha * widen(b[i]));
  });
}

}  // namespace cpu

const OpInfo& elementwise_op() {
  static const OpInfo op{
      "elementwise",
      "`add`, `add_scaled`",
      {{Backend::CpuReference,
        "vectorised loop; bfloat16/float16 in memory, float32 math",
        {DType::F32, DType::F64, DType::BF16, DType::F16}},
       {Backend::CudaHandwritten,
        "one thread per element; bfloat16/float16 in 16-byte vectors, float32 math",
        {DType::F32, DType::BF16, DType::F16}}}};
  return op;
}

Backend select_elementwise_backend(const Device& d, DType dtype) {
  return select_backend(elementwise_op(), d, dtype);
}

void add_scaled(Tensor& out, const Tensor& a, const Tensor& b, double alpha) {
  add_scaled(select_elementwise_backend(a.device(), a.dtype()), out, a, b, alpha);
}

void add_scaled(Backend be, Tensor& out, const Tensor& a, const Tensor& b, double alpha) {
  const char* who = "add_scaled";
  check_same_shape(a, b, who);
  check_same_shape(out, a, who);
  check_dtype(b, a.dtype(), who, "b");
  check_dtype(out, a.dtype(), who, "out");
  check_same_device(b, a, who);
  check_same_device(out, a, who);
  check_backend(elementwise_op(), be, a.device(), a.dtype(), who);
  if (be == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(dispatch_float32_storage(a.dtype(), who, [&]<typename T>() {
      cuda::add_scaled(out.data<T>(), a.data<T>(), b.data<T>(), static_cast<float>(alpha),
                       a.numel(), cuda_context(a.device()));
    }));
    return;
  }
  dispatch_storage(a.dtype(), who, [&]<typename T>() {
    cpu::add_scaled<T>(out.data<T>(), a.data<T>(), b.data<T>(), static_cast<compute_t<T>>(alpha),
                       a.numel());
  });
}

void add(Tensor& out, const Tensor& a, const Tensor& b) { add_scaled(out, a, b, 1.0); }
void add(Backend be, Tensor& out, const Tensor& a, const Tensor& b) {
  add_scaled(be, out, a, b, 1.0);
}

}  // namespace minidl

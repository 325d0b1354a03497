// Loss scaling's scale-and-check (formulas in grad_scale.h): argument checks, dispatch and the CPU
// loop. The CUDA kernel is in grad_scale.cu.
#include "kernels/grad_scale.h"

#include <cmath>

namespace minidl {

const OpInfo& grad_scale_op() {
  static const OpInfo op{"grad_scale",
                         "`scale_and_check_finite`",
                         {{Backend::CpuReference, "one loop"},  // float32 and float64
                          {Backend::CudaHandwritten, "a grid-stride loop, a flag written on inf/NaN"}}};
  return op;
}

Backend select_grad_scale_backend(const Device& d, DType dtype) {
  return select_backend(grad_scale_op(), d, dtype);
}

void scale_and_check_finite(Tensor& t, double factor, Tensor& found_inf) {
  scale_and_check_finite(select_grad_scale_backend(t.device(), t.dtype()), t, factor, found_inf);
}

void scale_and_check_finite(Backend b, Tensor& t, double factor, Tensor& found_inf) {
  const char* who = "scale_and_check_finite";
  MINIDL_CHECK(std::isfinite(factor) && factor > 0, who, ": the factor must be positive and finite, got ",
               factor);
  check_shape(found_inf, Shape{}, who, "found_inf");
  check_dtype(found_inf, DType::I32, who, "found_inf");
  check_same_device(found_inf, t, who);
  MINIDL_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, who,
               ": loss scaling works on float32 (and float64) gradients, got ", t.describe());
  check_backend(grad_scale_op(), b, t.device(), t.dtype(), who);
  const int64_t n = t.numel();
  if (b == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(cuda::scale_and_check_finite(t.data<float>(), n, static_cast<float>(factor),
                                                found_inf.data<int32_t>(),
                                                cuda_context(t.device())));
    return;
  }
  dispatch_floating(t.dtype(), who, [&]<typename T>() {
    T* p = t.data<T>();
    const T f = static_cast<T>(factor);
    int32_t bad = 0;
#pragma omp parallel for reduction(| : bad) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      p[i] *= f;
      bad |= std::isfinite(p[i]) ? 0 : 1;
    }
    if (bad) found_inf.data<int32_t>()[0] = 1;
  });
}

}  // namespace minidl

// Loss scaling for float16 training (torch.cuda.amp.GradScaler's two kernels in one op):
//
//   scale_and_check_finite(t, factor, found_inf):   t *= factor;  found_inf = 1 if any element of t
//                                                   is inf or NaN (found_inf is left alone
//                                                   otherwise, so one flag collects several calls)
//
// The trainer scales the loss gradient by the scale S before backward (factor S) and unscales the
// model's flat gradient buffer after it (factor 1/S), as torch's _amp_foreach_non_finite_check_
// and_unscale_ does. Multiplying by a positive finite factor keeps inf and NaN, so checking after
// the multiplication finds what a check before it would (plus a finite value that the factor
// pushed past float32's range, which is an overflow too). t is float32 (float64 on the CPU);
// found_inf an int32 scalar on t's device.
//
// Backends: cpu-reference (one loop), cuda-handwritten (a grid-stride loop; any thread that sees a
// non-finite value writes 1, so no reduction is needed).
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

const OpInfo& grad_scale_op();
Backend select_grad_scale_backend(const Device& d, DType dtype);

void scale_and_check_finite(Tensor& t, double factor, Tensor& found_inf);
void scale_and_check_finite(Backend b, Tensor& t, double factor, Tensor& found_inf);

namespace cuda {
void scale_and_check_finite(float* t, int64_t n, float factor, int32_t* found_inf,
                            CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

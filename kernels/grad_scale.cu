// CUDA scale-and-check for loss scaling (grad_scale.h): a grid-stride loop; a thread that meets a
// non-finite value writes 1 to the flag (every writer writes the same value, so the race is benign
// and no reduction is needed).
#include "core/cuda_check.h"
#include "kernels/grad_scale.h"

namespace minidl::cuda {

namespace {

__global__ void scale_and_check_kernel(float* t, int64_t n, float factor, int32_t* found_inf) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = t[i] * factor;
    t[i] = v;
    if (!isfinite(v)) *found_inf = 1;
  }
}

}  // namespace

void scale_and_check_finite(float* t, int64_t n, float factor, int32_t* found_inf,
                            CudaContext& ctx) {
  if (n == 0) return;
  const int threads = 256;
  scale_and_check_kernel<<<grid_stride_blocks(ctx, n, threads), threads, 0, ctx.stream>>>(
      t, n, factor, found_inf);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

}  // namespace minidl::cuda

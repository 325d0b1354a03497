// CUDA elementwise add: out = a + alpha * b (formulas in elementwise.h, CPU reference in
// elementwise.cpp). One grid-stride loop, one thread per element: the kernel is memory-bound (12
// bytes per element), so all that matters is coalesced access and enough blocks in flight.
// out may alias a or b (in-place residual sums), so the pointers are not __restrict__: each element
// is read and then written by the same thread, which makes aliasing harmless.
#include "core/cuda_check.h"
#include "kernels/elementwise.h"

namespace minidl::cuda {

namespace {

__global__ void add_scaled_kernel(float* out, const float* a, const float* b, float alpha,
                                  int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + alpha * b[i];
}

}  // namespace

void add_scaled(float* out, const float* a, const float* b, float alpha, int64_t n,
                CudaContext& ctx) {
  if (n == 0) return;
  const int threads = 256;
  add_scaled_kernel<<<grid_stride_blocks(ctx, n, threads), threads, 0, ctx.stream>>>(out, a, b,
                                                                                   alpha, n);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

}  // namespace minidl::cuda

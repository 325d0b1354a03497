// CUDA elementwise add: out = a + alpha * b (formulas in elementwise.h, CPU reference in
// elementwise.cpp). One grid-stride loop, one thread per element: the kernel is memory-bound (12
// bytes per element), so all that matters is coalesced access and enough blocks in flight.
// out may alias a or b (in-place residual sums), so the pointers are not __restrict__: each element
// is read and then written by the same thread, which makes aliasing harmless.
// bfloat16/float16: map2_kernel (kernels/vec16.cuh), 16-byte vectors of 8 elements with a scalar
// head and tail, float32 math and one rounding per element, as the CPU row.
#include "core/cuda_check.h"
#include "kernels/elementwise.h"
#include "kernels/vec16.cuh"

namespace minidl::cuda {

namespace {

__global__ void add_scaled_kernel(float* out, const float* a, const float* b, float alpha,
                                  int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + alpha * b[i];
}

struct AddScaled {
  float alpha;
  __device__ float operator()(float a, float b) const { return a + alpha * b; }
};

template <typename T>
void add_scaled_16(T* out, const T* a, const T* b, float alpha, int64_t n, CudaContext& ctx) {
  if (n == 0) return;
  const int threads = 256;
  const VecSplit s = vec_split<T>(n, {out, a, b});
  map2_kernel<T, AddScaled>
      <<<grid_stride_blocks(ctx, map_items(s), threads), threads, 0, ctx.stream>>>(
          out, a, b, s, AddScaled{alpha});
  MINIDL_CHECK_LAUNCH(ctx.stream);
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

void add_scaled(bf16* out, const bf16* a, const bf16* b, float alpha, int64_t n, CudaContext& ctx) {
  add_scaled_16(out, a, b, alpha, n, ctx);
}
void add_scaled(f16* out, const f16* a, const f16* b, float alpha, int64_t n, CudaContext& ctx) {
  add_scaled_16(out, a, b, alpha, n, ctx);
}

}  // namespace minidl::cuda

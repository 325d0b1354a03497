// CUDA inverted dropout (formulas in dropout.h, CPU reference in dropout.cpp).
//
// The mask must equal the CPU's bit for bit: element i keeps when
// uniform_from_word(philox_word(seed, offset + i)) >= p, with p in float on both sides.
//
// Forward: one thread per Philox counter, grid-stride. One philox4x32 call (10 rounds of 32-bit
// multiplies) yields the four words of a counter, and word w belongs to element w - offset, so a
// thread that owns counter c handles the up-to-four elements whose words are 4c .. 4c+3. That is a
// quarter of the Philox work of one-thread-per-element (which would compute all four words and
// keep one). The first and last counters may be partly outside [offset, offset + n) when offset
// or n is not a multiple of 4; those words are skipped. Each thread touches 4 consecutive
// elements, so a warp covers 128 contiguous floats: the accesses stay within a few cache lines.
// Backward: dx = mask ? dy * scale : 0, one thread per element, grid-stride, memory-bound.
//
// bfloat16/float16: the forward is the same kernel templated on the storage type (float32 math,
// one rounding per element; its four elements per thread are 8 bytes, and the Philox rounds, not
// the memory, bound it). The backward reads dy and dx in 16-byte vectors of 8 elements with the
// mask's 8 bytes as one uint2 (vec_split over dx and dy, kernels/vec16.cuh, with the mask's
// matching element 8-byte aligned; otherwise every element runs scalar).
#include "core/cuda_check.h"
#include "core/rng.h"
#include "kernels/dropout.h"
#include "kernels/vec16.cuh"

namespace minidl::cuda {

namespace {

template <typename T>
__global__ void dropout_forward_kernel(T* __restrict__ y, uint8_t* __restrict__ mask,
                                       const T* __restrict__ x, int64_t n, float p, float scale,
                                       uint64_t seed, uint64_t offset, uint64_t first_counter,
                                       uint64_t counters) {
  for (uint64_t c = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; c < counters;
       c += uint64_t(gridDim.x) * blockDim.x) {
    const uint64_t ctr = first_counter + c;
    const Philox4 r = philox4x32(seed, ctr);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint64_t word = ctr * 4 + k;
      if (word < offset || word - offset >= static_cast<uint64_t>(n)) continue;
      const int64_t i = static_cast<int64_t>(word - offset);
      const bool keep = uniform_from_word(r.v[k]) >= p;
      mask[i] = keep;
      y[i] = narrow<T>(keep ? widen(x[i]) * scale : 0.f);
    }
  }
}

__global__ void dropout_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                        const uint8_t* __restrict__ mask, int64_t n, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = mask[i] ? dy[i] * scale : 0.f;
}

// The 16-bit backward: vectors of 8 (dy, dx: one uint4 each; mask: one uint2), then the scalar
// head and tail.
template <typename T>
__global__ void dropout_backward16_kernel(T* __restrict__ dx, const T* __restrict__ dy,
                                          const uint8_t* __restrict__ mask, VecSplit s,
                                          float scale) {
  constexpr int V = kVec<T>;
  static_assert(V == 8, "16-bit elements: 8 per vector, 8 mask bytes");
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t v = first; v < s.vecs; v += stride) {
    Unit<V> g = load_unit<T, V>(dy + s.head, v);
    const uint2 m = __ldg(reinterpret_cast<const uint2*>(mask + s.head) + v);
#pragma unroll
    for (int k = 0; k < V; ++k)
      g.v[k] = ((k < 4 ? m.x >> (8 * k) : m.y >> (8 * (k - 4))) & 0xffu) ? g.v[k] * scale : 0.f;
    store_unit<T, V>(dx + s.head, v, g);
  }
  for (int64_t j = first; j < scalar_count(s); j += stride) {
    const int64_t i = scalar_index(s, j);
    dx[i] = narrow<T>(mask[i] ? widen(dy[i]) * scale : 0.f);
  }
}

}  // namespace

template <typename T>
void dropout_forward(T* y, uint8_t* mask, const T* x, int64_t n, float p, uint64_t seed,
                     uint64_t offset, CudaContext& ctx) {
  if (n == 0) return;
  const uint64_t first = offset / 4;
  const uint64_t last = (offset + static_cast<uint64_t>(n) - 1) / 4;
  const uint64_t counters = last - first + 1;
  const int threads = 256;
  const unsigned blocks = grid_stride_blocks(ctx, static_cast<long long>(counters), threads);
  dropout_forward_kernel<T><<<blocks, threads, 0, ctx.stream>>>(y, mask, x, n, p, 1.f / (1.f - p),
                                                                seed, offset, first, counters);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

void dropout_backward(float* dx, const float* dy, const uint8_t* mask, int64_t n, float p,
                      CudaContext& ctx) {
  if (n == 0) return;
  const int threads = 256;
  dropout_backward_kernel<<<grid_stride_blocks(ctx, n, threads), threads, 0, ctx.stream>>>(
      dx, dy, mask, n, 1.f / (1.f - p));
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename T>
void dropout_backward(T* dx, const T* dy, const uint8_t* mask, int64_t n, float p,
                      CudaContext& ctx) {
  if (n == 0) return;
  const int threads = 256;
  VecSplit s = vec_split<T>(n, {dx, dy});
  if (reinterpret_cast<uintptr_t>(mask + s.head) % 8 != 0) s = {n, n, 0, n};  // all scalar
  dropout_backward16_kernel<T>
      <<<grid_stride_blocks(ctx, map_items(s), threads), threads, 0, ctx.stream>>>(dx, dy, mask, s,
                                                                                   1.f / (1.f - p));
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template void dropout_forward<float>(float*, uint8_t*, const float*, int64_t, float, uint64_t,
                                     uint64_t, CudaContext&);
template void dropout_forward<bf16>(bf16*, uint8_t*, const bf16*, int64_t, float, uint64_t,
                                    uint64_t, CudaContext&);
template void dropout_forward<f16>(f16*, uint8_t*, const f16*, int64_t, float, uint64_t, uint64_t,
                                   CudaContext&);
template void dropout_backward<bf16>(bf16*, const bf16*, const uint8_t*, int64_t, float,
                                     CudaContext&);
template void dropout_backward<f16>(f16*, const f16*, const uint8_t*, int64_t, float, CudaContext&);

}  // namespace minidl::cuda

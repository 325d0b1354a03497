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
#include "core/cuda_check.h"
#include "core/rng.h"
#include "kernels/dropout.h"

namespace minidl::cuda {

namespace {

__global__ void dropout_forward_kernel(float* __restrict__ y, uint8_t* __restrict__ mask,
                                       const float* __restrict__ x, int64_t n, float p, float scale,
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
      y[i] = keep ? x[i] * scale : 0.f;
    }
  }
}

__global__ void dropout_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                        const uint8_t* __restrict__ mask, int64_t n, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = mask[i] ? dy[i] * scale : 0.f;
}

}  // namespace

void dropout_forward(float* y, uint8_t* mask, const float* x, int64_t n, float p, uint64_t seed,
                     uint64_t offset, CudaContext& ctx) {
  if (n == 0) return;
  const uint64_t first = offset / 4;
  const uint64_t last = (offset + static_cast<uint64_t>(n) - 1) / 4;
  const uint64_t counters = last - first + 1;
  const int threads = 256;
  const unsigned blocks = grid_stride_blocks(ctx, static_cast<long long>(counters), threads);
  dropout_forward_kernel<<<blocks, threads, 0, ctx.stream>>>(y, mask, x, n, p, 1.f / (1.f - p),
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

}  // namespace minidl::cuda

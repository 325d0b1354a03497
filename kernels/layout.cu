// CUDA layout primitives (layout.h), shared by convolution and linear layers. All memory-bound:
//   nkl_to_knl / knl_to_nkl   one thread per output element; l is innermost on both sides, so
//              reads and writes are contiguous runs of L elements. Sizes are checked to fit 32-bit
//              indexing (64-bit divisions would dominate); only the grid-stride counter is 64-bit,
//              so that stepping past the end cannot overflow.
//   channel_sum_accumulate    one block per channel k reduces the N*L values dy[:, k, :] (threads
//              stride over them, then a warp-shuffle tree), and one thread adds the sum to db[k]:
//              deterministic, and db accumulates as the gradient rule requires.
#include <cstdint>

#include "core/cuda_check.h"
#include "kernels/layout.h"

namespace minidl::cuda {

namespace {

constexpr int kThreads = 256;

// T: float, or uint16_t for bfloat16/float16 (a copy of the bits).
template <typename T>
__global__ void nkl_to_knl_kernel(T* __restrict__ out, const T* __restrict__ in, int nb, int K,
                                  int L) {
  const int total = nb * K * L;
  for (int64_t it = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; it < total;
       it += int64_t(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(it);
    const int k = i / (nb * L), n = (i / L) % nb, l = i % L;  // i = (k*nb + n)*L + l
    out[i] = in[(n * K + k) * L + l];
  }
}

__global__ void knl_to_nkl_kernel(float* __restrict__ out, const float* __restrict__ in,
                                  const float* __restrict__ bias, int nb, int K, int L) {
  const int total = nb * K * L;
  for (int64_t it = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; it < total;
       it += int64_t(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(it);
    const int n = i / (K * L), k = (i / L) % K, l = i % L;  // i = (n*K + k)*L + l
    out[i] = in[(k * nb + n) * L + l] + (bias ? bias[k] : 0.f);
  }
}

// Block k: db[k] += sum_{n, l} dy[n, k, l]. N*L may exceed 2^31 across a whole batch, so the loop
// index is 64-bit here (one division per element is cheap next to the load).
__global__ void channel_sum_kernel(float* __restrict__ db, const float* __restrict__ dy, int64_t N,
                                   int64_t K, int64_t L) {
  const int64_t k = blockIdx.x;
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < N * L; i += blockDim.x) {
    const int64_t n = i / L, l = i % L;
    sum += dy[(n * K + k) * L + l];
  }
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off);
  __shared__ float warp_sums[kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    sum = lane < kThreads / 32 ? warp_sums[lane] : 0.f;
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off);
    if (lane == 0) db[k] += sum;
  }
}

}  // namespace

namespace {
template <typename T>
void launch_nkl_to_knl(T* out, const T* in, int64_t nb, int64_t K, int64_t L, CudaContext& ctx) {
  const int64_t total = nb * K * L;
  if (total == 0) return;
  as_int(total, "nkl_to_knl size nb*K*L");
  nkl_to_knl_kernel<T><<<grid_stride_blocks(ctx, total, kThreads), kThreads, 0, ctx.stream>>>(
      out, in, as_int(nb, "nb"), as_int(K, "K"), as_int(L, "L"));
  MINIDL_CHECK_LAUNCH(ctx.stream);
}
}  // namespace

void nkl_to_knl(float* out, const float* in, int64_t nb, int64_t K, int64_t L, CudaContext& ctx) {
  launch_nkl_to_knl<float>(out, in, nb, K, L, ctx);
}

void nkl_to_knl16(uint16_t* out, const uint16_t* in, int64_t nb, int64_t K, int64_t L,
                  CudaContext& ctx) {
  launch_nkl_to_knl<uint16_t>(out, in, nb, K, L, ctx);
}

void knl_to_nkl(float* out, const float* in, const float* bias, int64_t nb, int64_t K, int64_t L,
                CudaContext& ctx) {
  const int64_t total = nb * K * L;
  if (total == 0) return;
  as_int(total, "knl_to_nkl size nb*K*L");
  knl_to_nkl_kernel<<<grid_stride_blocks(ctx, total, kThreads), kThreads, 0, ctx.stream>>>(
      out, in, bias, as_int(nb, "nb"), as_int(K, "K"), as_int(L, "L"));
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

void channel_sum_accumulate(float* db, const float* dy, int64_t N, int64_t K, int64_t L,
                            CudaContext& ctx) {
  if (K == 0) return;
  MINIDL_CHECK(K <= INT32_MAX, "channel_sum_accumulate: K = ", K, " channels exceed one grid");
  channel_sum_kernel<<<static_cast<unsigned>(K), kThreads, 0, ctx.stream>>>(db, dy, N, K, L);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

}  // namespace minidl::cuda

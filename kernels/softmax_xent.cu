// CUDA softmax cross-entropy (formulas in softmax_xent.h, CPU reference in softmax_xent.cpp).
//
// Forward, kernel 1 (softmax_xent_rows_kernel): one warp per row, 8 rows per 256-thread block.
//   Rows here are short (K = 10 for CIFAR-10, 100 for CIFAR-100): a block per row would leave most
//   of its threads idle and need shared memory and __syncthreads for every reduction, while a
//   warp's lanes stride over the row (coalesced loads) and combine with register shuffles. Even
//   K = 1000 is only ~32 elements per lane, so one layout serves every K. Each warp computes the
//   row maximum with its first index (argmax, ties to the lower index as on the CPU), the sum of
//   exp(z - max), the probabilities, the row's loss term and whether the prediction is correct,
//   and writes the term and the 0/1 hit to per-row scratch buffers.
// Forward, kernel 2 (softmax_xent_reduce_kernel): one block sums the N row terms and hits in a
//   fixed order (thread-strided partial sums, then a shared-memory tree) and writes loss = sum/N
//   and the correct count. No float atomics: atomicAdd would add the rows in whatever order the
//   warps finish, so the loss would change in its last bits from run to run; with a fixed order it
//   is bit-for-bit reproducible. N is a batch size (hundreds), so one block is plenty.
// Backward (softmax_xent_backward_kernel): elementwise over N*K with a grid-stride loop,
//   dz = scale * (p - q) / N, memory-bound.
// argmax_rows: the forward's warp-per-row argmax alone.
//
// A label outside [0, K) cannot be reported from a kernel without a host sync, so its row gets a
// NaN loss term (hence a NaN batch loss, which the train loop reports) and NaN gradients: a bad
// label never turns into a silently wrong update.
#include <climits>

#include "core/cuda_check.h"
#include "core/tensor.h"
#include "kernels/softmax_xent.h"

namespace minidl::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;
constexpr int kRowThreads = kWarp * kRowsPerBlock;
constexpr int kReduceThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

struct MaxIndex {
  float value;
  int32_t index;  // INT_MAX: this lane saw no element
};

// The larger of two candidates; on equal values the lower index, as the CPU's first-max rule.
__device__ __forceinline__ MaxIndex better(MaxIndex a, MaxIndex b) {
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

// Row maximum and its first index, identical in every lane of the warp on return.
__device__ MaxIndex warp_argmax(const float* __restrict__ z, int64_t K, int lane) {
  MaxIndex best{-INFINITY, INT_MAX};
  // Each lane scans j = lane, lane + 32, ... in increasing order: the lane's first maximum. NaN
  // follows the CPU's rule (z[j] > z[best] from best = 0): a NaN at index 0 wins, any other is
  // never chosen, so it must not become a lane's first candidate either (nothing is > NaN).
  for (int64_t j = lane; j < K; j += kWarp) {
    const float v = z[j];
    if ((best.index == INT_MAX && (j == 0 || !isnan(v))) || v > best.value)
      best = {v, static_cast<int32_t>(j)};
  }
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const MaxIndex other{__shfl_xor_sync(kFullMask, best.value, off),
                         __shfl_xor_sync(kFullMask, best.index, off)};
    best = better(best, other);
  }
  // With NaN logits `better` is not symmetric and lanes could disagree; lane 0's answer is used
  // by all so that every lane shifts by the same maximum.
  best.value = __shfl_sync(kFullMask, best.value, 0);
  best.index = __shfl_sync(kFullMask, best.index, 0);
  return best;
}

// Sum over the warp. Each butterfly step adds two equal pairs in swapped order and float addition
// is commutative, so every lane ends with the same bits.
__device__ __forceinline__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}

__global__ void softmax_xent_rows_kernel(float* __restrict__ row_loss, int32_t* __restrict__ row_hit,
                                         float* __restrict__ probs, const float* __restrict__ logits,
                                         const int32_t* __restrict__ labels, int64_t N, int64_t K,
                                         float eps) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;  // whole warps leave together: row is the same in all 32 lanes
  const float* z = logits + row * K;
  float* p = probs + row * K;

  const MaxIndex top = warp_argmax(z, K, lane);
  const float m = top.value;

  // exp(z - m) <= 1 and the maximum's term is exactly 1: no overflow, and log(sum) is finite.
  float sum = 0.f;
  for (int64_t j = lane; j < K; j += kWarp) sum += expf(z[j] - m);
  const float lse = logf(warp_sum(sum));

  float sum_logp = 0.f;
  for (int64_t j = lane; j < K; j += kWarp) {
    const float logp = z[j] - m - lse;
    sum_logp += logp;
    p[j] = expf(logp);
  }
  sum_logp = warp_sum(sum_logp);

  if (lane == 0) {
    const int32_t t = labels[row];
    const bool valid = t >= 0 && t < K;
    const float logp_t = valid ? z[t] - m - lse : 0.f;
    row_loss[row] = valid ? -((1.f - eps) * logp_t + eps / static_cast<float>(K) * sum_logp)
                          : __int_as_float(0x7fc00000);  // quiet NaN
    row_hit[row] = valid && top.index == t;
  }
}

__global__ void softmax_xent_reduce_kernel(float* __restrict__ loss, int32_t* __restrict__ correct,
                                           const float* __restrict__ row_loss,
                                           const int32_t* __restrict__ row_hit, int64_t N) {
  // Double partial sums: the same reason as the CPU reference (large batches of float32 terms).
  __shared__ double s_loss[kReduceThreads];
  __shared__ int32_t s_hit[kReduceThreads];
  double l = 0.0;
  int32_t h = 0;
  for (int64_t i = threadIdx.x; i < N; i += kReduceThreads) {
    l += row_loss[i];
    h += row_hit[i];
  }
  s_loss[threadIdx.x] = l;
  s_hit[threadIdx.x] = h;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) {
      s_loss[threadIdx.x] += s_loss[threadIdx.x + stride];
      s_hit[threadIdx.x] += s_hit[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    loss[0] = static_cast<float>(s_loss[0] / static_cast<double>(N));
    correct[0] = s_hit[0];
  }
}

__global__ void softmax_xent_backward_kernel(float* __restrict__ dz, const float* __restrict__ probs,
                                             const int32_t* __restrict__ labels, int64_t N,
                                             int64_t K, float eps, float scale) {
  const float off = eps / static_cast<float>(K);  // q_ij for j != t_i
  const float on = 1.f - eps + off;                // q_ij for j == t_i
  const float s = scale / static_cast<float>(N);
  const int64_t total = N * K;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / K, j = idx % K;
    const int32_t t = labels[i];
    dz[idx] = (t >= 0 && t < K) ? s * (probs[idx] - (j == t ? on : off))
                                : __int_as_float(0x7fc00000);  // bad label: see the top comment
  }
}

__global__ void argmax_rows_kernel(int32_t* __restrict__ pred, const float* __restrict__ logits,
                                   int64_t N, int64_t K) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;
  const MaxIndex top = warp_argmax(logits + row * K, K, lane);
  if (lane == 0) pred[row] = top.index;
}

unsigned row_blocks(int64_t N) {
  return static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock);
}

}  // namespace

void softmax_xent_forward(float* loss, float* probs, int32_t* correct, const float* logits,
                          const int32_t* labels, int64_t N, int64_t K, float label_smoothing,
                          CudaContext& ctx) {
  // Per-row scratch from the caching allocator; released when this function returns, which is
  // safe because any later user of the block is queued behind the kernels below on ctx.stream.
  const Device dev = Device::cuda(ctx.device);
  Tensor row_loss = Tensor::empty(Shape{N}, DType::F32, dev);
  Tensor row_hit = Tensor::empty(Shape{N}, DType::I32, dev);
  softmax_xent_rows_kernel<<<row_blocks(N), kRowThreads, 0, ctx.stream>>>(
      row_loss.data<float>(), row_hit.data<int32_t>(), probs, logits, labels, N, K,
      label_smoothing);
  MINIDL_CHECK_LAUNCH(ctx.stream);
  softmax_xent_reduce_kernel<<<1, kReduceThreads, 0, ctx.stream>>>(
      loss, correct, row_loss.data<float>(), row_hit.data<int32_t>(), N);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

void softmax_xent_backward(float* dlogits, const float* probs, const int32_t* labels, int64_t N,
                           int64_t K, float label_smoothing, float scale, CudaContext& ctx) {
  const int threads = 256;
  softmax_xent_backward_kernel<<<grid_stride_blocks(ctx, N * K, threads), threads, 0, ctx.stream>>>(
      dlogits, probs, labels, N, K, label_smoothing, scale);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

void argmax_rows(int32_t* pred, const float* logits, int64_t N, int64_t K, CudaContext& ctx) {
  argmax_rows_kernel<<<row_blocks(N), kRowThreads, 0, ctx.stream>>>(pred, logits, N, K);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

}  // namespace minidl::cuda

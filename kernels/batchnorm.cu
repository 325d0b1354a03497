// CUDA batch normalisation over (N, H, W) per channel of an NCHW or NHWC tensor (formulas and the
// layout contract in batchnorm.h).
//
// Every kernel here is memory-bound (a few flops per element), so the design goal is to read x
// (and dy) as few times as possible, coalesced, 16 bytes per load where the rows allow it:
//   forward train:  stats pass (reads x) + normalise pass (reads x, writes y)      = 3 passes
//   forward eval:   one elementwise pass (reads x, writes y)                        = 2 passes
//   backward train: reduce pass (reads x, dy) + dx pass (reads x, dy, writes dx)    = 5 passes
//   backward eval:  one fused pass: reduce for dgamma/dbeta and write dx            = 3 passes
// plus a tiny per-channel "finalize" kernel between the two passes (C threads).
//
// Work split of the reductions. One block per channel is the textbook layout, but a ResNet stage
// has only 16-64 channels at the largest activations, fewer blocks than an H100 has SMs (132), so
// a block-per-channel reduction would leave most of the GPU idle on exactly the layers that move
// the most bytes. Instead each channel's N*H*W elements (in units of float4 when HW % 4 == 0, of
// float otherwise; see Unit below) are split into S contiguous slices, grid = (C, S), S chosen so
// the grid has ~kTargetBlocks blocks but every block still gets >= kMinElementsPerBlock elements
// (few partials, and each thread keeps a useful amount of work). Blocks write per-slice partials
// to a scratch buffer; the finalize kernel merges the S partials of a channel in a fixed order, so
// the result is deterministic (no atomics). Within a slice consecutive threads read consecutive
// addresses of an (n, c) plane: fully coalesced.
//
// Channels-last (NHWC). The tensor is (R, C) rows, R = N*H*W: exactly the (N*H*W, C, 1) case of
// the NCHW kernels, but their reduction would then have consecutive threads read with stride C
// (uncoalesced) and their slices would be single elements. NHWC has its own reduction kernels
// (bn_*_partial_nhwc_kernel): a block covers CB = min(C, 32) consecutive channels and
// kThreads / CB rows at a time, so consecutive threads read consecutive channels of a row (and,
// when C < 32, the next row's: one contiguous stretch per warp); grid (ceil(C / CB), S), the R rows
// of a channel split into S contiguous slices as above. Inside a block the kThreads / CB row groups
// of a channel are merged by a fixed binary tree in shared memory, then the same finalize kernels
// merge the S slices in order: deterministic, and the same float-per-thread / double-merge
// numerics as NCHW (only the order of the terms differs). The elementwise passes are the NCHW
// ones with the channel taken per element (element e of the flat tensor is channel e % C), 16-byte
// units whenever the element count and the pointers allow.
//
// Numerics. Forward statistics use Welford's update per thread in float (each thread sees a few
// dozen values, so its running mean is accurate to a few ulps and there is no E[x^2] - E[x]^2
// cancellation), then threads, warps, blocks and slices are merged with Chan et al.'s pairwise
// formula in double: the merges are where large counts meet, and there double makes the
// combination error negligible against float's 6e-8. The backward sums (sum dy, sum dy*xhat) are
// plain float per thread and double from the warp level on, for the same reason. Running
// statistics are updated by the finalize kernel on the device (no host round trip).
//
// cuDNN path (compiled, never run on a GPU so far): cudnnBatchNormalizationForwardTraining /
// ForwardInference / Backward in CUDNN_BATCHNORM_SPATIAL mode, with CUDNN_TENSOR_NHWC descriptors
// for channels-last tensors (these calls take any packed 4-D layout; cuDNN's faster NHWC kernels
// sit behind the *Ex calls in CUDNN_BATCHNORM_SPATIAL_PERSISTENT mode, which need a workspace and
// a reserve space and are not used here). cuDNN's running variance is the unbiased one and its
// saved inverse variance is 1/sqrt(var + eps), exactly as ours, so the two paths are
// interchangeable; backward passes alphaParamDiff = betaParamDiff = 1 so dgamma/dbeta accumulate as
// the layer contract says. cuDNN has no eval-mode backward (the statistics are constants there), so
// that one is always ours.
//
// Indices inside the kernels are 32-bit (cheap division for the channel of an element); the
// launchers check that a tensor has fewer than 2^31 elements (8 GiB of float32).
#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "core/cuda_check.h"
#include "kernels/batchnorm.h"
#include "kernels/vec16.cuh"

namespace minidl::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kTargetBlocks = 1024;        // ~8 blocks of 256 threads per SM on an H100
constexpr int64_t kMinElementsPerBlock = 4096;  // 16 elements per thread at least
// Elementwise passes are grid-stride loops over at most this many blocks (~16 resident blocks of
// 256 threads per SM on 132 SMs); more would only add block scheduling.
constexpr int kMaxElementwiseBlocks = 132 * 16;

// ---------------------------------------------------------------- loads and stores
// A Unit<W> (kernels/vec16.cuh) is W consecutive elements of one (n, c) plane, as float: W =
// kVec<T> (one 16-byte transaction: 4 float, 8 bfloat16/float16) when HW % W == 0 and every
// pointer is 16-byte aligned, else W = 1. load_unit/store_unit convert 16-bit values.

// Calls f(offset) for the units [u0, u1) of channel c, where unit u of a channel is unit
// u % L of image u / L (L = units per plane) and offset counts units from the tensor's start.
template <typename F>
__device__ __forceinline__ void for_each_unit(unsigned u0, unsigned u1, unsigned c, unsigned C,
                                              unsigned L, F&& f) {
  for (unsigned u = u0 + threadIdx.x; u < u1; u += blockDim.x) {
    const unsigned n = u / L;
    f((n * C + c) * L + (u - n * L));
  }
}

// Calls f(j, c) for the W elements j of unit i (an index over the whole tensor) with their channel
// c. NCHW: a unit lies inside one plane, so one channel, (i / L) % C. NHWC: element e = i*W + j
// is channel e % C, so consecutive elements take consecutive channels, wrapping to 0 after C - 1.
template <int W, bool kNhwc, typename F>
__device__ __forceinline__ void for_each_element(unsigned i, unsigned C, unsigned L, F&& f) {
  if constexpr (kNhwc) {
    unsigned c = (i * W) % C;
#pragma unroll
    for (int j = 0; j < W; ++j) {
      f(j, c);
      if (++c == C) c = 0;
    }
  } else {
    const unsigned c = (i / L) % C;
#pragma unroll
    for (int j = 0; j < W; ++j) f(j, c);
  }
}

// ---------------------------------------------------------------- block reductions
// (count, mean, M2) of a set of values; merge() is Chan, Golub & LeVeque's pairwise update.
struct Moments {
  double n, mean, m2;
};

__device__ __forceinline__ Moments merge(const Moments& a, const Moments& b) {
  const double n = a.n + b.n;
  if (n == 0) return a;
  const double delta = b.mean - a.mean, wb = b.n / n;
  return {n, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.n * wb};
}

__device__ __forceinline__ Moments warp_merge(Moments m) {
  for (int o = 16; o > 0; o >>= 1) {
    const Moments t{__shfl_down_sync(0xffffffffu, m.n, o), __shfl_down_sync(0xffffffffu, m.mean, o),
                    __shfl_down_sync(0xffffffffu, m.m2, o)};
    m = merge(m, t);
  }
  return m;
}

// The merge of all threads' moments, valid in thread 0. blockDim.x == kThreads.
__device__ Moments block_merge(Moments m) {
  __shared__ Moments part[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  m = warp_merge(m);
  if (lane == 0) part[warp] = m;
  __syncthreads();
  if (warp == 0) m = warp_merge(lane < kWarps ? part[lane] : Moments{0, 0, 0});
  return m;
}

// Sum of two values over the block, valid in thread 0. blockDim.x == kThreads.
__device__ double2 block_sum2(double a, double b) {
  __shared__ double2 part[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_down_sync(0xffffffffu, a, o);
    b += __shfl_down_sync(0xffffffffu, b, o);
  }
  if (lane == 0) part[warp] = make_double2(a, b);
  __syncthreads();
  double2 s = make_double2(0, 0);
  if (warp == 0) {
    if (lane < kWarps) s = part[lane];
    for (int o = 16; o > 0; o >>= 1) {
      s.x += __shfl_down_sync(0xffffffffu, s.x, o);
      s.y += __shfl_down_sync(0xffffffffu, s.y, o);
    }
  }
  return s;
}

// NHWC blocks: thread t holds channel t % CB of row group t / CB (of kThreads / CB groups). After
// this, thread t < CB holds the merge of its channel's groups, combined by a fixed binary tree
// (group g takes g + h for h = 1, 2, 4, ...; deterministic). `part` is kThreads shared values;
// every thread of the block must call it.
template <typename V, typename Merge>
__device__ V merge_row_groups(V* part, V v, unsigned CB, Merge merge_two) {
  const unsigned groups = blockDim.x / CB, g = threadIdx.x / CB;
  part[threadIdx.x] = v;
  __syncthreads();
  for (unsigned h = 1; h < groups; h *= 2) {
    if (g % (2 * h) == 0 && g + h < groups)
      part[threadIdx.x] = merge_two(part[threadIdx.x], part[threadIdx.x + h * CB]);
    __syncthreads();
  }
  return part[threadIdx.x];
}

// ---------------------------------------------------------------- forward
// grid (C, S): block (c, s) reduces units [s*per, min((s+1)*per, N*L)) of channel c into
// partial[c*S + s].
template <typename T, int W>
__global__ void bn_stats_partial_kernel(Moments* __restrict__ partial, const T* __restrict__ x,
                                        unsigned C, unsigned L, unsigned units, unsigned per) {
  const unsigned c = blockIdx.x, s = blockIdx.y;
  const unsigned u0 = s * per, u1 = min(u0 + per, units);
  float n = 0, mean = 0, m2 = 0;  // Welford in float: per-thread counts are small
  for_each_unit(u0, u1, c, C, L, [&](unsigned off) {
    const Unit<W> u = load_unit<T, W>(x, off);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      n += 1.f;
      const float d = u.v[k] - mean;
      mean += d / n;
      m2 += d * (u.v[k] - mean);
    }
  });
  const Moments m = block_merge(Moments{n, mean, m2});
  if (threadIdx.x == 0) partial[c * gridDim.y + s] = m;
}

// NHWC: grid (ceil(C / CB), S); block (b, s) reduces rows [s*per, min((s+1)*per, R)) of channels
// [b*CB, b*CB + CB) into partial[c*S + s] (the layout bn_stats_finalize_kernel reads).
template <typename T>
__global__ void bn_stats_partial_nhwc_kernel(Moments* __restrict__ partial, const T* __restrict__ x,
                                             unsigned C, unsigned CB, unsigned rows, unsigned per) {
  __shared__ Moments part[kThreads];
  const unsigned groups = blockDim.x / CB, g = threadIdx.x / CB;
  const unsigned c = blockIdx.x * CB + threadIdx.x % CB;
  const unsigned r0 = blockIdx.y * per, r1 = min(r0 + per, rows);
  float n = 0, mean = 0, m2 = 0;  // Welford in float, as the NCHW kernel
  if (g < groups && c < C)
    for (unsigned r = r0 + g; r < r1; r += groups) {
      const float v = ldg_f(x + r * C + c);
      n += 1.f;
      const float d = v - mean;
      mean += d / n;
      m2 += d * (v - mean);
    }
  const Moments m =
      merge_row_groups(part, Moments{n, mean, m2}, CB,
                       [](const Moments& a, const Moments& b) { return merge(a, b); });
  if (threadIdx.x < CB && c < C) partial[c * gridDim.y + blockIdx.y] = m;
}

// One thread per channel: merge the S partials in order, save mean/invstd, update running stats.
__global__ void bn_stats_finalize_kernel(float* __restrict__ save_mean,
                                         float* __restrict__ save_invstd,
                                         float* __restrict__ running_mean,
                                         float* __restrict__ running_var,
                                         const Moments* __restrict__ partial, int C, int S,
                                         double momentum, double eps) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  Moments m{0, 0, 0};
  for (int s = 0; s < S; ++s) m = merge(m, partial[c * S + s]);
  const double var = m.m2 / m.n;  // biased: normalises the batch
  save_mean[c] = static_cast<float>(m.mean);
  save_invstd[c] = static_cast<float>(1.0 / sqrt(var + eps));
  // Unbiased (M / (M - 1)) for the population estimate, as torch; M > 1 is checked by the caller.
  running_mean[c] = static_cast<float>((1 - momentum) * running_mean[c] + momentum * m.mean);
  running_var[c] =
      static_cast<float>((1 - momentum) * running_var[c] + momentum * m.m2 / (m.n - 1));
}

// y = (x - mean_c) * (invstd_c * gamma_c) + beta_c over all units (grid-stride). The subtraction
// comes first: x - mean is exact for x near the mean, where folding the mean into a bias would
// round it at |mean|'s scale.
template <typename T, int W, bool kNhwc>
__global__ void bn_normalize_kernel(T* __restrict__ y, const T* __restrict__ x,
                                    const float* __restrict__ mean,
                                    const float* __restrict__ invstd,
                                    const float* __restrict__ gamma, const float* __restrict__ beta,
                                    unsigned C, unsigned L, unsigned units) {
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < units; i += gridDim.x * blockDim.x) {
    Unit<W> u = load_unit<T, W>(x, i);
    for_each_element<W, kNhwc>(i, C, L, [&](int j, unsigned c) {
      const float m = __ldg(mean + c), k = __ldg(invstd + c) * __ldg(gamma + c),
                  b = __ldg(beta + c);
      u.v[j] = (u.v[j] - m) * k + b;
    });
    store_unit<T, W>(y, i, u);
  }
}

// Eval: the same with the running statistics (the per-channel 1/sqrt is recomputed per unit; it
// is hidden behind the memory traffic).
template <typename T, int W, bool kNhwc>
__global__ void bn_eval_kernel(T* __restrict__ y, const T* __restrict__ x,
                               const float* __restrict__ gamma, const float* __restrict__ beta,
                               const float* __restrict__ running_mean,
                               const float* __restrict__ running_var, float eps, unsigned C,
                               unsigned L, unsigned units) {
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < units; i += gridDim.x * blockDim.x) {
    Unit<W> u = load_unit<T, W>(x, i);
    for_each_element<W, kNhwc>(i, C, L, [&](int j, unsigned c) {
      const float m = __ldg(running_mean + c), b = __ldg(beta + c);
      const float k = __ldg(gamma + c) / sqrtf(__ldg(running_var + c) + eps);
      u.v[j] = (u.v[j] - m) * k + b;
    });
    store_unit<T, W>(y, i, u);
  }
}

// ---------------------------------------------------------------- backward
// grid (C, S) as the stats pass: partial[c*S + s] = (sum dy, sum dy * xhat) over the slice.
// kEval: `stat` is (running_mean, running_var) and the kernel also writes dx = dy gamma invstd,
// which needs no reduction; train: `stat` is (save_mean, save_invstd) and dx waits for the sums.
template <typename T, int W, bool kEval>
__global__ void bn_backward_partial_kernel(double2* __restrict__ partial, T* __restrict__ dx,
                                           const T* __restrict__ dy, const T* __restrict__ x,
                                           const float* __restrict__ mean,
                                           const float* __restrict__ invstd_or_var,
                                           const float* __restrict__ gamma, float eps, unsigned C,
                                           unsigned L, unsigned units, unsigned per) {
  const unsigned c = blockIdx.x, s = blockIdx.y;
  const unsigned u0 = s * per, u1 = min(u0 + per, units);
  const float m = mean[c];
  const float invstd = kEval ? 1.f / sqrtf(invstd_or_var[c] + eps) : invstd_or_var[c];
  const float k = gamma[c] * invstd;
  float sum_dy = 0, sum_dy_xhat = 0;
  for_each_unit(u0, u1, c, C, L, [&](unsigned off) {
    const Unit<W> g = load_unit<T, W>(dy, off), v = load_unit<T, W>(x, off);
#pragma unroll
    for (int j = 0; j < W; ++j) {
      sum_dy += g.v[j];
      sum_dy_xhat += g.v[j] * (v.v[j] - m) * invstd;
    }
    if constexpr (kEval) {
      Unit<W> d;
#pragma unroll
      for (int j = 0; j < W; ++j) d.v[j] = g.v[j] * k;
      store_unit<T, W>(dx, off, d);
    }
  });
  const double2 t = block_sum2(sum_dy, sum_dy_xhat);
  if (threadIdx.x == 0) partial[c * gridDim.y + s] = t;
}

// NHWC: grid (ceil(C / CB), S) as bn_stats_partial_nhwc_kernel, the sums and (kEval) dx as
// bn_backward_partial_kernel.
template <typename T, bool kEval>
__global__ void bn_backward_partial_nhwc_kernel(double2* __restrict__ partial, T* __restrict__ dx,
                                                const T* __restrict__ dy, const T* __restrict__ x,
                                                const float* __restrict__ mean,
                                                const float* __restrict__ invstd_or_var,
                                                const float* __restrict__ gamma, float eps,
                                                unsigned C, unsigned CB, unsigned rows,
                                                unsigned per) {
  __shared__ double2 part[kThreads];
  const unsigned groups = blockDim.x / CB, g = threadIdx.x / CB;
  const unsigned c = blockIdx.x * CB + threadIdx.x % CB;
  const unsigned r0 = blockIdx.y * per, r1 = min(r0 + per, rows);
  float sum_dy = 0, sum_dy_xhat = 0;
  if (g < groups && c < C) {
    const float m = mean[c];
    const float invstd = kEval ? 1.f / sqrtf(invstd_or_var[c] + eps) : invstd_or_var[c];
    const float k = gamma[c] * invstd;
    for (unsigned r = r0 + g; r < r1; r += groups) {
      const unsigned off = r * C + c;
      const float gv = ldg_f(dy + off), xv = ldg_f(x + off);
      sum_dy += gv;
      sum_dy_xhat += gv * (xv - m) * invstd;
      if constexpr (kEval) dx[off] = narrow<T>(gv * k);
    }
  }
  const double2 t =
      merge_row_groups(part, make_double2(sum_dy, sum_dy_xhat), CB,
                       [](double2 a, double2 b) { return make_double2(a.x + b.x, a.y + b.y); });
  if (threadIdx.x < CB && c < C) partial[c * gridDim.y + blockIdx.y] = t;
}

// One thread per channel: dbeta += sum dy, dgamma += sum dy xhat; for train mode also the means
// (sum dy / M, sum dy xhat / M) that the dx pass needs.
__global__ void bn_backward_finalize_kernel(float* __restrict__ dgamma, float* __restrict__ dbeta,
                                            float2* __restrict__ means,
                                            const double2* __restrict__ partial, int C, int S,
                                            double M) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double sum_dy = 0, sum_dy_xhat = 0;
  for (int s = 0; s < S; ++s) {
    sum_dy += partial[c * S + s].x;
    sum_dy_xhat += partial[c * S + s].y;
  }
  dbeta[c] += static_cast<float>(sum_dy);
  dgamma[c] += static_cast<float>(sum_dy_xhat);
  if (means) means[c] = make_float2(static_cast<float>(sum_dy / M), static_cast<float>(sum_dy_xhat / M));
}

// dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)), grid-stride over all units.
template <typename T, int W, bool kNhwc>
__global__ void bn_backward_dx_kernel(T* __restrict__ dx, const T* __restrict__ dy,
                                      const T* __restrict__ x, const float* __restrict__ mean,
                                      const float* __restrict__ invstd,
                                      const float* __restrict__ gamma,
                                      const float2* __restrict__ means, unsigned C, unsigned L,
                                      unsigned units) {
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < units; i += gridDim.x * blockDim.x) {
    const Unit<W> g = load_unit<T, W>(dy, i), v = load_unit<T, W>(x, i);
    Unit<W> d;
    for_each_element<W, kNhwc>(i, C, L, [&](int j, unsigned c) {
      const float m = __ldg(mean + c), is = __ldg(invstd + c), k = __ldg(gamma + c) * is;
      const float2 md = means[c];
      d.v[j] = k * (g.v[j] - md.x - (v.v[j] - m) * is * md.y);
    });
    store_unit<T, W>(dx, i, d);
  }
}

__global__ void count_kernel(int32_t* count) { *count += 1; }

// ---------------------------------------------------------------- launch helpers

// The unit width and the counts every launcher needs.
struct Plan {
  bool nhwc;
  int W;           // elements per unit
  unsigned L;      // units per (n, c) plane (NCHW; unused in NHWC)
  unsigned units;  // units in the whole tensor
  // reductions: NCHW: units per channel = N * L; NHWC: rows R = N * HW
  unsigned per_channel;
  unsigned CB;  // NHWC: channels per block (min(C, 32)); NCHW: 1 (grid.x = C)
  // slices per channel and units (NCHW) or rows (NHWC) per slice
  unsigned S, per;
  unsigned channel_blocks;  // grid.x of the reductions: C (NCHW), ceil(C / CB) (NHWC)
};

// vec: the elements of a 16-byte vector of the storage type (kVec<T>).
Plan make_plan(int64_t N, int64_t C, int64_t HW, Layout layout, int vec,
               std::initializer_list<const void*> ptrs, const char* who) {
  MINIDL_CHECK(N * C * HW < (int64_t(1) << 31), who, ": tensors of 2^31 or more elements are not "
               "supported by the CUDA kernels, got (N, C, HW) = (", N, ", ", C, ", ", HW, ")");
  Plan p;
  p.nhwc = layout == Layout::NHWC;
  if (p.nhwc) {
    // The elementwise passes see a flat tensor whose element e is channel e % C: 16-byte units
    // need only the element count and the pointers to allow them.
    p.W = (N * C * HW) % vec == 0 && aligned16(ptrs) ? vec : 1;
    p.L = 0;
    p.per_channel = static_cast<unsigned>(N * HW);
    p.CB = static_cast<unsigned>(std::min<int64_t>(C, 32));
  } else {
    p.W = HW % vec == 0 && aligned16(ptrs) ? vec : 1;
    p.L = static_cast<unsigned>(HW / p.W);
    p.per_channel = static_cast<unsigned>(N * p.L);
    p.CB = 1;
  }
  p.units = static_cast<unsigned>(N * C * HW / p.W);
  p.S = p.per = p.channel_blocks = 0;
  if (p.units == 0) return p;  // empty batch: the launchers return before any launch
  p.channel_blocks = static_cast<unsigned>((C + p.CB - 1) / p.CB);
  // Slices: ~kTargetBlocks blocks in all, each with >= kMinElementsPerBlock elements.
  const int64_t want = (kTargetBlocks + p.channel_blocks - 1) / p.channel_blocks;
  const int64_t by_size = std::max<int64_t>(1, N * HW * p.CB / kMinElementsPerBlock);
  int64_t S = std::clamp<int64_t>(std::min(want, by_size), 1, 65535);
  S = std::min<int64_t>(S, p.per_channel);
  p.per = static_cast<unsigned>((p.per_channel + S - 1) / S);
  p.S = (p.per_channel + p.per - 1) / p.per;  // no empty slice
  return p;
}

unsigned elementwise_grid(const CudaContext& ctx, unsigned units) {
  return grid_stride_blocks(ctx, units, kThreads, kMaxElementwiseBlocks);
}

// f.template operator()<W, kNhwc>() for the plan's unit width (V or 1) and layout: the launchers'
// one switch over the elementwise kernels' four instantiations.
template <int V, typename F>
void with_unit(const Plan& plan, F&& f) {
  if (plan.nhwc) {
    if (plan.W > 1)
      f.template operator()<V, true>();
    else
      f.template operator()<1, true>();
  } else {
    if (plan.W > 1)
      f.template operator()<V, false>();
    else
      f.template operator()<1, false>();
  }
}

// RAII cuDNN descriptors: x as (N, C, HW, 1) in its layout (spatial BN reduces over N, H, W, so
// H*W may be one axis; NHWC with W = 1 has strides (HW*C, 1, C, C): the channels-last memory) and
// the derived (1, C, 1, 1) parameter descriptor.
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc() { CUDNN_CHECK(cudnnCreateTensorDescriptor(&d)); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};

struct CudnnBn {
  TensorDesc x, param;
  // x of `type` (float, bfloat16 or float16); cuDNN derives a float parameter descriptor for all.
  CudnnBn(int64_t N, int64_t C, int64_t HW, Layout layout, cudnnDataType_t type) {
    const cudnnTensorFormat_t format =
        layout == Layout::NHWC ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(x.d, format, type, static_cast<int>(N),
                                           static_cast<int>(C), static_cast<int>(HW), 1));
    CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(param.d, x.d, CUDNN_BATCHNORM_SPATIAL));
  }
};

static_assert(kCudnnBnMinEpsilon == CUDNN_BN_MIN_EPSILON,
              "batchnorm.h's copy of cuDNN's smallest epsilon is out of date");

}  // namespace

// ---------------------------------------------------------------- launchers

template <typename T>
void batchnorm_forward_train(T* y, float* save_mean, float* save_invstd, float* running_mean,
                             float* running_var, const T* x, const float* gamma, const float* beta,
                             int64_t N, int64_t C, int64_t HW, Layout layout, BatchNormParams p,
                             CudaContext& ctx) {
  const Plan plan = make_plan(N, C, HW, layout, kVec<T>, {x, y}, "batchnorm_forward_train");
  if (plan.units == 0) return;
  constexpr int V = kVec<T>;  // elements per 16-byte unit
  Tensor partial = Tensor::empty(Shape{C * plan.S * 3}, DType::F64, Device::cuda(ctx.device));
  Moments* part = static_cast<Moments*>(partial.raw_data());
  const dim3 grid(plan.channel_blocks, plan.S);
  if (plan.nhwc)
    bn_stats_partial_nhwc_kernel<T>
        <<<grid, kThreads, 0, ctx.stream>>>(part, x, C, plan.CB, plan.per_channel, plan.per);
  else if (plan.W > 1)
    bn_stats_partial_kernel<T, V>
        <<<grid, kThreads, 0, ctx.stream>>>(part, x, C, plan.L, plan.per_channel, plan.per);
  else
    bn_stats_partial_kernel<T, 1>
        <<<grid, kThreads, 0, ctx.stream>>>(part, x, C, plan.L, plan.per_channel, plan.per);
  MINIDL_CHECK_LAUNCH(ctx.stream);
  bn_stats_finalize_kernel<<<grid_for(C, 128), 128, 0, ctx.stream>>>(
      save_mean, save_invstd, running_mean, running_var, part, static_cast<int>(C),
      static_cast<int>(plan.S), p.momentum, p.eps);
  MINIDL_CHECK_LAUNCH(ctx.stream);
  const unsigned blocks = elementwise_grid(ctx, plan.units);
  with_unit<V>(plan, [&]<int W, bool kNhwc>() {
    bn_normalize_kernel<T, W, kNhwc><<<blocks, kThreads, 0, ctx.stream>>>(
        y, x, save_mean, save_invstd, gamma, beta, C, plan.L, plan.units);
  });
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename T>
void batchnorm_forward_eval(T* y, const T* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, int64_t N,
                            int64_t C, int64_t HW, Layout layout, BatchNormParams p,
                            CudaContext& ctx) {
  const Plan plan = make_plan(N, C, HW, layout, kVec<T>, {x, y}, "batchnorm_forward_eval");
  if (plan.units == 0) return;
  const unsigned blocks = elementwise_grid(ctx, plan.units);
  const float eps = static_cast<float>(p.eps);
  with_unit<kVec<T>>(plan, [&]<int W, bool kNhwc>() {
    bn_eval_kernel<T, W, kNhwc><<<blocks, kThreads, 0, ctx.stream>>>(
        y, x, gamma, beta, running_mean, running_var, eps, C, plan.L, plan.units);
  });
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

namespace {

// The reduction of both backward modes into partial (C x S double2): (sum dy, sum dy xhat) per
// slice; kEval also writes dx (bn_backward_partial_kernel).
template <typename T, bool kEval>
void launch_backward_partial(const Plan& plan, double2* part, T* dx, const T* dy, const T* x,
                             const float* mean, const float* invstd_or_var, const float* gamma,
                             float eps, int64_t C, CudaContext& ctx) {
  constexpr int V = kVec<T>;
  const dim3 grid(plan.channel_blocks, plan.S);
  if (plan.nhwc)
    bn_backward_partial_nhwc_kernel<T, kEval><<<grid, kThreads, 0, ctx.stream>>>(
        part, dx, dy, x, mean, invstd_or_var, gamma, eps, C, plan.CB, plan.per_channel, plan.per);
  else if (plan.W > 1)
    bn_backward_partial_kernel<T, V, kEval><<<grid, kThreads, 0, ctx.stream>>>(
        part, dx, dy, x, mean, invstd_or_var, gamma, eps, C, plan.L, plan.per_channel, plan.per);
  else
    bn_backward_partial_kernel<T, 1, kEval><<<grid, kThreads, 0, ctx.stream>>>(
        part, dx, dy, x, mean, invstd_or_var, gamma, eps, C, plan.L, plan.per_channel, plan.per);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

}  // namespace

template <typename T>
void batchnorm_backward_train(T* dx, float* dgamma, float* dbeta, const T* dy, const T* x,
                              const float* gamma, const float* save_mean, const float* save_invstd,
                              int64_t N, int64_t C, int64_t HW, Layout layout, CudaContext& ctx) {
  const Plan plan = make_plan(N, C, HW, layout, kVec<T>, {dx, dy, x}, "batchnorm_backward_train");
  if (plan.units == 0) return;
  Tensor partial = Tensor::empty(Shape{C * plan.S * 2}, DType::F64, Device::cuda(ctx.device));
  Tensor means = Tensor::empty(Shape{C * 2}, DType::F32, Device::cuda(ctx.device));
  double2* part = static_cast<double2*>(partial.raw_data());
  float2* mdy = static_cast<float2*>(means.raw_data());
  launch_backward_partial<T, false>(plan, part, nullptr, dy, x, save_mean, save_invstd, gamma, 0.f,
                                    C, ctx);
  bn_backward_finalize_kernel<<<grid_for(C, 128), 128, 0, ctx.stream>>>(
      dgamma, dbeta, mdy, part, static_cast<int>(C), static_cast<int>(plan.S),
      static_cast<double>(N * HW));
  MINIDL_CHECK_LAUNCH(ctx.stream);
  const unsigned blocks = elementwise_grid(ctx, plan.units);
  with_unit<kVec<T>>(plan, [&]<int W, bool kNhwc>() {
    bn_backward_dx_kernel<T, W, kNhwc><<<blocks, kThreads, 0, ctx.stream>>>(
        dx, dy, x, save_mean, save_invstd, gamma, mdy, C, plan.L, plan.units);
  });
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename T>
void batchnorm_backward_eval(T* dx, float* dgamma, float* dbeta, const T* dy, const T* x,
                             const float* gamma, const float* running_mean,
                             const float* running_var, int64_t N, int64_t C, int64_t HW,
                             Layout layout, BatchNormParams p, CudaContext& ctx) {
  const Plan plan = make_plan(N, C, HW, layout, kVec<T>, {dx, dy, x}, "batchnorm_backward_eval");
  if (plan.units == 0) return;
  Tensor partial = Tensor::empty(Shape{C * plan.S * 2}, DType::F64, Device::cuda(ctx.device));
  double2* part = static_cast<double2*>(partial.raw_data());
  launch_backward_partial<T, true>(plan, part, dx, dy, x, running_mean, running_var, gamma,
                                   static_cast<float>(p.eps), C, ctx);
  bn_backward_finalize_kernel<<<grid_for(C, 128), 128, 0, ctx.stream>>>(
      dgamma, dbeta, nullptr, part, static_cast<int>(C), static_cast<int>(plan.S),
      static_cast<double>(N * HW));
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

// ---------------------------------------------------------------- cuDNN (cuda-vendor)
// The same contract as the launchers above. Empty inputs return before cuDNN sees them (it rejects
// zero-sized descriptors). Never run on a GPU so far: compiled only.

template <typename T>
void batchnorm_forward_train_cudnn(T* y, float* save_mean, float* save_invstd, float* running_mean,
                                   float* running_var, const T* x, const float* gamma,
                                   const float* beta, int64_t N, int64_t C, int64_t HW,
                                   Layout layout, BatchNormParams p, CudaContext& ctx) {
  const Plan plan = make_plan(N, C, HW, layout, kVec<T>, {x, y}, "batchnorm_forward_train");
  if (plan.units == 0) return;
  CudnnBn d(N, C, HW, layout, cudnn_data_type<T>());
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
      ctx.cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.x.d, x, d.x.d, y, d.param.d, gamma, beta,
      p.momentum, running_mean, running_var, p.eps, save_mean, save_invstd));
}

template <typename T>
void batchnorm_forward_eval_cudnn(T* y, const T* x, const float* gamma, const float* beta,
                                  const float* running_mean, const float* running_var, int64_t N,
                                  int64_t C, int64_t HW, Layout layout, BatchNormParams p,
                                  CudaContext& ctx) {
  const Plan plan = make_plan(N, C, HW, layout, kVec<T>, {x, y}, "batchnorm_forward_eval");
  if (plan.units == 0) return;
  CudnnBn d(N, C, HW, layout, cudnn_data_type<T>());
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnBatchNormalizationForwardInference(ctx.cudnn, CUDNN_BATCHNORM_SPATIAL, &one,
                                                      &zero, d.x.d, x, d.x.d, y, d.param.d, gamma,
                                                      beta, running_mean, running_var, p.eps));
}

template <typename T>
void batchnorm_backward_train_cudnn(T* dx, float* dgamma, float* dbeta, const T* dy, const T* x,
                                    const float* gamma, const float* save_mean,
                                    const float* save_invstd, int64_t N, int64_t C, int64_t HW,
                                    Layout layout, BatchNormParams p, CudaContext& ctx) {
  const Plan plan = make_plan(N, C, HW, layout, kVec<T>, {dx, dy, x}, "batchnorm_backward_train");
  if (plan.units == 0) return;
  CudnnBn d(N, C, HW, layout, cudnn_data_type<T>());
  const float one = 1.f, zero = 0.f;
  // cuDNN reads epsilon only when savedMean/savedInvVariance are null; we always pass them.
  // alpha/beta for the parameter gradients are 1 and 1: dgamma and dbeta accumulate.
  CUDNN_CHECK(cudnnBatchNormalizationBackward(ctx.cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one,
                                              &one, d.x.d, x, d.x.d, dy, d.x.d, dx, d.param.d,
                                              gamma, dgamma, dbeta, p.eps, save_mean, save_invstd));
}

void batchnorm_count_batch(int32_t* count, CudaContext& ctx) {
  count_kernel<<<1, 1, 0, ctx.stream>>>(count);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

#define MINIDL_BATCHNORM_INSTANTIATE(T)                                                            \
  template void batchnorm_forward_train<T>(T*, float*, float*, float*, float*, const T*,           \
                                           const float*, const float*, int64_t, int64_t, int64_t,  \
                                           Layout, BatchNormParams, CudaContext&);                 \
  template void batchnorm_forward_eval<T>(T*, const T*, const float*, const float*, const float*,  \
                                          const float*, int64_t, int64_t, int64_t, Layout,         \
                                          BatchNormParams, CudaContext&);                          \
  template void batchnorm_backward_train<T>(T*, float*, float*, const T*, const T*, const float*,  \
                                            const float*, const float*, int64_t, int64_t, int64_t, \
                                            Layout, CudaContext&);                                 \
  template void batchnorm_backward_eval<T>(T*, float*, float*, const T*, const T*, const float*,   \
                                           const float*, const float*, int64_t, int64_t, int64_t,  \
                                           Layout, BatchNormParams, CudaContext&);                 \
  template void batchnorm_forward_train_cudnn<T>(T*, float*, float*, float*, float*, const T*,     \
                                                 const float*, const float*, int64_t, int64_t,     \
                                                 int64_t, Layout, BatchNormParams, CudaContext&);  \
  template void batchnorm_forward_eval_cudnn<T>(T*, const T*, const float*, const float*,          \
                                                const float*, const float*, int64_t, int64_t,      \
                                                int64_t, Layout, BatchNormParams, CudaContext&);   \
  template void batchnorm_backward_train_cudnn<T>(                                                 \
      T*, float*, float*, const T*, const T*, const float*, const float*, const float*, int64_t,   \
      int64_t, int64_t, Layout, BatchNormParams, CudaContext&);
MINIDL_BATCHNORM_INSTANTIATE(float)
MINIDL_BATCHNORM_INSTANTIATE(bf16)
MINIDL_BATCHNORM_INSTANTIATE(f16)
#undef MINIDL_BATCHNORM_INSTANTIATE

}  // namespace minidl::cuda

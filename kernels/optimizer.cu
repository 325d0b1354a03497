// CUDA optimizer updates over the model's flat parameter buffer (formulas in optimizer.h).
//
// One grid-stride kernel per optimizer; each thread updates elements independently, so the only
// goal is to stream memory at full bandwidth (12-28 bytes per element, see optimizer.h). When every
// pointer is 16-byte aligned (always true for the optimizer's own buffers, which come from the
// caching allocator) a thread handles four consecutive floats with 128-bit loads and stores, which
// halves the number of memory instructions in flight for the same bytes; the last n % 4 elements,
// or all of them for unaligned pointers, take the scalar loop of the same kernel. Step-dependent
// scalars (bias corrections, the decayed Adagrad rate) are computed on the host in double.
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "core/cuda_check.h"
#include "kernels/optimizer.h"

namespace minidl::cuda {

namespace {

constexpr int kThreads = 256;

// Four consecutive floats, loaded and stored as one 128-bit transaction.
struct alignas(16) Float4 {
  float v[4];
};
__device__ __forceinline__ Float4 load4(const float* p, int64_t i) {
  return reinterpret_cast<const Float4*>(p)[i];
}
__device__ __forceinline__ void store4(float* p, int64_t i, const Float4& x) {
  reinterpret_cast<Float4*>(p)[i] = x;
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Number of 4-float groups the vector loop handles (0 when a pointer is not 16-byte aligned).
int64_t vector_groups(int64_t n, std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (!aligned16(p)) return 0;
  return n / 4;
}

unsigned blocks_for(const CudaContext& ctx, int64_t n, int64_t groups) {
  // Enough threads for one pass over the larger of the two loops.
  return grid_stride_blocks(ctx, groups > 0 ? groups : n, kThreads);
}

// ------------------------------------------------------------------ SGD

struct SgdArgs {
  float lr, wd, momentum, one_minus_dampening;
  bool use_momentum, first_step, nesterov;
};

__device__ __forceinline__ void sgd_element(float& p, float grad, float& buf, const SgdArgs& a) {
  float g = grad + a.wd * p;
  if (a.use_momentum) {
    buf = a.first_step ? g : a.momentum * buf + a.one_minus_dampening * g;
    g = a.nesterov ? g + a.momentum * buf : buf;
  }
  p -= a.lr * g;
}

__global__ void sgd_kernel(float* __restrict__ p, const float* __restrict__ g,
                           float* __restrict__ buf, int64_t n, int64_t groups, SgdArgs a) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int64_t i = tid; i < groups; i += stride) {
    Float4 pv = load4(p, i), bv{};
    const Float4 gv = load4(g, i);
    if (a.use_momentum) bv = load4(buf, i);
#pragma unroll
    for (int k = 0; k < 4; ++k) sgd_element(pv.v[k], gv.v[k], bv.v[k], a);
    store4(p, i, pv);
    if (a.use_momentum) store4(buf, i, bv);
  }
  for (int64_t i = groups * 4 + tid; i < n; i += stride) {
    float b = a.use_momentum ? buf[i] : 0.f;
    sgd_element(p[i], g[i], b, a);
    if (a.use_momentum) buf[i] = b;
  }
}

// ------------------------------------------------------------------ Adam / AdamW

struct AdamArgs {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, wd;
  float decay;      // 1 - lr wd (AdamW)
  float step_size;  // lr / (1 - beta1^t)
  float bc2_sqrt;   // sqrt(1 - beta2^t)
  bool decoupled;
};

__device__ __forceinline__ void adam_element(float& p, float grad, float& m, float& v,
                                             const AdamArgs& a) {
  float g = grad;
  if (a.decoupled)
    p *= a.decay;
  else
    g += a.wd * p;
  m = a.beta1 * m + a.one_minus_beta1 * g;
  v = a.beta2 * v + a.one_minus_beta2 * g * g;
  p -= a.step_size * m / (sqrtf(v) / a.bc2_sqrt + a.eps);
}

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ g,
                            float* __restrict__ m, float* __restrict__ v, int64_t n, int64_t groups,
                            AdamArgs a) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int64_t i = tid; i < groups; i += stride) {
    Float4 pv = load4(p, i), mv = load4(m, i), vv = load4(v, i);
    const Float4 gv = load4(g, i);
#pragma unroll
    for (int k = 0; k < 4; ++k) adam_element(pv.v[k], gv.v[k], mv.v[k], vv.v[k], a);
    store4(p, i, pv);
    store4(m, i, mv);
    store4(v, i, vv);
  }
  for (int64_t i = groups * 4 + tid; i < n; i += stride) adam_element(p[i], g[i], m[i], v[i], a);
}

// ------------------------------------------------------------------ Adagrad

struct AdagradArgs {
  float clr;  // lr / (1 + (t - 1) lr_decay)
  float wd, eps;
};

__device__ __forceinline__ void adagrad_element(float& p, float grad, float& sum,
                                                const AdagradArgs& a) {
  const float g = grad + a.wd * p;
  sum += g * g;
  p -= a.clr * g / (sqrtf(sum) + a.eps);
}

__global__ void adagrad_kernel(float* __restrict__ p, const float* __restrict__ g,
                               float* __restrict__ sum, int64_t n, int64_t groups, AdagradArgs a) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int64_t i = tid; i < groups; i += stride) {
    Float4 pv = load4(p, i), sv = load4(sum, i);
    const Float4 gv = load4(g, i);
#pragma unroll
    for (int k = 0; k < 4; ++k) adagrad_element(pv.v[k], gv.v[k], sv.v[k], a);
    store4(p, i, pv);
    store4(sum, i, sv);
  }
  for (int64_t i = groups * 4 + tid; i < n; i += stride) adagrad_element(p[i], g[i], sum[i], a);
}

}  // namespace

void sgd_update(float* param, const float* grad, float* buf, int64_t n, const SgdParams& p,
                int64_t step, CudaContext& ctx) {
  if (n == 0) return;
  const SgdArgs a{float(p.lr),       float(p.weight_decay), float(p.momentum),
                  float(1.0 - p.dampening), p.momentum != 0.0, step == 1, p.nesterov};
  const int64_t groups = vector_groups(n, {param, grad, buf});
  sgd_kernel<<<blocks_for(ctx, n, groups), kThreads, 0, ctx.stream>>>(param, grad, buf, n, groups,
                                                                      a);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

void adam_update(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamParams& p, int64_t step, CudaContext& ctx) {
  if (n == 0) return;
  const double t = static_cast<double>(step);
  const AdamArgs a{float(p.beta1),
                   float(p.beta2),
                   float(1.0 - p.beta1),
                   float(1.0 - p.beta2),
                   float(p.eps),
                   float(p.weight_decay),
                   float(1.0 - p.lr * p.weight_decay),
                   float(p.lr / (1.0 - std::pow(p.beta1, t))),
                   float(std::sqrt(1.0 - std::pow(p.beta2, t))),
                   p.decoupled};
  const int64_t groups = vector_groups(n, {param, grad, m, v});
  adam_kernel<<<blocks_for(ctx, n, groups), kThreads, 0, ctx.stream>>>(param, grad, m, v, n,
                                                                       groups, a);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

void adagrad_update(float* param, const float* grad, float* sum, int64_t n, const AdagradParams& p,
                    int64_t step, CudaContext& ctx) {
  if (n == 0) return;
  const AdagradArgs a{float(p.lr / (1.0 + static_cast<double>(step - 1) * p.lr_decay)),
                      float(p.weight_decay), float(p.eps)};
  const int64_t groups = vector_groups(n, {param, grad, sum});
  adagrad_kernel<<<blocks_for(ctx, n, groups), kThreads, 0, ctx.stream>>>(param, grad, sum, n,
                                                                          groups, a);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

}  // namespace minidl::cuda

// CUDA pooling (formulas and semantics in pooling.h).
//
// cuda-handwritten. Forward: one thread per output element (grid-stride), which reads its k x k
// window (neighbouring threads read neighbouring windows, so loads are largely coalesced and the
// overlap of windows is served from L1/L2). Backward is a GATHER, one thread per input pixel: it
// visits the few outputs whose windows cover the pixel and sums their contributions. A scatter
// (one thread per output adding into dx) would race wherever windows overlap (stride < kernel, as
// AlexNet's 3x3 stride-2 max pools) and need atomics, whose float additions land in a run-dependent
// order; the gather writes each dx element once, in a fixed order, so dx is deterministic and
// needs no zeroing pass. Max backward compares the stored argmax with the pixel's flat index, so
// ties route dy to the first maximum exactly as the CPU reference does.
//
// cuda-vendor (compiled, never run on a GPU so far): cudnnPoolingForward/Backward with
// CUDNN_POOLING_MAX_DETERMINISTIC (NaN propagated,
// as the CPU reference and torch) and CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING. Decision for
// max pooling: the cuDNN forward does NOT fill argmax (cuDNN has no such output); the cuDNN
// backward recomputes the winners from x and y instead, so forward and backward must run on the
// same backend (select_maxpool2d_backend has no condition, so they do). On ties cuDNN chooses its
// own winner. Average backward always uses our gather kernel: cudnnPoolingBackward requires x and
// y, which avgpool2d_backward does not take (average pooling's gradient does not depend on them).
//
// Global average pooling (ours on every backend): forward is one warp per (n, c) plane, the
// lanes striding over the plane (coalesced) and a shuffle reduction; backward dx = dy / HW is a
// flat elementwise kernel, one thread per element of dx.
//
// Channels-last (NHWC). The window kernels are the same kernels with the element index split the
// other way (locate(): channel fastest), so consecutive threads take consecutive channels of one
// pixel and every load of a window position is coalesced across the warp; a plane's pixels are C
// elements apart. The arithmetic and its order per output are unchanged, so NHWC results equal
// NCHW ones bit for bit, and argmax keeps its meaning (the pixel h*W + w in the plane, pooling.h).
// The global average forward is one thread per (n, c), looping over the H*W pixels (a warp reads 32
// consecutive channels of a pixel at a time: coalesced; N*C threads, 65,536 for ResNet-18's last
// stage at batch 128, fill the GPU); its backward is the flat kernel with dy[n, c] found per
// element. cuDNN gets CUDNN_TENSOR_NHWC descriptors.
//
// bfloat16/float16 (cuda-handwritten and cuda-vendor): the same kernels templated on the storage
// type T, loading each element as float (ldg_f, kernels/vec16.cuh), summing and comparing in float
// and rounding each output once, as the CPU row. The windows overlap and are gathered element by
// element, so there are no 16-byte vectors here (global_avgpool_backward, dx = dy / HW, is a
// broadcast of one value per plane). cuDNN gets CUDNN_DATA_BFLOAT16/HALF descriptors.
//
// Indices are 32-bit inside the kernels; the launchers check tensors have < 2^31 elements.
#include <cstdint>

#include "core/cuda_check.h"
#include "kernels/pooling.h"
#include "kernels/vec16.cuh"

namespace minidl::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 132 * 16;  // grid-stride loops: ~16 resident blocks per SM on an H100

// 32-bit copies of the geometry for the kernels.
struct Geo {
  unsigned NC, C, H, W, P, Q;
  int k, s, pad;
};

// Element i of a tensor of A x B pixels per (n, c) plane, in the kernel's layout: its pixel (a, b),
// where its plane starts in another tensor of `other` pixels per plane (the input of an output
// element, or the reverse), and the distance between that plane's pixels.
//   NCHW  i = (n*C + c)*A*B + a*B + b;   plane start (n*C + c)*other,  step 1
//   NHWC  i = ((n*A + a)*B + b)*C + c;   plane start n*other*C + c,    step C
struct Pos {
  int a, b;
  unsigned base, step;
};
template <bool kNhwc>
__device__ __forceinline__ Pos locate(unsigned i, unsigned A, unsigned B, unsigned C,
                                      unsigned other) {
  if constexpr (kNhwc) {
    const unsigned c = i % C, r = i / C, b = r % B, a = (r / B) % A, n = r / (A * B);
    return {int(a), int(b), n * other * C + c, C};
  } else {
    const unsigned b = i % B, a = (i / B) % A, plane = i / (A * B);
    return {int(a), int(b), plane * other, 1};
  }
}

Geo to_geo(const PoolGeometry& g, const char* who) {
  const int64_t in = g.N * g.C * g.H * g.W, out = g.N * g.C * g.P * g.Q;
  MINIDL_CHECK(in < (int64_t(1) << 31) && out < (int64_t(1) << 31), who,
               ": tensors of 2^31 or more elements are not supported by the CUDA kernels, got (N, "
               "C, H, W) = (", g.N, ", ", g.C, ", ", g.H, ", ", g.W, ")");
  return {static_cast<unsigned>(g.N * g.C),
          static_cast<unsigned>(g.C),
          static_cast<unsigned>(g.H),
          static_cast<unsigned>(g.W),
          static_cast<unsigned>(g.P),
          static_cast<unsigned>(g.Q),
          g.kernel,
          g.stride,
          g.pad};
}

// Outputs [begin, end) along one axis whose windows cover input coordinate `h`:
// p*s - pad <= h <= p*s - pad + k - 1.
__device__ __forceinline__ void covering(int& begin, int& end, int h, int k, int s, int pad,
                                         int P) {
  begin = h + pad < k ? 0 : (h + pad - k) / s + 1;
  end = min((h + pad) / s + 1, P);
}

template <typename T, bool kNhwc>
__global__ void maxpool_forward_kernel(T* __restrict__ y, int32_t* __restrict__ argmax,
                                       const T* __restrict__ x, Geo g) {
  const unsigned total = g.NC * g.P * g.Q;
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const Pos o = locate<kNhwc>(i, g.P, g.Q, g.C, g.H * g.W);
    const int p = o.a, q = o.b;
    const T* xp = x + o.base;
    const int h0 = p * g.s - g.pad, w0 = q * g.s - g.pad;
    float best = 0.f;
    int arg = -1;
    for (int h = max(h0, 0); h < min(h0 + g.k, int(g.H)); ++h)
      for (int w = max(w0, 0); w < min(w0 + g.k, int(g.W)); ++w) {
        const float v = ldg_f(xp + (h * g.W + w) * o.step);
        // First maximum on ties; a NaN wins and stays (as the CPU reference).
        if (arg < 0 || v > best || (isnan(v) && !isnan(best))) {
          best = v;
          arg = h * g.W + w;
        }
      }
    y[i] = narrow<T>(best);
    argmax[i] = arg;
  }
}

// One thread per input pixel: dx = sum of dy over the covering windows whose argmax is this pixel.
template <typename T, bool kNhwc>
__global__ void maxpool_backward_kernel(T* __restrict__ dx, const T* __restrict__ dy,
                                        const int32_t* __restrict__ argmax, Geo g) {
  const unsigned total = g.NC * g.H * g.W;
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const Pos in = locate<kNhwc>(i, g.H, g.W, g.C, g.P * g.Q);
    const int h = in.a, w = in.b;
    const unsigned plane = in.base;
    const int32_t me = h * g.W + w;
    int pb, pe, qb, qe;
    covering(pb, pe, h, g.k, g.s, g.pad, g.P);
    covering(qb, qe, w, g.k, g.s, g.pad, g.Q);
    float sum = 0.f;
    for (int p = pb; p < pe; ++p)
      for (int q = qb; q < qe; ++q) {
        const unsigned o = plane + (p * g.Q + q) * in.step;
        if (__ldg(argmax + o) == me) sum += ldg_f(dy + o);
      }
    dx[i] = narrow<T>(sum);
  }
}

template <typename T, bool kNhwc>
__global__ void avgpool_forward_kernel(T* __restrict__ y, const T* __restrict__ x, Geo g) {
  const unsigned total = g.NC * g.P * g.Q;
  // Floor-mode windows never pass the padded border: the divisor is always k*k.
  const float inv_area = 1.f / float(g.k * g.k);
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const Pos o = locate<kNhwc>(i, g.P, g.Q, g.C, g.H * g.W);
    const int p = o.a, q = o.b;
    const T* xp = x + o.base;
    const int h0 = p * g.s - g.pad, w0 = q * g.s - g.pad;
    float sum = 0.f;
    for (int h = max(h0, 0); h < min(h0 + g.k, int(g.H)); ++h)
      for (int w = max(w0, 0); w < min(w0 + g.k, int(g.W)); ++w)
        sum += ldg_f(xp + (h * g.W + w) * o.step);
    y[i] = narrow<T>(sum * inv_area);
  }
}

template <typename T, bool kNhwc>
__global__ void avgpool_backward_kernel(T* __restrict__ dx, const T* __restrict__ dy, Geo g) {
  const unsigned total = g.NC * g.H * g.W;
  const float inv_area = 1.f / float(g.k * g.k);
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const Pos in = locate<kNhwc>(i, g.H, g.W, g.C, g.P * g.Q);
    const int h = in.a, w = in.b;
    const T* dyp = dy + in.base;
    int pb, pe, qb, qe;
    covering(pb, pe, h, g.k, g.s, g.pad, g.P);
    covering(qb, qe, w, g.k, g.s, g.pad, g.Q);
    float sum = 0.f;
    for (int p = pb; p < pe; ++p)
      for (int q = qb; q < qe; ++q) sum += ldg_f(dyp + (p * g.Q + q) * in.step);
    dx[i] = narrow<T>(sum * inv_area);
  }
}

// One warp per (n, c) plane; blockDim.x == kThreads (kThreads / 32 planes per block).
template <typename T>
__global__ void global_avgpool_forward_kernel(T* __restrict__ y, const T* __restrict__ x,
                                              unsigned NC, unsigned HW) {
  const unsigned warps = gridDim.x * (blockDim.x / 32);
  const unsigned lane = threadIdx.x & 31;
  for (unsigned plane = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; plane < NC;
       plane += warps) {
    const T* xp = x + plane * HW;
    float sum = 0.f;
    for (unsigned i = lane; i < HW; i += 32) sum += ldg_f(xp + i);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, o);
    if (lane == 0) y[plane] = narrow<T>(sum / float(HW));
  }
}

// NHWC: one thread per (n, c) (index n*C + c, which is also y's), summing the plane's H*W pixels
// C elements apart in order, in float as the warp version.
template <typename T>
__global__ void global_avgpool_forward_nhwc_kernel(T* __restrict__ y, const T* __restrict__ x,
                                                   unsigned NC, unsigned C, unsigned HW) {
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < NC; i += gridDim.x * blockDim.x) {
    const unsigned c = i % C;
    const T* xp = x + (i - c) * HW + c;  // n*HW*C + c
    float sum = 0.f;
    for (unsigned k = 0; k < HW; ++k) sum += ldg_f(xp + k * C);
    y[i] = narrow<T>(sum / float(HW));
  }
}

// dx[i] = dy[n, c] / HW for every element i of dx: NCHW i / HW is n*C + c; NHWC
// i = (n*HW + k)*C + c, so n*C + c = (i / (HW*C))*C + i % C.
template <typename T, bool kNhwc>
__global__ void global_avgpool_backward_kernel(T* __restrict__ dx, const T* __restrict__ dy,
                                               unsigned total, unsigned C, unsigned HW) {
  const float inv = 1.f / float(HW);
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const unsigned nc = kNhwc ? i / (HW * C) * C + i % C : i / HW;
    dx[i] = narrow<T>(ldg_f(dy + nc) * inv);
  }
}

// ---------------------------------------------------------------- cuDNN descriptors (RAII)
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(int64_t n, int64_t c, int64_t h, int64_t w, Layout layout, cudnnDataType_t type) {
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
    const cudnnTensorFormat_t format =
        layout == Layout::NHWC ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, format, type, int(n), int(c), int(h), int(w)));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};

struct CudnnPool {
  TensorDesc x, y;
  cudnnPoolingDescriptor_t pool = nullptr;
  CudnnPool(const PoolGeometry& g, cudnnPoolingMode_t mode, cudnnDataType_t type)
      : x(g.N, g.C, g.H, g.W, g.layout, type), y(g.N, g.C, g.P, g.Q, g.layout, type) {
    CUDNN_CHECK(cudnnCreatePoolingDescriptor(&pool));
    CUDNN_CHECK(cudnnSetPooling2dDescriptor(pool, mode, CUDNN_PROPAGATE_NAN, g.kernel, g.kernel,
                                            g.pad, g.pad, g.stride, g.stride));
  }
  ~CudnnPool() { cudnnDestroyPoolingDescriptor(pool); }
  CudnnPool(const CudnnPool&) = delete;
  CudnnPool& operator=(const CudnnPool&) = delete;
};

}  // namespace

template <typename T>
void maxpool2d_forward(T* y, int32_t* argmax, const T* x, const PoolGeometry& g, bool vendor,
                       CudaContext& ctx) {
  const Geo geo = to_geo(g, "maxpool2d_forward");
  if (g.N * g.C == 0) return;
  if (vendor) {
    CudnnPool d(g, CUDNN_POOLING_MAX_DETERMINISTIC, cudnn_data_type<T>());
    const float one = 1.f, zero = 0.f;
    CUDNN_CHECK(cudnnPoolingForward(ctx.cudnn, d.pool, &one, d.x.d, x, &zero, d.y.d, y));
    return;
  }
  const unsigned blocks = grid_stride_blocks(ctx, geo.NC * geo.P * geo.Q, kThreads, kMaxBlocks);
  dispatch_layout(g.layout, [&]<bool kNhwc>() {
    maxpool_forward_kernel<T, kNhwc><<<blocks, kThreads, 0, ctx.stream>>>(y, argmax, x, geo);
  });
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename T>
void maxpool2d_backward(T* dx, const T* dy, const T* x, const T* y, const int32_t* argmax,
                        const PoolGeometry& g, bool vendor, CudaContext& ctx) {
  const Geo geo = to_geo(g, "maxpool2d_backward");
  if (g.N * g.C == 0) return;
  if (vendor) {
    CudnnPool d(g, CUDNN_POOLING_MAX_DETERMINISTIC, cudnn_data_type<T>());
    const float one = 1.f, zero = 0.f;
    CUDNN_CHECK(cudnnPoolingBackward(ctx.cudnn, d.pool, &one, d.y.d, y, d.y.d, dy, d.x.d, x, &zero,
                                     d.x.d, dx));
    return;
  }
  const unsigned blocks = grid_stride_blocks(ctx, geo.NC * geo.H * geo.W, kThreads, kMaxBlocks);
  dispatch_layout(g.layout, [&]<bool kNhwc>() {
    maxpool_backward_kernel<T, kNhwc><<<blocks, kThreads, 0, ctx.stream>>>(dx, dy, argmax, geo);
  });
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename T>
void avgpool2d_forward(T* y, const T* x, const PoolGeometry& g, bool vendor, CudaContext& ctx) {
  const Geo geo = to_geo(g, "avgpool2d_forward");
  if (g.N * g.C == 0) return;
  if (vendor) {
    CudnnPool d(g, CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING, cudnn_data_type<T>());
    const float one = 1.f, zero = 0.f;
    CUDNN_CHECK(cudnnPoolingForward(ctx.cudnn, d.pool, &one, d.x.d, x, &zero, d.y.d, y));
    return;
  }
  const unsigned blocks = grid_stride_blocks(ctx, geo.NC * geo.P * geo.Q, kThreads, kMaxBlocks);
  dispatch_layout(g.layout, [&]<bool kNhwc>() {
    avgpool_forward_kernel<T, kNhwc><<<blocks, kThreads, 0, ctx.stream>>>(y, x, geo);
  });
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename T>
void avgpool2d_backward(T* dx, const T* dy, const PoolGeometry& g, CudaContext& ctx) {
  // Both CUDA backends: see the file comment (cudnnPoolingBackward would need x and y).
  const Geo geo = to_geo(g, "avgpool2d_backward");
  if (g.N * g.C == 0) return;
  const unsigned blocks = grid_stride_blocks(ctx, geo.NC * geo.H * geo.W, kThreads, kMaxBlocks);
  dispatch_layout(g.layout, [&]<bool kNhwc>() {
    avgpool_backward_kernel<T, kNhwc><<<blocks, kThreads, 0, ctx.stream>>>(dx, dy, geo);
  });
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename T>
void global_avgpool_forward(T* y, const T* x, int64_t N, int64_t C, int64_t HW, Layout layout,
                            CudaContext& ctx) {
  const int64_t NC = N * C;
  MINIDL_CHECK(NC * HW < (int64_t(1) << 31), "global_avgpool_forward: tensors of 2^31 or more "
               "elements are not supported by the CUDA kernels, got NC = ", NC, ", HW = ", HW);
  if (NC == 0) return;
  if (layout == Layout::NHWC) {
    const unsigned blocks = grid_stride_blocks(ctx, NC, kThreads, kMaxBlocks);
    global_avgpool_forward_nhwc_kernel<T>
        <<<blocks, kThreads, 0, ctx.stream>>>(y, x, unsigned(NC), unsigned(C), unsigned(HW));
    MINIDL_CHECK_LAUNCH(ctx.stream);
    return;
  }
  const int planes_per_block = kThreads / 32;
  const unsigned blocks = grid_stride_blocks(ctx, NC, planes_per_block, kMaxBlocks);
  global_avgpool_forward_kernel<T>
      <<<blocks, kThreads, 0, ctx.stream>>>(y, x, unsigned(NC), unsigned(HW));
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename T>
void global_avgpool_backward(T* dx, const T* dy, int64_t N, int64_t C, int64_t HW, Layout layout,
                             CudaContext& ctx) {
  const int64_t NC = N * C;
  MINIDL_CHECK(NC * HW < (int64_t(1) << 31), "global_avgpool_backward: tensors of 2^31 or more "
               "elements are not supported by the CUDA kernels, got NC = ", NC, ", HW = ", HW);
  if (NC == 0) return;
  const unsigned blocks = grid_stride_blocks(ctx, NC * HW, kThreads, kMaxBlocks);
  dispatch_layout(layout, [&]<bool kNhwc>() {
    global_avgpool_backward_kernel<T, kNhwc>
        <<<blocks, kThreads, 0, ctx.stream>>>(dx, dy, unsigned(NC * HW), unsigned(C), unsigned(HW));
  });
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

#define MINIDL_POOLING_INSTANTIATE(T)                                                        \
  template void maxpool2d_forward<T>(T*, int32_t*, const T*, const PoolGeometry&, bool,      \
                                     CudaContext&);                                          \
  template void maxpool2d_backward<T>(T*, const T*, const T*, const T*, const int32_t*,      \
                                      const PoolGeometry&, bool, CudaContext&);              \
  template void avgpool2d_forward<T>(T*, const T*, const PoolGeometry&, bool, CudaContext&); \
  template void avgpool2d_backward<T>(T*, const T*, const PoolGeometry&, CudaContext&);      \
  template void global_avgpool_forward<T>(T*, const T*, int64_t, int64_t, int64_t, Layout,   \
                                          CudaContext&);                                     \
  template void global_avgpool_backward<T>(T*, const T*, int64_t, int64_t, int64_t, Layout,  \
                                           CudaContext&);
MINIDL_POOLING_INSTANTIATE(float)
MINIDL_POOLING_INSTANTIATE(bf16)
MINIDL_POOLING_INSTANTIATE(f16)
#undef MINIDL_POOLING_INSTANTIATE

}  // namespace minidl::cuda

// CUDA activations. Hand-written path: one grid-stride loop, one thread per element, vectorised
// by the compiler's 32-bit loads; these kernels are purely memory-bound (8 bytes moved per element
// forward, 12-16 backward), so the only goal is full coalescing and enough blocks in flight.
// Cudnn path: cudnnActivationForward/Backward for ReLU, Sigmoid and Tanh (cuDNN has no LeakyReLU
// activation mode, so that one always uses our kernel).
// bfloat16/float16: map1_kernel/map2_kernel (kernels/vec16.cuh), 16-byte vectors of 8 elements with
// a scalar head and tail, float32 math (act_fwd, act_bwd) and one rounding per element, as the CPU
// row; cuDNN takes CUDNN_DATA_BFLOAT16/HALF descriptors (float math inside).
#include "core/cuda_check.h"
#include "kernels/activation.h"
#include "kernels/vec16.cuh"

namespace minidl::cuda {

namespace {

__device__ __forceinline__ float act_fwd(float v, Activation act, float slope) {
  switch (act) {
    case Activation::ReLU: return v > 0.f ? v : 0.f;
    case Activation::LeakyReLU: return v > 0.f ? v : slope * v;
    case Activation::Sigmoid: return 1.f / (1.f + expf(-v));
    case Activation::Tanh: return tanhf(v);
  }
  return v;
}

__global__ void activation_forward_kernel(float* __restrict__ y, const float* __restrict__ x,
                                          int64_t n, Activation act, float slope) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = act_fwd(x[i], act, slope);
}

__global__ void activation_backward_kernel(float* __restrict__ dx, const float* __restrict__ dy,
                                           const float* __restrict__ x, const float* __restrict__ y,
                                           int64_t n, Activation act, float slope) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float g = dy[i];
    switch (act) {
      case Activation::ReLU: g = x[i] > 0.f ? g : 0.f; break;
      case Activation::LeakyReLU: g = x[i] > 0.f ? g : slope * g; break;
      case Activation::Sigmoid: g = g * y[i] * (1.f - y[i]); break;
      case Activation::Tanh: g = g * (1.f - y[i] * y[i]); break;
    }
    dx[i] = g;
  }
}

// The 16-bit backward: g = dy, v = x for ReLU/LeakyReLU, y for Sigmoid/Tanh (act_reads_y), as
// the CPU row computes it.
__device__ __forceinline__ float act_bwd(float g, float v, Activation act, float slope) {
  switch (act) {
    case Activation::ReLU:
      return v > 0.f ? g : 0.f;
    case Activation::LeakyReLU:
      return v > 0.f ? g : slope * g;
    case Activation::Sigmoid:
      return g * v * (1.f - v);
    case Activation::Tanh:
      return g * (1.f - v * v);
  }
  return g;
}

bool act_reads_y(Activation act) { return act == Activation::Sigmoid || act == Activation::Tanh; }

struct ActFwd {
  Activation act;
  float slope;
  __device__ float operator()(float v) const { return act_fwd(v, act, slope); }
};
struct ActBwd {
  Activation act;
  float slope;
  __device__ float operator()(float g, float v) const { return act_bwd(g, v, act, slope); }
};

bool cudnn_has(Activation act) { return act != Activation::LeakyReLU; }

// A 1-D tensor descriptor of n elements viewed as (1, 1, 1, n) ... cuDNN limits a dimension to
// 2^31-1, which every activation in the supported models satisfies; larger inputs use our kernel.
struct CudnnActivation {
  cudnnTensorDescriptor_t desc = nullptr;
  cudnnActivationDescriptor_t act = nullptr;
  CudnnActivation(int64_t n, Activation a, cudnnDataType_t type) {
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc));
    CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, type, 1, 1, 1, static_cast<int>(n)));
    CUDNN_CHECK(cudnnCreateActivationDescriptor(&act));
    const cudnnActivationMode_t mode = a == Activation::ReLU      ? CUDNN_ACTIVATION_RELU
                                       : a == Activation::Sigmoid ? CUDNN_ACTIVATION_SIGMOID
                                                                  : CUDNN_ACTIVATION_TANH;
    CUDNN_CHECK(cudnnSetActivationDescriptor(act, mode, CUDNN_NOT_PROPAGATE_NAN, 0.0));
  }
  ~CudnnActivation() {
    cudnnDestroyActivationDescriptor(act);
    cudnnDestroyTensorDescriptor(desc);
  }
};

}  // namespace

template <typename T>
void activation_forward(T* y, const T* x, int64_t n, Activation act, float slope, bool vendor,
                        CudaContext& ctx) {
  if (n == 0) return;
  if (vendor) {
    MINIDL_ASSERT(cudnn_has(act), "cuDNN has no ", activation_name(act));
    CudnnActivation d(n, act, cudnn_data_type<T>());
    const float one = 1.f, zero = 0.f;
    CUDNN_CHECK(cudnnActivationForward(ctx.cudnn, d.act, &one, d.desc, x, &zero, d.desc, y));
    return;
  }
  const int threads = 256;
  if constexpr (sizeof(T) == 4) {
    activation_forward_kernel<<<grid_stride_blocks(ctx, n, threads), threads, 0, ctx.stream>>>(
        y, x, n, act, slope);
  } else {
    const VecSplit s = vec_split<T>(n, {y, x});
    map1_kernel<T, ActFwd>
        <<<grid_stride_blocks(ctx, map_items(s), threads), threads, 0, ctx.stream>>>(
            y, x, s, ActFwd{act, slope});
  }
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename T>
void activation_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, Activation act,
                         float slope, bool vendor, CudaContext& ctx) {
  if (n == 0) return;
  if (vendor) {
    MINIDL_ASSERT(cudnn_has(act), "cuDNN has no ", activation_name(act));
    CudnnActivation d(n, act, cudnn_data_type<T>());
    const float one = 1.f, zero = 0.f;
    CUDNN_CHECK(cudnnActivationBackward(ctx.cudnn, d.act, &one, d.desc, y, d.desc, dy, d.desc, x,
                                        &zero, d.desc, dx));
    return;
  }
  const int threads = 256;
  if constexpr (sizeof(T) == 4) {
    activation_backward_kernel<<<grid_stride_blocks(ctx, n, threads), threads, 0, ctx.stream>>>(
        dx, dy, x, y, n, act, slope);
  } else {
    const T* v = act_reads_y(act) ? y : x;
    const VecSplit s = vec_split<T>(n, {dx, dy, v});
    map2_kernel<T, ActBwd>
        <<<grid_stride_blocks(ctx, map_items(s), threads), threads, 0, ctx.stream>>>(
            dx, dy, v, s, ActBwd{act, slope});
  }
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

#define MINIDL_ACTIVATION_INSTANTIATE(T)                                                      \
  template void activation_forward<T>(T*, const T*, int64_t, Activation, float, bool,         \
                                      CudaContext&);                                          \
  template void activation_backward<T>(T*, const T*, const T*, const T*, int64_t, Activation, \
                                       float, bool, CudaContext&);
MINIDL_ACTIVATION_INSTANTIATE(float)
MINIDL_ACTIVATION_INSTANTIATE(bf16)
MINIDL_ACTIVATION_INSTANTIATE(f16)
#undef MINIDL_ACTIVATION_INSTANTIATE

}  // namespace minidl::cuda

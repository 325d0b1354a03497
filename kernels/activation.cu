// CUDA activations. Hand-written path: one grid-stride loop, one thread per element, vectorised
// by the compiler's 32-bit loads; these kernels are purely memory-bound (8 bytes moved per element
// forward, 12-16 backward), so the only goal is full coalescing and enough blocks in flight.
// Cudnn path: cudnnActivationForward/Backward for ReLU, Sigmoid and Tanh (cuDNN has no LeakyReLU
// activation mode, so that one always uses our kernel).
#include "core/cuda_check.h"
#include "kernels/activation.h"

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

bool cudnn_has(Activation act) { return act != Activation::LeakyReLU; }

// A 1-D tensor descriptor of n elements viewed as (1, 1, 1, n) ... cuDNN limits a dimension to
// 2^31-1, which every activation in the supported models satisfies; larger inputs use our kernel.
struct CudnnActivation {
  cudnnTensorDescriptor_t desc = nullptr;
  cudnnActivationDescriptor_t act = nullptr;
  CudnnActivation(int64_t n, Activation a) {
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 1,
                                           static_cast<int>(n)));
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

void activation_forward(float* y, const float* x, int64_t n, Activation act, float slope,
                        bool vendor, CudaContext& ctx) {
  if (n == 0) return;
  if (vendor) {
    MINIDL_ASSERT(cudnn_has(act), "cuDNN has no ", activation_name(act));
    CudnnActivation d(n, act);
    const float one = 1.f, zero = 0.f;
    CUDNN_CHECK(cudnnActivationForward(ctx.cudnn, d.act, &one, d.desc, x, &zero, d.desc, y));
    return;
  }
  const int threads = 256;
  activation_forward_kernel<<<grid_stride_blocks(ctx, n, threads), threads, 0, ctx.stream>>>(
      y, x, n, act, slope);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

void activation_backward(float* dx, const float* dy, const float* x, const float* y, int64_t n,
                         Activation act, float slope, bool vendor, CudaContext& ctx) {
  if (n == 0) return;
  if (vendor) {
    MINIDL_ASSERT(cudnn_has(act), "cuDNN has no ", activation_name(act));
    CudnnActivation d(n, act);
    const float one = 1.f, zero = 0.f;
    CUDNN_CHECK(cudnnActivationBackward(ctx.cudnn, d.act, &one, d.desc, y, d.desc, dy, d.desc, x,
                                        &zero, d.desc, dx));
    return;
  }
  const int threads = 256;
  activation_backward_kernel<<<grid_stride_blocks(ctx, n, threads), threads, 0, ctx.stream>>>(
      dx, dy, x, y, n, act, slope);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

}  // namespace minidl::cuda

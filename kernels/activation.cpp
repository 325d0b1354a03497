// Activations: argument checks, device dispatch and the CPU reference (see activation.h for the
// formulas). The CUDA kernels are in activation.cu.
#include "kernels/activation.h"

#include <cmath>

#include "kernels/cpu_simd.h"

namespace minidl {

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::ReLU: return "ReLU";
    case Activation::LeakyReLU: return "LeakyReLU";
    case Activation::Sigmoid: return "Sigmoid";
    case Activation::Tanh: return "Tanh";
  }
  return "?";
}

namespace cpu {

// The activation is chosen once, outside the element loop, so that each loop is a plain map the
// compiler vectorises (the ReLU loops compile to AVX max/blend on x86-64); threads split the
// elements of large tensors. T is the storage type; the math runs in C = compute_t<T> (float for
// bfloat16/float16: each element is widened, computed and rounded once, core/half.h).
// 16-bit T runs the AVX-512 copy where the CPU has it (cpu_simd.h).
template <typename T, typename F>
void map1(T* y, const T* x, int64_t n, F f) {
  parallel_chunks<T>(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = narrow<T>(f(widen(x[i])));
  });
}

template <typename T, typename F>
void map2(T* dx, const T* a, const T* b, int64_t n, F f) {
  parallel_chunks<T>(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) dx[i] = narrow<T>(f(widen(a[i]), widen(b[i])));
  });
}

template <typename T, typename C = compute_t<T>>
void activation_forward(T* y, const T* x, int64_t n, Activation act, C slope) {
  switch (act) {
    case Activation::ReLU: return map1(y, x, n, [](C v) { return v > C(0) ? v : C(0); });
    case Activation::LeakyReLU:
      return map1(y, x, n, [slope](C v) { return v > C(0) ? v : slope * v; });
    case Activation::Sigmoid: return map1(y, x, n, [](C v) { return C(1) / (C(1) + std::exp(-v)); });
    case Activation::Tanh: return map1(y, x, n, [](C v) { return std::tanh(v); });
  }
}

template <typename T, typename C = compute_t<T>>
void activation_backward(T* dx, const T* dy, const T* x, const T* y, int64_t n, Activation act,
                         C slope) {
  switch (act) {
    case Activation::ReLU:
      return map2(dx, dy, x, n, [](C g, C v) { return v > C(0) ? g : C(0); });
    case Activation::LeakyReLU:
      return map2(dx, dy, x, n, [slope](C g, C v) { return v > C(0) ? g : slope * g; });
    case Activation::Sigmoid:
      return map2(dx, dy, y, n, [](C g, C v) { return g * v * (C(1) - v); });
    case Activation::Tanh: return map2(dx, dy, y, n, [](C g, C v) { return g * (C(1) - v * v); });
  }
}

}  // namespace cpu

const OpInfo& activation_op() {
  static const OpInfo op{
      "activation",
      "`activation_forward`, `activation_backward`",
      {{Backend::CpuReference,
        "vectorised loops; bfloat16/float16 in memory, float32 math",
        {DType::F32, DType::F64, DType::BF16, DType::F16}},
       {Backend::CudaHandwritten,
        "one thread per element; bfloat16/float16 in 16-byte vectors, float32 math",
        {DType::F32, DType::BF16, DType::F16}},
       {Backend::CudaVendor,
        "cudnnActivationForward/Backward",
        {DType::F32, DType::BF16, DType::F16}}},
      "cuDNN has the function (not LeakyReLU) and the tensor has < 2^31 elements"};
  return op;
}

namespace {
bool cudnn_has(Activation act) { return act != Activation::LeakyReLU; }
}  // namespace

Backend select_activation_backend(const Device& d, DType dtype, Activation act, int64_t numel) {
  return select_backend(activation_op(), d, dtype, cudnn_has(act) && numel < (int64_t(1) << 31));
}

void activation_forward(Tensor& y, const Tensor& x, Activation act, double slope) {
  activation_forward(select_activation_backend(x.device(), x.dtype(), act, x.numel()), y, x, act,
                     slope);
}

void activation_forward(Backend b, Tensor& y, const Tensor& x, Activation act, double slope) {
  const char* who = activation_name(act);
  check_same_shape(y, x, who);
  check_same_device(y, x, who);
  check_dtype(y, x.dtype(), who, "output");
  check_backend(activation_op(), b, x.device(), x.dtype(), who);
  MINIDL_CHECK(b != Backend::CudaVendor || cudnn_has(act), who, ": cuDNN has no ", who,
               "; use the cuda-handwritten backend");
  switch (b) {
    case Backend::CudaHandwritten:
    case Backend::CudaVendor:
      MINIDL_IF_CUDA(dispatch_float32_storage(x.dtype(), who, [&]<typename T>() {
        cuda::activation_forward<T>(y.data<T>(), x.data<T>(), x.numel(), act,
                                    static_cast<float>(slope), b == Backend::CudaVendor,
                                    cuda_context(x.device()));
      }));
      return;
    default:
      dispatch_storage(x.dtype(), who, [&]<typename T>() {
        cpu::activation_forward<T>(y.data<T>(), x.data<T>(), x.numel(), act,
                                   static_cast<compute_t<T>>(slope));
      });
  }
}

void activation_backward(Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                         Activation act, double slope) {
  activation_backward(select_activation_backend(x.device(), x.dtype(), act, x.numel()), dx, dy, x,
                      y, act, slope);
}

void activation_backward(Backend b, Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                         Activation act, double slope) {
  const char* who = activation_name(act);
  check_same_shape(dx, dy, who);
  check_same_shape(x, dy, who);
  check_same_shape(y, dy, who);
  check_same_device(dx, dy, who);
  check_same_device(x, dy, who);
  check_dtype(dx, dy.dtype(), who, "input gradient");
  check_dtype(x, dy.dtype(), who, "input");
  check_dtype(y, dy.dtype(), who, "output");
  check_backend(activation_op(), b, dy.device(), dy.dtype(), who);
  MINIDL_CHECK(b != Backend::CudaVendor || cudnn_has(act), who, ": cuDNN has no ", who,
               "; use the cuda-handwritten backend");
  switch (b) {
    case Backend::CudaHandwritten:
    case Backend::CudaVendor:
      MINIDL_IF_CUDA(dispatch_float32_storage(dy.dtype(), who, [&]<typename T>() {
        cuda::activation_backward<T>(dx.data<T>(), dy.data<T>(), x.data<T>(), y.data<T>(),
                                     dy.numel(), act, static_cast<float>(slope),
                                     b == Backend::CudaVendor, cuda_context(dy.device()));
      }));
      return;
    default:
      dispatch_storage(dy.dtype(), who, [&]<typename T>() {
        cpu::activation_backward<T>(dx.data<T>(), dy.data<T>(), x.data<T>(), y.data<T>(),
                                    dy.numel(), act, static_cast<compute_t<T>>(slope));
      });
  }
}

}  // namespace minidl

// Dropout: argument checks, device dispatch and the CPU reference (formulas in dropout.h). The CUDA
// kernels are in dropout.cu and must draw bit-identical masks (tests/ops/dropout_test.cpp).
//
// Both sides compare the float u = uniform_from_word(word) with p rounded to float: comparing with
// the double p on the CPU would disagree with the GPU's float p for the rare u that falls between
// the two.
#include "kernels/dropout.h"

#include "core/rng.h"

namespace minidl {

namespace cpu {

// T is the storage type, the scaling runs in compute_t<T> (float for bfloat16/float16) and is
// rounded once.
template <typename T>
void dropout_forward(T* y, uint8_t* mask, const T* x, int64_t n, float p, compute_t<T> scale,
                     uint64_t seed, uint64_t offset) {
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float u = uniform_from_word(philox_word(seed, offset + static_cast<uint64_t>(i)));
    const bool keep = u >= p;
    mask[i] = keep;
    y[i] = narrow<T>(keep ? widen(x[i]) * scale : compute_t<T>(0));
  }
}

template <typename T>
void dropout_backward(T* dx, const T* dy, const uint8_t* mask, int64_t n, compute_t<T> scale) {
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i)
    dx[i] = narrow<T>(mask[i] ? widen(dy[i]) * scale : compute_t<T>(0));
}

}  // namespace cpu

namespace {
void check_p(double p, const char* who) {
  MINIDL_CHECK(p >= 0.0 && p < 1.0, who, ": drop probability p must be in [0, 1), got ", p);
}

// The scale 1 / (1 - p), computed in T exactly as the CUDA launcher computes it in float, so that
// float32 outputs agree with the GPU's bit for bit, not just the masks.
template <typename T>
T inverse_keep(double p) {
  return T(1) / (T(1) - static_cast<T>(p));
}
}  // namespace

const OpInfo& dropout_op() {
  static const OpInfo op{
      "dropout",
      "`dropout_forward`, `dropout_backward`",
      {{Backend::CpuReference,
        "counter-based RNG (Philox), same mask as the GPU; bfloat16/float16 with float32 math",
        {DType::F32, DType::F64, DType::BF16, DType::F16}},
       {Backend::CudaHandwritten,
        "one thread per Philox counter (four elements), the same RNG; bfloat16/float16 with "
        "float32 math, the backward in 16-byte vectors",
        {DType::F32, DType::BF16, DType::F16}}}};
  return op;
}

Backend select_dropout_backend(const Device& d, DType dtype) {
  return select_backend(dropout_op(), d, dtype);
}

void dropout_forward(Tensor& y, Tensor& mask, const Tensor& x, double p, uint64_t seed,
                     uint64_t offset) {
  dropout_forward(select_dropout_backend(x.device(), x.dtype()), y, mask, x, p, seed, offset);
}

void dropout_forward(Backend b, Tensor& y, Tensor& mask, const Tensor& x, double p, uint64_t seed,
                     uint64_t offset) {
  const char* who = "dropout_forward";
  check_p(p, who);
  check_same_shape(y, x, who);
  check_same_shape(mask, x, who);
  check_dtype(y, x.dtype(), who, "output");
  check_dtype(mask, DType::U8, who, "mask");
  check_same_device(y, x, who);
  check_same_device(mask, x, who);
  check_backend(dropout_op(), b, x.device(), x.dtype(), who);
  if (b == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(dispatch_float32_storage(x.dtype(), who, [&]<typename T>() {
      cuda::dropout_forward<T>(y.data<T>(), mask.data<uint8_t>(), x.data<T>(), x.numel(),
                               static_cast<float>(p), seed, offset, cuda_context(x.device()));
    }));
    return;
  }
  dispatch_storage(x.dtype(), who, [&]<typename T>() {
    cpu::dropout_forward<T>(y.data<T>(), mask.data<uint8_t>(), x.data<T>(), x.numel(),
                            static_cast<float>(p), inverse_keep<compute_t<T>>(p), seed, offset);
  });
}

void dropout_backward(Tensor& dx, const Tensor& dy, const Tensor& mask, double p) {
  dropout_backward(select_dropout_backend(dy.device(), dy.dtype()), dx, dy, mask, p);
}

void dropout_backward(Backend b, Tensor& dx, const Tensor& dy, const Tensor& mask, double p) {
  const char* who = "dropout_backward";
  check_p(p, who);
  check_same_shape(dx, dy, who);
  check_same_shape(mask, dy, who);
  check_dtype(dx, dy.dtype(), who, "input gradient");
  check_dtype(mask, DType::U8, who, "mask");
  check_same_device(dx, dy, who);
  check_same_device(mask, dy, who);
  check_backend(dropout_op(), b, dy.device(), dy.dtype(), who);
  if (b == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(dispatch_float32_storage(dy.dtype(), who, [&]<typename T>() {
      cuda::dropout_backward(dx.data<T>(), dy.data<T>(), mask.data<uint8_t>(), dy.numel(),
                             static_cast<float>(p), cuda_context(dy.device()));
    }));
    return;
  }
  dispatch_storage(dy.dtype(), who, [&]<typename T>() {
    cpu::dropout_backward<T>(dx.data<T>(), dy.data<T>(), mask.data<uint8_t>(), dy.numel(),
                             inverse_keep<compute_t<T>>(p));
  });
}

}  // namespace minidl

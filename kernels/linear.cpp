// Linear layer math (formulas in linear.h): three GEMMs plus the bias, written once for every
// backend. The bias uses the layout primitives with L = 1, so no kernel of its own is needed:
//   forward with bias:  Y^T (out, N) = W x^T, then knl_to_nkl (a transpose that adds b[k]) gives
//                       y[n, k] = Y^T[k, n] + b[k]
//   db += sum_n dy[n]:  channel_sum_accumulate over dy viewed as (N, out, 1)
#include "kernels/linear.h"

#include "kernels/convert.h"
#include "kernels/gemm.h"
#include "kernels/layout.h"

namespace minidl {

namespace {

struct LinearSizes {
  int64_t N, in, out;
};

// x (N, in), w (out, in); errors name the op and both shapes.
LinearSizes check_linear(const Tensor& x, const Tensor& w, const char* who) {
  MINIDL_CHECK(x.dim() == 2, who, ": input must be 2-D (N, in_features), got shape ", x.shape());
  MINIDL_CHECK(w.dim() == 2, who, ": weight must be 2-D (out_features, in_features), got shape ",
               w.shape());
  MINIDL_CHECK(x.size(1) == w.size(1), who, ": input ", x.shape(), " has ", x.size(1),
               " features but weight ", w.shape(), " expects ", w.size(1));
  check_same_device(x, w, who);
  check_dtype(w, x.dtype(), who, "weight");
  return {x.size(0), x.size(1), w.size(0)};
}

void check_like(const Tensor& t, const Tensor& ref, const Shape& shape, const char* who,
                const char* what) {
  check_shape(t, shape, who, what);
  check_same_device(t, ref, who);
  check_dtype(t, ref.dtype(), who, what);
}

// The bias and the weight and bias gradients: float32 when x is bfloat16/float16 (the master
// weights' side, as in conv2d), else x's dtype.
void check_master(const Tensor& t, const Tensor& ref, const Shape& shape, const char* who,
                  const char* what) {
  check_shape(t, shape, who, what);
  check_same_device(t, ref, who);
  check_dtype(t, is_low_precision(ref.dtype()) ? DType::F32 : ref.dtype(), who, what);
}

// cpu-reference at bfloat16/float16 runs the float32 products on float32 copies (exact).
bool via_float32(Backend b, DType t) { return b == Backend::CpuReference && is_low_precision(t); }

// The CUDA backends at bfloat16/float16 run the products on the 16-bit tensors (gemm_lowp: float32
// accumulation and results); y and dx are rounded once from float32, dw and db stay float32.
bool via_lowp_gemm(Backend b, DType t) {
  return is_low_precision(t) && (b == Backend::CudaHandwritten || b == Backend::CudaCublas);
}

// The products, row-major, shared by every dtype path:
//   Y^T (out, N) = w (out, in) * x^T (in, N)      (the forward with a bias, and at 16 bits)
//   dx (N, in)   = dy (N, out) * w (out, in)
//   dw (out, in) += dy^T (out, N) * x (N, in)
GemmShape yt_product(const LinearSizes& z) {
  GemmShape s;
  s.trans_b = true;
  s.M = z.out;
  s.N = z.N;
  s.K = z.in;
  s.lda = z.in;
  s.ldb = z.in;
  s.ldc = z.N;
  return s;
}

GemmShape dx_product(const LinearSizes& z) {
  GemmShape s;
  s.M = z.N;
  s.N = z.in;
  s.K = z.out;
  s.lda = z.out;
  s.ldb = z.in;
  s.ldc = z.in;
  return s;
}

GemmShape dw_product(const LinearSizes& z) {
  GemmShape s;
  s.trans_a = true;
  s.M = z.out;
  s.N = z.in;
  s.K = z.N;
  s.lda = z.out;
  s.ldb = z.in;
  s.ldc = z.in;
  return s;
}

}  // namespace

const OpInfo& linear_op() {
  static const OpInfo op{"linear",
                         "`linear_forward`, `linear_backward`",
                         {{Backend::CpuReference,
                           "three products on OpenBLAS; bfloat16/float16 as float32 copies",
                           {DType::F32, DType::F64, DType::BF16, DType::F16}},
                          {Backend::CudaHandwritten,
                           "three products on our SGEMM; bfloat16/float16 on our tensor-core "
                           "product",
                           {DType::F32, DType::BF16, DType::F16}},
                          {Backend::CudaCublas,
                           "three products on cuBLAS; bfloat16/float16 on cublasGemmEx",
                           {DType::F32, DType::BF16, DType::F16}}}};
  return op;
}

Backend select_linear_backend(const Device& d, DType dtype) {
  return select_backend(linear_op(), d, dtype);
}

void linear_forward(Tensor& y, const Tensor& x, const Tensor& w, const Tensor* b) {
  linear_forward(select_linear_backend(x.device(), x.dtype()), y, x, w, b);
}

void linear_forward(Backend be, Tensor& y, const Tensor& x, const Tensor& w, const Tensor* b) {
  const char* who = "linear_forward";
  const LinearSizes z = check_linear(x, w, who);
  check_like(y, x, Shape{z.N, z.out}, who, "output");
  if (b) check_master(*b, x, Shape{z.out}, who, "bias");
  check_backend(linear_op(), be, x.device(), x.dtype(), who);
  if (z.N == 0) return;
  if (via_float32(be, x.dtype())) {
    Tensor y32 = Tensor::empty(y.shape(), DType::F32, y.device());
    linear_forward(be, y32, to_dtype(x, DType::F32), to_dtype(w, DType::F32), b);
    return convert(be, y, y32);
  }
  const Device dev = x.device();
  if (via_lowp_gemm(be, x.dtype())) {
    // Y^T (out, N) = w x^T in float32, then y = (Y^T)^T + b in float32, rounded once into y.
    Tensor yt = Tensor::empty(Shape{z.out, z.N}, DType::F32, dev);
    Tensor y32 = Tensor::empty(y.shape(), DType::F32, dev);
    gemm_lowp(be, dev, yt_product(z), x.dtype(), 1.f, w.raw_data(), x.raw_data(), 0.f,
              yt.data<float>());
    knl_to_nkl<float>(dev, y32.data<float>(), yt.data<float>(), b ? b->data<float>() : nullptr, z.N,
                      z.out, 1);
    return convert(y, y32);
  }
  dispatch_floating(x.dtype(), who, [&]<typename T>() {
    if (!b) {
      // y (N, out) = x (N, in) * w^T (in, out)
      GemmShape s;
      s.trans_b = true;
      s.M = z.N;
      s.N = z.out;
      s.K = z.in;
      s.lda = z.in;
      s.ldb = z.in;
      s.ldc = z.out;
      gemm<T>(be, dev, s, T(1), x.data<T>(), w.data<T>(), T(0), y.data<T>());
      return;
    }
    // Y^T (out, N) = w (out, in) * x^T (in, N), then y = (Y^T)^T + b
    Tensor yt = Tensor::empty(Shape{z.out, z.N}, x.dtype(), dev);
    gemm<T>(be, dev, yt_product(z), T(1), w.data<T>(), x.data<T>(), T(0), yt.data<T>());
    knl_to_nkl<T>(dev, y.data<T>(), yt.data<T>(), b->data<T>(), z.N, z.out, 1);
  });
}

void linear_backward(Tensor* dx, Tensor& dw, Tensor* db, const Tensor& dy, const Tensor& x,
                     const Tensor& w) {
  linear_backward(select_linear_backend(x.device(), x.dtype()), dx, dw, db, dy, x, w);
}

void linear_backward(Backend be, Tensor* dx, Tensor& dw, Tensor* db, const Tensor& dy,
                     const Tensor& x, const Tensor& w) {
  const char* who = "linear_backward";
  const LinearSizes z = check_linear(x, w, who);
  check_like(dy, x, Shape{z.N, z.out}, who, "output gradient");
  check_master(dw, x, w.shape(), who, "weight gradient");
  if (dx) check_like(*dx, x, x.shape(), who, "input gradient");
  if (db) check_master(*db, x, Shape{z.out}, who, "bias gradient");
  check_backend(linear_op(), be, x.device(), x.dtype(), who);
  if (via_float32(be, x.dtype())) {
    Tensor dx32 = dx ? Tensor::empty(dx->shape(), DType::F32, dx->device()) : Tensor();
    linear_backward(be, dx ? &dx32 : nullptr, dw, db, to_dtype(dy, DType::F32),
                    to_dtype(x, DType::F32), to_dtype(w, DType::F32));
    if (dx) convert(be, *dx, dx32);
    return;
  }
  const Device dev = x.device();
  if (via_lowp_gemm(be, x.dtype())) {
    if (dx && z.N > 0) {
      // dx (N, in) = dy (N, out) * w (out, in) in float32, rounded once into dx.
      Tensor dx32 = Tensor::empty(dx->shape(), DType::F32, dev);
      gemm_lowp(be, dev, dx_product(z), x.dtype(), 1.f, dy.raw_data(), w.raw_data(), 0.f,
                dx32.data<float>());
      convert(*dx, dx32);
    }
    // dw (out, in) += dy^T (out, N) * x (N, in), into the float32 dw.
    gemm_lowp(be, dev, dw_product(z), x.dtype(), 1.f, dy.raw_data(), x.raw_data(), 1.f,
              dw.data<float>());
    // db += the column sums of a float32 copy of dy (exact).
    if (db) {
      const Tensor dy32 = to_dtype(dy, DType::F32);
      channel_sum_accumulate<float>(dev, db->data<float>(), dy32.data<float>(), z.N, z.out, 1);
    }
    return;
  }
  dispatch_floating(x.dtype(), who, [&]<typename T>() {
    if (dx && z.N > 0) {
      // dx (N, in) = dy (N, out) * w (out, in)
      gemm<T>(be, dev, dx_product(z), T(1), dy.data<T>(), w.data<T>(), T(0), dx->data<T>());
    }
    // dw (out, in) += dy^T (out, N) * x (N, in)
    gemm<T>(be, dev, dw_product(z), T(1), dy.data<T>(), x.data<T>(), T(1), dw.data<T>());
    if (db) channel_sum_accumulate<T>(dev, db->data<T>(), dy.data<T>(), z.N, z.out, 1);
  });
}

}  // namespace minidl

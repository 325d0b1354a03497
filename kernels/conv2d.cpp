// Convolution: argument checks, the im2col + GEMM algorithm (written once, for every device), and
// the CPU versions of its primitives. The CUDA primitives and the cuDNN path are in conv2d.cu; the
// formulas are in conv2d.h and derived in docs/backprop/conv2d.md.
//
// The algorithm works on chunks of nb images so that the column buffer stays bounded (the whole
// batch at once would need C*R*S*N*P*Q elements: 1.8 GB for the first 3x3 convolution of an
// ImageNet ResNet-50 at batch 256). Per chunk:
//   forward          col = im2col(x[n0:n0+nb]);    Y' = W col;         y[n0:] = rearrange(Y') + b
//   backward_data    dY' = rearrange(dy[n0:]);     dcol = W^T dY';     dx[n0:] = col2im(dcol)
//   backward_weight  dY' = rearrange(dy[n0:]);     col = im2col(x);    dW += dY' col^T
// where Y' and dY' are (K, nb*P*Q): the images side by side, which is what one big GEMM needs.
#include "kernels/conv2d.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/convert.h"
#include "kernels/cpu_kernels.h"
#include "kernels/gemm.h"

namespace minidl {

// ---------------------------------------------------------------- geometry

ConvGeometry ConvGeometry::make(const Shape& x, const Shape& w, Conv2dParams p, const char* who) {
  MINIDL_CHECK(x.dim() == 4, who, ": input must be 4-D (N, C, H, W), got shape ", x);
  MINIDL_CHECK(w.dim() == 4, who, ": weight must be 4-D (K, C, R, S), got shape ", w);
  MINIDL_CHECK(p.stride >= 1 && p.pad >= 0, who,
               ": stride must be >= 1 and padding >= 0, got stride ", p.stride, ", padding ",
               p.pad);
  MINIDL_CHECK(x[1] == w[1], who, ": input ", x, " has ", x[1], " channels but weight ", w,
               " expects ", w[1]);
  ConvGeometry g{};
  g.N = x[0];
  g.C = x[1];
  g.H = x[2];
  g.W = x[3];
  g.K = w[0];
  g.R = w[2];
  g.S = w[3];
  g.stride = p.stride;
  g.pad = p.pad;
  // Checked before dividing: a negative numerator would round towards zero and give P = 1.
  MINIDL_CHECK(g.H + 2 * g.pad >= g.R && g.W + 2 * g.pad >= g.S, who, ": input ", x, " padded by ",
               g.pad, " is smaller than the ", g.R, "x", g.S, " kernel of weight ", w,
               ": the output would be empty");
  g.P = (g.H + 2 * g.pad - g.R) / g.stride + 1;
  g.Q = (g.W + 2 * g.pad - g.S) / g.stride + 1;
  MINIDL_CHECK(g.K >= 1 && g.C >= 1 && g.R >= 1 && g.S >= 1, who,
               ": weight must have at least one filter, channel and tap, got ", w);
  return g;
}

// ---------------------------------------------------------------- chunking

namespace {

// Images per chunk: as many as fit in the column budget (64 MiB on the CPU, where a bigger GEMM
// gains nothing; 512 MiB on a GPU, where wider GEMMs fill the device better), at least one. On a
// GPU the kernels index a chunk with 32-bit integers, so every per-chunk tensor (col, x, y) is also
// kept below 2^31 elements.
// The device's settings may set another budget (conv_col_budget; tests force several chunks).
int64_t images_per_chunk(const ConvGeometry& g, size_t elem_bytes, Device dev) {
  const size_t set = device_settings(dev).conv_col_budget;
  const size_t budget = set ? set : (dev.is_cuda() ? size_t(512) << 20 : size_t(64) << 20);
  const int64_t col_per_image = g.C * g.R * g.S * g.P * g.Q;
  int64_t nb = std::max<int64_t>(1, static_cast<int64_t>(budget / elem_bytes) / col_per_image);
  if (dev.is_cuda()) {
    const int64_t per_image = std::max({col_per_image, g.C * g.H * g.W, g.K * g.P * g.Q});
    const int64_t limit = std::numeric_limits<int32_t>::max();
    MINIDL_CHECK(per_image <= limit, "conv2d: one image needs ", per_image,
                 " elements in a buffer, more than the 2^31 the CUDA kernels index");
    nb = std::min(nb, limit / per_image);
  }
  return std::min(nb, g.N);
}

// ---------------------------------------------------------------- CPU primitives

namespace cpu {

// The output columns q whose input column w = q*stride - pad + s lies inside [0, W): [q0, q1).
// Outside it col holds the zero padding. Computing the range once per (s) keeps the inner loops
// free of bounds tests (a copy, or for stride 1 a memcpy), which is what makes them fast.
inline void valid_q(int64_t& q0, int64_t& q1, int64_t s, const ConvGeometry& g) {
  const int64_t lo = g.pad - s;                          // q*stride >= lo
  const int64_t hi = g.W + g.pad - s;                    // q*stride < hi
  q0 = lo <= 0 ? 0 : (lo + g.stride - 1) / g.stride;
  q1 = hi <= 0 ? 0 : (hi + g.stride - 1) / g.stride;
  q0 = std::min(q0, g.Q);
  q1 = std::max(q0, std::min(q1, g.Q));
}

// One row of col per (c, r, s); each row is written by one thread.
template <typename T>
void im2col(T* col, const T* x, int64_t nb, const ConvGeometry& g) {
  const int64_t RS = g.R * g.S, L = g.P * g.Q, ld = nb * L;
#pragma omp parallel for if (g.C * RS * ld > 65536)
  for (int64_t row = 0; row < g.C * RS; ++row) {
    const int64_t c = row / RS, r = (row / g.S) % g.R, s = row % g.S;
    int64_t q0, q1;
    valid_q(q0, q1, s, g);
    for (int64_t n = 0; n < nb; ++n) {
      const T* xc = x + (n * g.C + c) * g.H * g.W;
      T* dst = col + row * ld + n * L;
      for (int64_t p = 0; p < g.P; ++p) {
        T* out = dst + p * g.Q;
        const int64_t h = p * g.stride - g.pad + r;
        if (h < 0 || h >= g.H) {
          std::fill(out, out + g.Q, T(0));
          continue;
        }
        std::fill(out, out + q0, T(0));
        const T* in = xc + h * g.W + (q0 * g.stride - g.pad + s);
        if (g.stride == 1)
          std::memcpy(out + q0, in, sizeof(T) * (q1 - q0));
        else
          for (int64_t q = q0; q < q1; ++q) out[q] = in[(q - q0) * g.stride];
        std::fill(out + q1, out + g.Q, T(0));
      }
    }
  }
}

// The adjoint of im2col: every col entry is added back to the pixel it was copied from (entries
// that came from the zero padding are dropped). A pixel is copied into up to R*S entries, so the
// contributions must be added, not assigned. One thread per (n, c) plane, so no two threads write
// the same pixel.
template <typename T>
void col2im(T* dx, const T* col, int64_t nb, const ConvGeometry& g) {
  const int64_t L = g.P * g.Q, ld = nb * L;
#pragma omp parallel for if (nb * g.C * g.H * g.W > 65536)
  for (int64_t nc = 0; nc < nb * g.C; ++nc) {
    const int64_t n = nc / g.C, c = nc % g.C;
    T* plane = dx + nc * g.H * g.W;
    std::fill(plane, plane + g.H * g.W, T(0));
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t s = 0; s < g.S; ++s) {
        const T* src = col + ((c * g.R + r) * g.S + s) * ld + n * L;
        int64_t q0, q1;
        valid_q(q0, q1, s, g);
        for (int64_t p = 0; p < g.P; ++p) {
          const int64_t h = p * g.stride - g.pad + r;
          if (h < 0 || h >= g.H) continue;
          T* out = plane + h * g.W + (q0 * g.stride - g.pad + s);
          const T* in = src + p * g.Q;
          if (g.stride == 1) {
#pragma omp simd
            for (int64_t q = q0; q < q1; ++q) out[q - q0] += in[q];
          } else {
            for (int64_t q = q0; q < q1; ++q) out[(q - q0) * g.stride] += in[q];
          }
        }
      }
  }
}

}  // namespace cpu

// The CUDA primitives are float32 only (the public ops reject float64 on a GPU before getting here);
// these overloads let the templates below pass their pointers on, and stop float64 with a message.
#if MINIDL_WITH_CUDA
float* f32(float* p) { return p; }
const float* f32(const float* p) { return p; }
[[noreturn]] float* f32(double*) { throw_error("conv2d: CUDA kernels are float32 only"); }
[[noreturn]] const float* f32(const double*) {
  throw_error("conv2d: CUDA kernels are float32 only");
}
#endif

}  // namespace

// ---------------------------------------------------------------- device-generic primitives

template <typename T>
void im2col(Device dev, T* col, const T* x, int64_t nb, const ConvGeometry& g) {
  if (dev.is_cpu()) return cpu::im2col(col, x, nb, g);
  MINIDL_IF_CUDA(cuda::im2col(f32(col), f32(x), nb, g, cuda_context(dev)));
}

template <typename T>
void col2im(Device dev, T* dx, const T* col, int64_t nb, const ConvGeometry& g) {
  if (dev.is_cpu()) return cpu::col2im(dx, col, nb, g);
  MINIDL_IF_CUDA(cuda::col2im(f32(dx), f32(col), nb, g, cuda_context(dev)));
}

#define MINIDL_INSTANTIATE_CONV_PRIMITIVES(T)                                  \
  template void im2col<T>(Device, T*, const T*, int64_t, const ConvGeometry&); \
  template void col2im<T>(Device, T*, const T*, int64_t, const ConvGeometry&);

MINIDL_INSTANTIATE_CONV_PRIMITIVES(float)
MINIDL_INSTANTIATE_CONV_PRIMITIVES(double)
#undef MINIDL_INSTANTIATE_CONV_PRIMITIVES

// ---------------------------------------------------------------- im2col + GEMM

namespace {

// The products of a chunk of nc images (ncL = nc * P * Q columns), row-major, shared by the
// float32/float64 path and the 16-bit CUDA path:
//   forward:          Y' (K, ncL) = W (K, CRS) * col (CRS, ncL)
//   backward weight:  dW (K, CRS) += dY' (K, ncL) * col^T (ncL, CRS)
GemmShape forward_product(const ConvGeometry& g, int64_t ncL) {
  const int64_t CRS = g.C * g.R * g.S;
  GemmShape s;
  s.M = g.K;
  s.N = ncL;
  s.K = CRS;
  s.lda = CRS;
  s.ldb = ncL;
  s.ldc = ncL;
  return s;
}

GemmShape weight_product(const ConvGeometry& g, int64_t ncL) {
  const int64_t CRS = g.C * g.R * g.S;
  GemmShape s;
  s.trans_b = true;
  s.M = g.K;
  s.N = CRS;
  s.K = ncL;
  s.lda = ncL;
  s.ldb = ncL;
  s.ldc = CRS;
  return s;
}

template <typename T>
void forward_im2col(T* y, const T* x, const T* w, const T* bias, const ConvGeometry& g, Device dev,
                    Backend b) {
  const int64_t CRS = g.C * g.R * g.S, L = g.P * g.Q;
  const int64_t nb = images_per_chunk(g, sizeof(T), dev);
  Tensor col = Tensor::empty(Shape{CRS, nb * L}, dtype_v<T>, dev);
  Tensor yk = Tensor::empty(Shape{g.K, nb * L}, dtype_v<T>, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    im2col<T>(dev, col.data<T>(), x + n0 * g.C * g.H * g.W, nc, g);
    // Y' (K, nc*L) = W (K, CRS) * col (CRS, nc*L)
    gemm<T>(b, dev, forward_product(g, nc * L), T(1), w, col.data<T>(), T(0), yk.data<T>());
    knl_to_nkl<T>(dev, y + n0 * g.K * L, yk.data<T>(), bias, nc, g.K, L);
  }
}

template <typename T>
void backward_data_im2col(T* dx, const T* dy, const T* w, const ConvGeometry& g, Device dev,
                          Backend b) {
  const int64_t CRS = g.C * g.R * g.S, L = g.P * g.Q;
  const int64_t nb = images_per_chunk(g, sizeof(T), dev);
  Tensor dcol = Tensor::empty(Shape{CRS, nb * L}, dtype_v<T>, dev);
  Tensor dyk = Tensor::empty(Shape{g.K, nb * L}, dtype_v<T>, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    nkl_to_knl<T>(dev, dyk.data<T>(), dy + n0 * g.K * L, nc, g.K, L);
    // dcol (CRS, nc*L) = W^T (CRS, K) * dY' (K, nc*L)
    GemmShape s;
    s.trans_a = true;
    s.M = CRS;
    s.N = nc * L;
    s.K = g.K;
    s.lda = CRS;
    s.ldb = nc * L;
    s.ldc = nc * L;
    gemm<T>(b, dev, s, T(1), w, dyk.data<T>(), T(0), dcol.data<T>());
    col2im<T>(dev, dx + n0 * g.C * g.H * g.W, dcol.data<T>(), nc, g);
  }
}

template <typename T>
void backward_weight_im2col(T* dw, const T* dy, const T* x, const ConvGeometry& g, Device dev,
                            Backend b) {
  const int64_t CRS = g.C * g.R * g.S, L = g.P * g.Q;
  const int64_t nb = images_per_chunk(g, sizeof(T), dev);
  Tensor col = Tensor::empty(Shape{CRS, nb * L}, dtype_v<T>, dev);
  Tensor dyk = Tensor::empty(Shape{g.K, nb * L}, dtype_v<T>, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    im2col<T>(dev, col.data<T>(), x + n0 * g.C * g.H * g.W, nc, g);
    nkl_to_knl<T>(dev, dyk.data<T>(), dy + n0 * g.K * L, nc, g.K, L);
    // dW (K, CRS) += dY' (K, nc*L) * col^T (nc*L, CRS); beta = 1 accumulates over chunks and calls.
    gemm<T>(b, dev, weight_product(g, nc * L), T(1), dyk.data<T>(), col.data<T>(), T(1), dw);
  }
}

// ---------------------------------------------------------------- 1x1, stride 1, no padding (CPU)
// col would be x itself, so the products read x and write y in place: per image n,
//   Y_n (K, L) = W (K, C) X_n (C, L),  dX_n (C, L) = W^T dY_n,  dW (K, C) += dY_n X_n^T.

bool is_pointwise(const ConvGeometry& g, Backend b) {
  return b == Backend::CpuReference && g.R == 1 && g.S == 1 && g.stride == 1 && g.pad == 0;
}

template <typename T>
void forward_pointwise(T* y, const T* x, const T* w, const T* bias, const ConvGeometry& g,
                       Device dev, Backend b) {
  const int64_t L = g.H * g.W;
  GemmShape s;
  s.M = g.K;
  s.N = L;
  s.K = g.C;
  s.lda = g.C;
  s.ldb = L;
  s.ldc = L;
  s.batch = g.N;
  s.stride_b = g.C * L;
  s.stride_c = g.K * L;
  gemm<T>(b, dev, s, T(1), w, x, T(0), y);
  if (!bias) return;
#pragma omp parallel for if (g.N * g.K * L > 65536)
  for (int64_t nk = 0; nk < g.N * g.K; ++nk) {
    const T b = bias[nk % g.K];
    T* row = y + nk * L;
    for (int64_t l = 0; l < L; ++l) row[l] += b;
  }
}

template <typename T>
void backward_data_pointwise(T* dx, const T* dy, const T* w, const ConvGeometry& g, Device dev,
                             Backend b) {
  const int64_t L = g.H * g.W;
  GemmShape s;
  s.trans_a = true;
  s.M = g.C;
  s.N = L;
  s.K = g.K;
  s.lda = g.C;
  s.ldb = L;
  s.ldc = L;
  s.batch = g.N;
  s.stride_b = g.K * L;
  s.stride_c = g.C * L;
  gemm<T>(b, dev, s, T(1), w, dy, T(0), dx);
}

template <typename T>
void backward_weight_pointwise(T* dw, const T* dy, const T* x, const ConvGeometry& g, Device dev,
                               Backend b) {
  const int64_t L = g.H * g.W;
  GemmShape s;
  s.trans_b = true;
  s.M = g.K;
  s.N = g.C;
  s.K = L;
  s.lda = L;
  s.ldb = L;
  s.ldc = g.C;
  // One product per image, each adding into dw (beta = 1).
  for (int64_t n = 0; n < g.N; ++n)
    gemm<T>(b, dev, s, T(1), dy + n * g.K * L, x + n * g.C * L, T(1), dw);
}

// `t` must live where `ref` does and have its dtype. Which dtypes a backend takes is the op table's
// (check_backend: its error names the op, the backend and the fix).
void check_like(const Tensor& t, const Tensor& ref, const char* who, const char* what) {
  check_same_device(t, ref, who);
  check_dtype(t, ref.dtype(), who, what);
}

// The float32 parts of a low-precision convolution (bias, weight and bias gradients: the float32
// master weights' side, convert.h) must live where `ref` does and be float32; at float32 and
// float64 they have ref's dtype.
void check_master(const Tensor& t, const Tensor& ref, const char* who, const char* what) {
  check_same_device(t, ref, who);
  check_dtype(t, is_low_precision(ref.dtype()) ? DType::F32 : ref.dtype(), who, what);
}

// cpu-reference at bfloat16/float16: the float32 algorithm on float32 copies of the 16-bit inputs
// (exact), its float32 result rounded once into the 16-bit output.
bool via_float32(Backend b, DType t) { return b == Backend::CpuReference && is_low_precision(t); }

// ---------------------------------------------------------------- 16-bit im2col + GEMM (CUDA)
// cuda-handwritten and cuda-cublas at bfloat16/float16 (conv2d.h): 16-bit col, products on
// gemm_lowp into float32, float32 bias/col2im/layout on the results, outputs rounded once.
#if MINIDL_WITH_CUDA
bool via_lowp_gemm(Backend b, DType t) {
  return is_low_precision(t) && (b == Backend::CudaHandwritten || b == Backend::CudaCublas);
}

const uint16_t* bits(const Tensor& t) { return static_cast<const uint16_t*>(t.raw_data()); }
uint16_t* bits(Tensor& t) { return static_cast<uint16_t*>(t.raw_data()); }

void forward_lowp(Tensor& y, const Tensor& x, const Tensor& w, const float* bias,
                  const ConvGeometry& g, Backend b) {
  const Device dev = x.device();
  const DType t = x.dtype();
  CudaContext& ctx = cuda_context(dev);
  const int64_t CRS = g.C * g.R * g.S, L = g.P * g.Q;
  const int64_t nb = images_per_chunk(g, sizeof(uint16_t), dev);
  Tensor col = Tensor::empty(Shape{CRS, nb * L}, t, dev);
  Tensor yk = Tensor::empty(Shape{g.K, nb * L}, DType::F32, dev);
  Tensor y32 = Tensor::empty(Shape{nb * g.K * L}, DType::F32, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    cuda::im2col16(bits(col), bits(x) + n0 * g.C * g.H * g.W, nc, g, ctx);
    // Y' (K, nc*L) = W (K, CRS) * col (CRS, nc*L), float32
    gemm_lowp(b, dev, forward_product(g, nc * L), t, 1.f, w.raw_data(), col.raw_data(), 0.f,
              yk.data<float>());
    knl_to_nkl<float>(dev, y32.data<float>(), yk.data<float>(), bias, nc, g.K, L);
    cuda::convert(bits(y) + n0 * g.K * L, t, y32.data<float>(), DType::F32, nc * g.K * L, ctx);
  }
}

void backward_data_lowp(Tensor& dx, const Tensor& dy, const Tensor& w, const ConvGeometry& g,
                        Backend b) {
  const Device dev = dy.device();
  const DType t = dy.dtype();
  CudaContext& ctx = cuda_context(dev);
  const int64_t CRS = g.C * g.R * g.S, L = g.P * g.Q;
  const int64_t nb = images_per_chunk(g, sizeof(float), dev);
  Tensor dcol = Tensor::empty(Shape{CRS, nb * L}, DType::F32, dev);
  Tensor dx32 = Tensor::empty(Shape{nb * g.C * g.H * g.W}, DType::F32, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    // Per image n: dcol[:, n*L : (n+1)*L] (CRS, L) = W^T (CRS, K) * dY_n (K, L), dY_n read in
    // place from dy (n, K, L): one strided batch, W repeated (stride 0).
    GemmShape s;
    s.trans_a = true;
    s.M = CRS;
    s.N = L;
    s.K = g.K;
    s.lda = CRS;
    s.ldb = L;
    s.ldc = nc * L;
    s.batch = nc;
    s.stride_a = 0;
    s.stride_b = g.K * L;
    s.stride_c = L;
    gemm_lowp(b, dev, s, t, 1.f, w.raw_data(), bits(dy) + n0 * g.K * L, 0.f, dcol.data<float>());
    col2im<float>(dev, dx32.data<float>(), dcol.data<float>(), nc, g);
    cuda::convert(bits(dx) + n0 * g.C * g.H * g.W, t, dx32.data<float>(), DType::F32,
                  nc * g.C * g.H * g.W, ctx);
  }
}

void backward_weight_lowp(float* dw, const Tensor& dy, const Tensor& x, const ConvGeometry& g,
                          Backend b) {
  const Device dev = dy.device();
  const DType t = dy.dtype();
  CudaContext& ctx = cuda_context(dev);
  const int64_t CRS = g.C * g.R * g.S, L = g.P * g.Q;
  const int64_t nb = images_per_chunk(g, sizeof(uint16_t), dev);
  Tensor col = Tensor::empty(Shape{CRS, nb * L}, t, dev);
  Tensor dyk = Tensor::empty(Shape{g.K, nb * L}, t, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    cuda::im2col16(bits(col), bits(x) + n0 * g.C * g.H * g.W, nc, g, ctx);
    cuda::nkl_to_knl16(bits(dyk), bits(dy) + n0 * g.K * L, nc, g.K, L, ctx);
    // dW (K, CRS) += dY' (K, nc*L) * col^T (nc*L, CRS), into the float32 dw (beta = 1).
    gemm_lowp(b, dev, weight_product(g, nc * L), t, 1.f, dyk.raw_data(), col.raw_data(), 1.f, dw);
  }
}
#else
bool via_lowp_gemm(Backend, DType) { return false; }
void forward_lowp(Tensor&, const Tensor&, const Tensor&, const float*, const ConvGeometry&,
                  Backend) {}
void backward_data_lowp(Tensor&, const Tensor&, const Tensor&, const ConvGeometry&, Backend) {}
void backward_weight_lowp(float*, const Tensor&, const Tensor&, const ConvGeometry&, Backend) {}
#endif

}  // namespace

// ---------------------------------------------------------------- public ops

const OpInfo& conv2d_op() {
  static const OpInfo op{
      "conv2d",
      "`conv2d_forward`, `conv2d_backward_data`, `conv2d_backward_weight`",
      {{Backend::CpuReference,
        "im2col + OpenBLAS; a 1x1 stride-1 convolution as one product per image; bfloat16 and "
        "float16 as float32 copies",
        {DType::F32, DType::F64, DType::BF16, DType::F16}},
       {Backend::CpuFast, "oneDNN convolution primitives, one per shape, cached",
        {DType::F32, DType::BF16}},
       {Backend::CudaHandwritten,
        "im2col + our SGEMM; bfloat16/float16: 16-bit im2col + our tensor-core product",
        {DType::F32, DType::BF16, DType::F16}},
       {Backend::CudaCublas, "im2col + cuBLAS; bfloat16/float16: 16-bit im2col + cublasGemmEx",
        {DType::F32, DType::BF16, DType::F16}},
       {Backend::CudaVendor, "cuDNN, algorithms chosen once per shape and cached"}}};
  return op;
}

Backend select_conv2d_backend(const Device& d, DType dtype) {
  return select_backend(conv2d_op(), d, dtype);
}

void conv2d_forward(Tensor& y, const Tensor& x, const Tensor& w, const Tensor* bias,
                    Conv2dParams p) {
  conv2d_forward(select_conv2d_backend(x.device(), x.dtype()), y, x, w, bias, p);
}

void conv2d_forward(Backend b, Tensor& y, const Tensor& x, const Tensor& w, const Tensor* bias,
                    Conv2dParams p) {
  const char* who = "conv2d_forward";
  check_layout(x, Layout::NCHW, who, "x (its channels-last form is not built yet)");
  const ConvGeometry g = ConvGeometry::make(x.shape(), w.shape(), p, who);
  check_shape(y, Shape{g.N, g.K, g.P, g.Q}, who, "output");
  check_like(w, x, who, "weight");
  check_like(y, x, who, "output");
  if (bias) {
    check_shape(*bias, Shape{g.K}, who, "bias");
    check_master(*bias, x, who, "bias");
  }
  check_backend(conv2d_op(), b, x.device(), x.dtype(), who);
  if (g.N == 0) return;
  if (via_float32(b, x.dtype())) {
    Tensor y32 = Tensor::empty(y.shape(), DType::F32, y.device());
    conv2d_forward(b, y32, to_dtype(x, DType::F32), to_dtype(w, DType::F32), bias, p);
    return convert(b, y, y32);
  }
  const float* bias32 = bias && bias->dtype() == DType::F32 ? bias->data<float>() : nullptr;
  if (via_lowp_gemm(b, x.dtype())) return forward_lowp(y, x, w, bias32, g, b);
  switch (b) {
    case Backend::CudaVendor:
      MINIDL_IF_CUDA(cuda::conv2d_forward_cudnn(y.data<float>(), x.data<float>(), w.data<float>(),
                                                bias32, g, cuda_context(x.device())));
      return;
    case Backend::CpuFast:
      MINIDL_IF_DNNL(
          onednn::conv2d_forward(y.raw_data(), x.raw_data(), w.raw_data(), bias32, g, x.dtype()));
      return;
    default:
      dispatch_floating(x.dtype(), who, [&]<typename T>() {
        const T* bias_t = bias ? bias->data<T>() : nullptr;
        if (is_pointwise(g, b))
          return forward_pointwise<T>(y.data<T>(), x.data<T>(), w.data<T>(), bias_t, g, x.device(),
                                      b);
        forward_im2col<T>(y.data<T>(), x.data<T>(), w.data<T>(), bias_t, g, x.device(), b);
      });
  }
}

void conv2d_backward_data(Tensor& dx, const Tensor& dy, const Tensor& w, Conv2dParams p) {
  conv2d_backward_data(select_conv2d_backend(dy.device(), dy.dtype()), dx, dy, w, p);
}

void conv2d_backward_data(Backend b, Tensor& dx, const Tensor& dy, const Tensor& w,
                          Conv2dParams p) {
  const char* who = "conv2d_backward_data";
  check_layout(dy, Layout::NCHW, who, "dy (its channels-last form is not built yet)");
  const ConvGeometry g = ConvGeometry::make(dx.shape(), w.shape(), p, who);
  check_shape(dy, Shape{g.N, g.K, g.P, g.Q}, who, "output gradient");
  check_like(w, dy, who, "weight");
  check_like(dx, dy, who, "input gradient");
  check_backend(conv2d_op(), b, dy.device(), dy.dtype(), who);
  if (g.N == 0) return;
  if (via_float32(b, dy.dtype())) {
    Tensor dx32 = Tensor::empty(dx.shape(), DType::F32, dx.device());
    conv2d_backward_data(b, dx32, to_dtype(dy, DType::F32), to_dtype(w, DType::F32), p);
    return convert(b, dx, dx32);
  }
  if (via_lowp_gemm(b, dy.dtype())) return backward_data_lowp(dx, dy, w, g, b);
  switch (b) {
    case Backend::CudaVendor:
      MINIDL_IF_CUDA(cuda::conv2d_backward_data_cudnn(
          dx.data<float>(), dy.data<float>(), w.data<float>(), g, cuda_context(dy.device())));
      return;
    case Backend::CpuFast:
      MINIDL_IF_DNNL(onednn::conv2d_backward_data(dx.raw_data(), dy.raw_data(), w.raw_data(), g,
                                                  dy.dtype()));
      return;
    default:
      dispatch_floating(dy.dtype(), who, [&]<typename T>() {
        if (is_pointwise(g, b))
          return backward_data_pointwise<T>(dx.data<T>(), dy.data<T>(), w.data<T>(), g, dy.device(),
                                            b);
        backward_data_im2col<T>(dx.data<T>(), dy.data<T>(), w.data<T>(), g, dy.device(), b);
      });
  }
}

void conv2d_backward_weight(Tensor& dw, const Tensor& dy, const Tensor& x, Conv2dParams p) {
  conv2d_backward_weight(select_conv2d_backend(dy.device(), dy.dtype()), dw, dy, x, p);
}

void conv2d_backward_weight(Backend b, Tensor& dw, const Tensor& dy, const Tensor& x,
                            Conv2dParams p) {
  const char* who = "conv2d_backward_weight";
  check_layout(dy, Layout::NCHW, who, "dy (its channels-last form is not built yet)");
  const ConvGeometry g = ConvGeometry::make(x.shape(), dw.shape(), p, who);
  check_shape(dy, Shape{g.N, g.K, g.P, g.Q}, who, "output gradient");
  check_like(x, dy, who, "input");
  check_master(dw, dy, who, "weight gradient");
  check_backend(conv2d_op(), b, dy.device(), dy.dtype(), who);
  if (g.N == 0) return;
  if (via_float32(b, dy.dtype()))
    return conv2d_backward_weight(b, dw, to_dtype(dy, DType::F32), to_dtype(x, DType::F32), p);
  if (via_lowp_gemm(b, dy.dtype())) return backward_weight_lowp(dw.data<float>(), dy, x, g, b);
  switch (b) {
    case Backend::CudaVendor:
      MINIDL_IF_CUDA(cuda::conv2d_backward_weight_cudnn(
          dw.data<float>(), dy.data<float>(), x.data<float>(), g, cuda_context(dy.device())));
      return;
    case Backend::CpuFast:
      MINIDL_IF_DNNL(onednn::conv2d_backward_weight(dw.data<float>(), dy.raw_data(), x.raw_data(),
                                                    g, dy.dtype()));
      return;
    default:
      dispatch_floating(dy.dtype(), who, [&]<typename T>() {
        if (is_pointwise(g, b))
          return backward_weight_pointwise<T>(dw.data<T>(), dy.data<T>(), x.data<T>(), g,
                                              dy.device(), b);
        backward_weight_im2col<T>(dw.data<T>(), dy.data<T>(), x.data<T>(), g, dy.device(), b);
      });
  }
}

// The bias gradient is a plain channel sum on every backend (cuDNN's cudnnConvolutionBackwardBias
// would overwrite, and is no faster): kernels/layout.h.
void conv2d_backward_bias(Tensor& db, const Tensor& dy) {
  const char* who = "conv2d_backward_bias";
  check_layout(dy, Layout::NCHW, who, "dy (its channels-last form is not built yet)");
  MINIDL_CHECK(dy.dim() == 4, who, ": output gradient must be 4-D (N, K, P, Q), got shape ",
               dy.shape());
  check_shape(db, Shape{dy.size(1)}, who, "bias gradient");
  check_master(db, dy, who, "bias gradient");
  if (dy.is_cuda() && !is_low_precision(dy.dtype()))
    check_dtype(dy, DType::F32, who, "CUDA output gradient");
  // A 16-bit dy is summed in float32 (a float32 copy: exact).
  const Tensor dy_sum = to_dtype(dy, db.dtype());
  channel_sum_accumulate(db, dy_sum.view(Shape{dy.size(0), dy.size(1), dy.size(2) * dy.size(3)}));
}

}  // namespace minidl

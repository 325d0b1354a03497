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
// Channels-last (NHWC, conv2d.h) changes only the arrangement: col holds one row per output pixel,
// and y and dy of a chunk are already (nb*P*Q, K) matrices, so the products read dy in place and
// the forward's rearrangement is a transpose (knl_to_nkl with every pixel an "image" of L = 1).
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

ConvGeometry ConvGeometry::make(const Shape& x, const Shape& w, Conv2dParams p, const char* who,
                                Layout layout) {
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
  g.layout = layout;
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

// NHWC: one row of col per output pixel j = (n, p, q), its C*R*S columns in w's (c, r, s) order
// (column c*R*S + r*S + s), so the products use w as it is. A window tap (r, s) outside the input
// is the zero padding for all C channels. Each row is written by one thread.
template <typename T>
void im2col_nhwc(T* col, const T* x, int64_t nb, const ConvGeometry& g) {
  const int64_t RS = g.R * g.S, CRS = g.C * RS, L = g.P * g.Q;
#pragma omp parallel for if (nb * L * CRS > 65536)
  for (int64_t j = 0; j < nb * L; ++j) {
    const int64_t n = j / L, p = (j % L) / g.Q, q = j % g.Q;
    T* row = col + j * CRS;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = p * g.stride - g.pad + r;
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t w = q * g.stride - g.pad + s;
        T* out = row + r * g.S + s;
        if (h < 0 || h >= g.H || w < 0 || w >= g.W) {
          for (int64_t c = 0; c < g.C; ++c) out[c * RS] = T(0);
          continue;
        }
        const T* in = x + ((n * g.H + h) * g.W + w) * g.C;  // the C channels of pixel (n, h, w)
        for (int64_t c = 0; c < g.C; ++c) out[c * RS] = in[c];
      }
    }
  }
}

// The adjoint of im2col_nhwc, as a gather: pixel (n, h, w) sums, for each of its C channels, the
// col entries copied from it: the output positions (p, q) whose window covers it, at tap
// r = h + pad - p*stride, s = w + pad - q*stride (valid p: 0 <= r < R). One thread per pixel, so
// no two threads write the same element, and dx is overwritten.
template <typename T>
void col2im_nhwc(T* dx, const T* col, int64_t nb, const ConvGeometry& g) {
  const int64_t RS = g.R * g.S, CRS = g.C * RS, HW = g.H * g.W;
#pragma omp parallel for if (nb * g.C * HW > 65536)
  for (int64_t pix = 0; pix < nb * HW; ++pix) {
    const int64_t n = pix / HW, h = (pix / g.W) % g.H, w = pix % g.W;
    T* out = dx + pix * g.C;
    std::fill(out, out + g.C, T(0));
    const int64_t hp = h + g.pad, wp = w + g.pad;
    const int64_t p0 = hp < g.R ? 0 : (hp - g.R) / g.stride + 1;
    const int64_t p1 = std::min(hp / g.stride + 1, g.P);
    const int64_t q0 = wp < g.S ? 0 : (wp - g.S) / g.stride + 1;
    const int64_t q1 = std::min(wp / g.stride + 1, g.Q);
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t r = hp - p * g.stride, s = wp - q * g.stride;
        const T* in = col + ((n * g.P + p) * g.Q + q) * CRS + r * g.S + s;
        for (int64_t c = 0; c < g.C; ++c) out[c] += in[c * RS];
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
  if (dev.is_cpu())
    return g.layout == Layout::NHWC ? cpu::im2col_nhwc(col, x, nb, g) : cpu::im2col(col, x, nb, g);
  MINIDL_IF_CUDA(cuda::im2col(f32(col), f32(x), nb, g, cuda_context(dev)));
}

template <typename T>
void col2im(Device dev, T* dx, const T* col, int64_t nb, const ConvGeometry& g) {
  if (dev.is_cpu())
    return g.layout == Layout::NHWC ? cpu::col2im_nhwc(dx, col, nb, g)
                                    : cpu::col2im(dx, col, nb, g);
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

// The products of a chunk of nc images (ncL = nc * P * Q output pixels), row-major, shared by the
// float32/float64 path and the 16-bit CUDA path (arrangements in conv2d.h):
//   forward          NCHW: Y' (K, ncL) = W (K, CRS) * col (CRS, ncL)
//                    NHWC: Y' (K, ncL) = W (K, CRS) * col^T, col (ncL, CRS)
//   backward data    NCHW: dcol (CRS, ncL) = W^T (CRS, K) * dY' (K, ncL)      A = W, B = dY'
//                    NHWC: dcol (ncL, CRS) = dY (ncL, K) * W (K, CRS)        A = dy, B = W
//   backward weight  NCHW: dW (K, CRS) += dY' (K, ncL) * col^T (ncL, CRS)
//                    NHWC: dW (K, CRS) += dY^T (K, ncL) * col (ncL, CRS),     dy read in place
bool nhwc(const ConvGeometry& g) { return g.layout == Layout::NHWC; }

GemmShape forward_product(const ConvGeometry& g, int64_t ncL) {
  const int64_t CRS = g.C * g.R * g.S;
  GemmShape s;
  s.trans_b = nhwc(g);
  s.M = g.K;
  s.N = ncL;
  s.K = CRS;
  s.lda = CRS;
  s.ldb = nhwc(g) ? CRS : ncL;
  s.ldc = ncL;
  return s;
}

GemmShape data_product(const ConvGeometry& g, int64_t ncL) {
  const int64_t CRS = g.C * g.R * g.S;
  GemmShape s;
  if (nhwc(g)) {
    s.M = ncL;
    s.N = CRS;
    s.K = g.K;
    s.lda = g.K;
    s.ldb = CRS;
    s.ldc = CRS;
  } else {
    s.trans_a = true;
    s.M = CRS;
    s.N = ncL;
    s.K = g.K;
    s.lda = CRS;
    s.ldb = ncL;
    s.ldc = ncL;
  }
  return s;
}

GemmShape weight_product(const ConvGeometry& g, int64_t ncL) {
  const int64_t CRS = g.C * g.R * g.S;
  GemmShape s;
  s.trans_a = nhwc(g);
  s.trans_b = !nhwc(g);
  s.M = g.K;
  s.N = CRS;
  s.K = ncL;
  s.lda = nhwc(g) ? g.K : ncL;
  s.ldb = nhwc(g) ? CRS : ncL;
  s.ldc = CRS;
  return s;
}

// Y' (K, nc*L) -> the chunk of y, plus bias[k]: NCHW y is (nc, K, L); NHWC y is (nc*L, K), the
// same rearrangement with each output pixel an image of its own (L = 1).
template <typename T>
void y_from_product(Device dev, T* y, const T* yk, const T* bias, int64_t nc,
                    const ConvGeometry& g) {
  const int64_t L = g.P * g.Q;
  if (nhwc(g)) return knl_to_nkl<T>(dev, y, yk, bias, nc * L, g.K, 1);
  knl_to_nkl<T>(dev, y, yk, bias, nc, g.K, L);
}

template <typename T>
void forward_im2col(T* y, const T* x, const T* w, const T* bias, const ConvGeometry& g, Device dev,
                    Backend b) {
  const int64_t CRS = g.C * g.R * g.S, L = g.P * g.Q;
  const int64_t nb = images_per_chunk(g, sizeof(T), dev);
  Tensor col = Tensor::empty(Shape{CRS * nb * L}, dtype_v<T>, dev);
  Tensor yk = Tensor::empty(Shape{g.K, nb * L}, dtype_v<T>, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    im2col<T>(dev, col.data<T>(), x + n0 * g.C * g.H * g.W, nc, g);
    gemm<T>(b, dev, forward_product(g, nc * L), T(1), w, col.data<T>(), T(0), yk.data<T>());
    y_from_product<T>(dev, y + n0 * g.K * L, yk.data<T>(), bias, nc, g);
  }
}

template <typename T>
void backward_data_im2col(T* dx, const T* dy, const T* w, const ConvGeometry& g, Device dev,
                          Backend b) {
  const int64_t CRS = g.C * g.R * g.S, L = g.P * g.Q;
  const int64_t nb = images_per_chunk(g, sizeof(T), dev);
  Tensor dcol = Tensor::empty(Shape{CRS * nb * L}, dtype_v<T>, dev);
  Tensor dyk = nhwc(g) ? Tensor() : Tensor::empty(Shape{g.K, nb * L}, dtype_v<T>, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    const GemmShape s = data_product(g, nc * L);
    if (nhwc(g)) {
      gemm<T>(b, dev, s, T(1), dy + n0 * g.K * L, w, T(0), dcol.data<T>());
    } else {
      nkl_to_knl<T>(dev, dyk.data<T>(), dy + n0 * g.K * L, nc, g.K, L);
      gemm<T>(b, dev, s, T(1), w, dyk.data<T>(), T(0), dcol.data<T>());
    }
    col2im<T>(dev, dx + n0 * g.C * g.H * g.W, dcol.data<T>(), nc, g);
  }
}

template <typename T>
void backward_weight_im2col(T* dw, const T* dy, const T* x, const ConvGeometry& g, Device dev,
                            Backend b) {
  const int64_t CRS = g.C * g.R * g.S, L = g.P * g.Q;
  const int64_t nb = images_per_chunk(g, sizeof(T), dev);
  Tensor col = Tensor::empty(Shape{CRS * nb * L}, dtype_v<T>, dev);
  Tensor dyk = nhwc(g) ? Tensor() : Tensor::empty(Shape{g.K, nb * L}, dtype_v<T>, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    im2col<T>(dev, col.data<T>(), x + n0 * g.C * g.H * g.W, nc, g);
    const T* dy_chunk = dy + n0 * g.K * L;
    if (!nhwc(g)) {
      nkl_to_knl<T>(dev, dyk.data<T>(), dy_chunk, nc, g.K, L);
      dy_chunk = dyk.data<T>();
    }
    // beta = 1 accumulates over chunks and calls.
    gemm<T>(b, dev, weight_product(g, nc * L), T(1), dy_chunk, col.data<T>(), T(1), dw);
  }
}

// ---------------------------------------------------------------- 1x1, stride 1, no padding (CPU)
// col would be x itself, so the products read x and write y in place. NCHW, per image n:
//   Y_n (K, L) = W (K, C) X_n (C, L),  dX_n (C, L) = W^T dY_n,  dW (K, C) += dY_n X_n^T.
// NHWC: x is the (N*L, C) matrix X (the NHWC col itself), y the (N*L, K) matrix Y:
//   Y = X W^T,  dX = dY W,  dW += dY^T X     (one product for the whole batch).

bool is_pointwise(const ConvGeometry& g, Backend b) {
  return b == Backend::CpuReference && g.R == 1 && g.S == 1 && g.stride == 1 && g.pad == 0;
}

template <typename T>
void forward_pointwise(T* y, const T* x, const T* w, const T* bias, const ConvGeometry& g,
                       Device dev, Backend b) {
  const int64_t L = g.H * g.W;
  GemmShape s;
  if (nhwc(g)) {
    s.trans_b = true;
    s.M = g.N * L;
    s.N = g.K;
    s.K = g.C;
    s.lda = g.C;
    s.ldb = g.C;
    s.ldc = g.K;
  } else {
    s.M = g.K;
    s.N = L;
    s.K = g.C;
    s.lda = g.C;
    s.ldb = L;
    s.ldc = L;
    s.batch = g.N;
    s.stride_b = g.C * L;
    s.stride_c = g.K * L;
  }
  gemm<T>(b, dev, s, T(1), nhwc(g) ? x : w, nhwc(g) ? w : x, T(0), y);
  // NCHW: rows (n, k) of L pixels take bias[k]; NHWC: rows (n, l) of K channels take bias.
  if (!bias) return;
#pragma omp parallel for if (g.N * g.K * L > 65536)
  for (int64_t row = 0; row < g.N * (nhwc(g) ? L : g.K); ++row) {
    if (nhwc(g)) {
      T* out = y + row * g.K;
      for (int64_t k = 0; k < g.K; ++k) out[k] += bias[k];
    } else {
      const T bk = bias[row % g.K];
      T* out = y + row * L;
      for (int64_t l = 0; l < L; ++l) out[l] += bk;
    }
  }
}

template <typename T>
void backward_data_pointwise(T* dx, const T* dy, const T* w, const ConvGeometry& g, Device dev,
                             Backend b) {
  const int64_t L = g.H * g.W;
  GemmShape s;
  if (nhwc(g)) {
    s.M = g.N * L;
    s.N = g.C;
    s.K = g.K;
    s.lda = g.K;
    s.ldb = g.C;
    s.ldc = g.C;
    return gemm<T>(b, dev, s, T(1), dy, w, T(0), dx);
  }
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
  s.M = g.K;
  s.N = g.C;
  s.ldc = g.C;
  if (nhwc(g)) {
    s.trans_a = true;
    s.K = g.N * L;
    s.lda = g.K;
    s.ldb = g.C;
    return gemm<T>(b, dev, s, T(1), dy, x, T(1), dw);
  }
  s.trans_b = true;
  s.K = L;
  s.lda = L;
  s.ldb = L;
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

// The layout of a call (conv2d.h): the activations `a` (x, resp. dy) and `b` (y, dx, resp. x)
// share one. It is a's, unless a's two layouts coincide (C == 1 or H*W == 1, a label only), then
// b's; b must have it too or coincide, else the error names the op and both tensors.
Layout call_layout(const Tensor& a, const Tensor& b, const char* who, const char* a_what,
                   const char* b_what) {
  const Layout l = layouts_coincide(a.shape()) ? b.layout() : a.layout();
  MINIDL_CHECK(b.layout() == l || layouts_coincide(b.shape()), who, ": ", a_what, " is ",
               a.describe(), " but ", b_what, " is ", b.describe(),
               "; the activations of one call share one layout (convert one with to_layout)");
  return l;
}

// w and dw stay (K, C, R, S) in NCHW (PyTorch's OIHW) whatever the activations' layout.
void check_weight_layout(const Tensor& w, const char* who, const char* what) {
  check_layout(w, Layout::NCHW, who,
               str(what,
                   " (a convolution's weight is (K, C, R, S) in NCHW, PyTorch's OIHW, in "
                   "both activation layouts)")
                   .c_str());
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
  Tensor col = Tensor::empty(Shape{CRS * nb * L}, t, dev);
  Tensor yk = Tensor::empty(Shape{g.K, nb * L}, DType::F32, dev);
  Tensor y32 = Tensor::empty(Shape{nb * g.K * L}, DType::F32, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    cuda::im2col16(bits(col), bits(x) + n0 * g.C * g.H * g.W, nc, g, ctx);
    // Y' (K, nc*L) = W (K, CRS) * col (either arrangement), float32
    gemm_lowp(b, dev, forward_product(g, nc * L), t, 1.f, w.raw_data(), col.raw_data(), 0.f,
              yk.data<float>());
    y_from_product<float>(dev, y32.data<float>(), yk.data<float>(), bias, nc, g);
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
  Tensor dcol = Tensor::empty(Shape{CRS * nb * L}, DType::F32, dev);
  Tensor dx32 = Tensor::empty(Shape{nb * g.C * g.H * g.W}, DType::F32, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    const uint16_t* dy_chunk = bits(dy) + n0 * g.K * L;
    if (nhwc(g)) {
      // dcol (nc*L, CRS) = dY (nc*L, K) * W (K, CRS), dy read in place.
      gemm_lowp(b, dev, data_product(g, nc * L), t, 1.f, dy_chunk, w.raw_data(), 0.f,
                dcol.data<float>());
    } else {
      // Per image n: dcol[:, n*L : (n+1)*L] (CRS, L) = W^T (CRS, K) * dY_n (K, L), dY_n read in
      // place from dy (n, K, L): one strided batch, W repeated (stride 0).
      GemmShape s = data_product(g, L);
      s.ldc = nc * L;
      s.batch = nc;
      s.stride_a = 0;
      s.stride_b = g.K * L;
      s.stride_c = L;
      gemm_lowp(b, dev, s, t, 1.f, w.raw_data(), dy_chunk, 0.f, dcol.data<float>());
    }
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
  Tensor col = Tensor::empty(Shape{CRS * nb * L}, t, dev);
  Tensor dyk = nhwc(g) ? Tensor() : Tensor::empty(Shape{g.K, nb * L}, t, dev);
  for (int64_t n0 = 0; n0 < g.N; n0 += nb) {
    const int64_t nc = std::min(nb, g.N - n0);
    cuda::im2col16(bits(col), bits(x) + n0 * g.C * g.H * g.W, nc, g, ctx);
    const uint16_t* dy_chunk = bits(dy) + n0 * g.K * L;
    if (!nhwc(g)) {
      cuda::nkl_to_knl16(bits(dyk), dy_chunk, nc, g.K, L, ctx);
      dy_chunk = bits(dyk);
    }
    // dW (K, CRS) += dY' * col^T (NCHW) or dY^T * col (NHWC), into the float32 dw (beta = 1).
    gemm_lowp(b, dev, weight_product(g, nc * L), t, 1.f, dy_chunk, col.raw_data(), 1.f, dw);
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
       {Backend::CudaVendor,
        "cuDNN, algorithms chosen once per shape and cached; bfloat16/float16: cuDNN's forward "
        "(without bias) and backward data on tensor-op math, the weight gradient and a biased "
        "forward as cuda-cublas computes them (float32 dw, one rounding of y)",
        {DType::F32, DType::BF16, DType::F16}}}};
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
  const Layout layout = call_layout(x, y, who, "input", "output");
  const ConvGeometry g = ConvGeometry::make(x.shape(), w.shape(), p, who, layout);
  check_weight_layout(w, who, "weight");
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
    Tensor y32 = Tensor::empty(y.shape(), DType::F32, y.device(), layout);
    conv2d_forward(b, y32, to_dtype(x, DType::F32), to_dtype(w, DType::F32), bias, p);
    return convert(b, y, y32);
  }
  const float* bias32 = bias && bias->dtype() == DType::F32 ? bias->data<float>() : nullptr;
  if (via_lowp_gemm(b, x.dtype())) return forward_lowp(y, x, w, bias32, g, b);
  // cuda-vendor at 16 bits (the op table's row): cuDNN would round y before the float32 bias is
  // added (two roundings), so a biased forward runs cuda-cublas's, which adds it before rounding.
  if (b == Backend::CudaVendor && is_low_precision(x.dtype())) {
    if (bias32) return forward_lowp(y, x, w, bias32, g, Backend::CudaCublas);
    MINIDL_IF_CUDA(cuda::conv2d_forward_cudnn16(y.raw_data(), x.raw_data(), w.raw_data(),
                                                x.dtype(), g, cuda_context(x.device())));
    return;
  }
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
  const Layout layout = call_layout(dy, dx, who, "output gradient", "input gradient");
  const ConvGeometry g = ConvGeometry::make(dx.shape(), w.shape(), p, who, layout);
  check_weight_layout(w, who, "weight");
  check_shape(dy, Shape{g.N, g.K, g.P, g.Q}, who, "output gradient");
  check_like(w, dy, who, "weight");
  check_like(dx, dy, who, "input gradient");
  check_backend(conv2d_op(), b, dy.device(), dy.dtype(), who);
  if (g.N == 0) return;
  if (via_float32(b, dy.dtype())) {
    Tensor dx32 = Tensor::empty(dx.shape(), DType::F32, dx.device(), layout);
    conv2d_backward_data(b, dx32, to_dtype(dy, DType::F32), to_dtype(w, DType::F32), p);
    return convert(b, dx, dx32);
  }
  if (via_lowp_gemm(b, dy.dtype())) return backward_data_lowp(dx, dy, w, g, b);
  if (b == Backend::CudaVendor && is_low_precision(dy.dtype())) {
    MINIDL_IF_CUDA(cuda::conv2d_backward_data_cudnn16(dx.raw_data(), dy.raw_data(), w.raw_data(),
                                                      dy.dtype(), g, cuda_context(dy.device())));
    return;
  }
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
  const Layout layout = call_layout(dy, x, who, "output gradient", "input");
  const ConvGeometry g = ConvGeometry::make(x.shape(), dw.shape(), p, who, layout);
  check_weight_layout(dw, who, "weight gradient");
  check_shape(dy, Shape{g.N, g.K, g.P, g.Q}, who, "output gradient");
  check_like(x, dy, who, "input");
  check_master(dw, dy, who, "weight gradient");
  check_backend(conv2d_op(), b, dy.device(), dy.dtype(), who);
  if (g.N == 0) return;
  if (via_float32(b, dy.dtype()))
    return conv2d_backward_weight(b, dw, to_dtype(dy, DType::F32), to_dtype(x, DType::F32), p);
  if (via_lowp_gemm(b, dy.dtype())) return backward_weight_lowp(dw.data<float>(), dy, x, g, b);
  // cuda-vendor at 16 bits: cuDNN's 16-bit filter gradient is written in 16 bits, which would
  // round every step's dw before the float32 master gradient; cuda-cublas's keeps it float32.
  if (b == Backend::CudaVendor && is_low_precision(dy.dtype()))
    return backward_weight_lowp(dw.data<float>(), dy, x, g, Backend::CudaCublas);
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
// would overwrite, and is no faster): kernels/layout.h. NCHW dy is (N, K, P*Q); NHWC dy is
// (N*P*Q, K, 1), the same sum with every output pixel an image of its own.
void conv2d_backward_bias(Tensor& db, const Tensor& dy) {
  const char* who = "conv2d_backward_bias";
  MINIDL_CHECK(dy.dim() == 4, who, ": output gradient must be 4-D (N, K, P, Q), got shape ",
               dy.shape());
  check_shape(db, Shape{dy.size(1)}, who, "bias gradient");
  check_master(db, dy, who, "bias gradient");
  if (dy.is_cuda() && !is_low_precision(dy.dtype()))
    check_dtype(dy, DType::F32, who, "CUDA output gradient");
  // A 16-bit dy is summed in float32 (a float32 copy: exact).
  const Tensor dy_sum = to_dtype(dy, db.dtype());
  const int64_t L = dy.size(2) * dy.size(3);
  const bool nhwc = dy_sum.layout() == Layout::NHWC;
  dispatch_floating(db.dtype(), who, [&]<typename T>() {
    channel_sum_accumulate<T>(dy.device(), db.data<T>(), dy_sum.data<T>(),
                              nhwc ? dy.size(0) * L : dy.size(0), dy.size(1), nhwc ? 1 : L);
  });
}

}  // namespace minidl

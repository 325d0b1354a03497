// Pooling: shape checks, device dispatch and the CPU reference (formulas in pooling.h). The CUDA
// kernels are in pooling.cu.
//
// The CPU reference loops over (n, c) planes with OpenMP: every window lies inside one plane, so
// the backward scatter (dx[window] += ...) never crosses planes and needs no atomics, even where
// windows overlap (stride < kernel, as in AlexNet's 3x3 stride-2 pools). In NHWC a plane's pixels
// lie C elements apart (Geometry::base, step): the forwards run the same loops in the same order
// with that stride (planes of consecutive channels share cache lines and go to the same thread:
// 1.0-1.3x the NCHW time, measured), the backward scatters accumulate a whole image with the
// channels innermost (maxpool2d_backward). Every output gets the same terms in the same order in
// both layouts, so a channels-last tensor gives bit for bit the results of its NCHW copy.
#include "kernels/pooling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace minidl {

Shape pool2d_output_shape(const Shape& x, Pool2dParams p, const char* who) {
  MINIDL_CHECK(x.dim() == 4, who, ": input must be 4-D (N, C, H, W), got ", x);
  MINIDL_CHECK(p.kernel >= 1 && p.stride >= 1 && p.pad >= 0, who,
               ": kernel and stride must be >= 1 and padding >= 0, got k=", p.kernel,
               ", s=", p.stride, ", p=", p.pad);
  // As torch: a window is then never all padding, so max pooling always selects a real pixel.
  MINIDL_CHECK(p.pad <= p.kernel / 2, who, ": padding ", p.pad,
               " must be at most half the kernel size ", p.kernel);
  const int64_t H = x[2], W = x[3];
  MINIDL_CHECK(H + 2 * p.pad >= p.kernel && W + 2 * p.pad >= p.kernel, who, ": input ", x,
               " is smaller than the ", p.kernel, "x", p.kernel, " window (padding ", p.pad,
               "): the output would be empty");
  const int64_t P = (H + 2 * p.pad - p.kernel) / p.stride + 1;
  const int64_t Q = (W + 2 * p.pad - p.kernel) / p.stride + 1;
  return Shape{x[0], x[1], P, Q};
}

namespace cpu {

// T is the storage type; sums and comparisons run in C = compute_t<T> (float for bfloat16 and
// float16, core/half.h) and each output is rounded once. A backward that scatters into dx (max and
// average pooling) accumulates a plane in C and rounds it once at the end.

struct Geometry {
  int64_t NC, C, H, W, P, Q;
  int k, s, pad;
  // Where plane nc (= n*C + c) of a tensor with `pixels` pixels per plane starts, and the distance
  // between its pixels: NCHW nc*pixels and 1, NHWC n*pixels*C + c and C.
  template <bool kNhwc>
  int64_t base(int64_t nc, int64_t pixels) const {
    return kNhwc ? (nc / C) * pixels * C + nc % C : nc * pixels;
  }
  template <bool kNhwc>
  int64_t step() const {
    return kNhwc ? C : 1;
  }
};

// A stretch of dx to accumulate into (a plane in NCHW, an image in NHWC): dx itself when T
// computes in itself, else a C buffer that finish() rounds into dx.
template <typename T>
struct PlaneAccumulator {
  using C = compute_t<T>;
  static constexpr bool direct = std::is_same_v<T, C>;
  T* dst;
  int64_t n;
  std::vector<C> buf;
  PlaneAccumulator(T* d, int64_t count) : dst(d), n(count) {
    if constexpr (!direct) buf.assign(static_cast<size_t>(count), C(0));
    else std::fill(dst, dst + n, T(0));
  }
  C* data() {
    if constexpr (direct) return dst;
    else return buf.data();
  }
  void finish() {
    if constexpr (!direct)
      for (int64_t i = 0; i < n; ++i) dst[i] = narrow<T>(buf[i]);
  }
};

template <typename T, bool kNhwc>
void maxpool2d_forward(T* y, int32_t* argmax, const T* x, const Geometry& g) {
  using C = compute_t<T>;
  const int64_t step = g.step<kNhwc>();
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > 65536)  // threads only pay off on big tensors
  for (int64_t nc = 0; nc < g.NC; ++nc) {
    const T* xp = x + g.base<kNhwc>(nc, g.H * g.W);
    const int64_t yb = g.base<kNhwc>(nc, g.P * g.Q);
    for (int64_t p = 0; p < g.P; ++p)
      for (int64_t q = 0; q < g.Q; ++q) {
        C best = -std::numeric_limits<C>::infinity();
        int64_t arg = -1;
        for (int64_t h = p * g.s - g.pad; h < p * g.s - g.pad + g.k; ++h)
          for (int64_t w = q * g.s - g.pad; w < q * g.s - g.pad + g.k; ++w) {
            if (h < 0 || h >= g.H || w < 0 || w >= g.W) continue;  // padding is never selected
            const C v = widen(xp[(h * g.W + w) * step]);
            // Strictly greater keeps the first maximum on ties. A NaN wins (and stays) so that a
            // diverged activation is passed on, as torch does, rather than hidden.
            if (arg < 0 || v > best || (std::isnan(v) && !std::isnan(best))) {
              best = v;
              arg = h * g.W + w;
            }
          }
        // argmax is the winner's pixel h*W + w in its plane, in both layouts (pooling.h).
        const int64_t o = yb + (p * g.Q + q) * step;
        y[o] = narrow<T>(best);
        argmax[o] = static_cast<int32_t>(arg);
      }
  }
}

// The backward scatters. NCHW: plane by plane. NHWC: a plane's pixels are C apart, so a plane
// accumulator would write dx with stride C (4-8x slower, measured); instead each image (H*W*C
// contiguous values) is one accumulator, filled output pixel by output pixel with the channels
// innermost. Either way every dx element receives the same terms in the same order (output pixels
// in row-major order), so both layouts give the same bits. Threads over planes, resp. images.
template <typename T, bool kNhwc>
void maxpool2d_backward(T* dx, const T* dy, const int32_t* argmax, const Geometry& g) {
  if constexpr (kNhwc) {
    const int64_t C = g.C, HWC = g.H * g.W * C, PQ = g.P * g.Q;
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > 65536)  // threads only pay off on big tensors
    for (int64_t n = 0; n < g.NC / C; ++n) {
      PlaneAccumulator<T> acc(dx + n * HWC, HWC);
      auto* dxi = acc.data();
      for (int64_t j = 0; j < PQ; ++j) {
        const int64_t o = (n * PQ + j) * C;
        for (int64_t c = 0; c < C; ++c) dxi[argmax[o + c] * C + c] += widen(dy[o + c]);
      }
      acc.finish();
    }
  } else {
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > \
                                              65536)  // threads only pay off on big tensors
    for (int64_t nc = 0; nc < g.NC; ++nc) {
      PlaneAccumulator<T> acc(dx + nc * g.H * g.W, g.H * g.W);
      auto* dxp = acc.data();
      for (int64_t o = nc * g.P * g.Q; o < (nc + 1) * g.P * g.Q; ++o)
        dxp[argmax[o]] += widen(dy[o]);
      acc.finish();
    }
  }
}

template <typename T, bool kNhwc>
void avgpool2d_forward(T* y, const T* x, const Geometry& g) {
  const int64_t step = g.step<kNhwc>();
  // Floor-mode windows never reach past the padded border, so every window counts k*k positions
  // (count_include_pad=True divides by k*k, padded zeros included).
  const double inv_area = 1.0 / (g.k * g.k);
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > 65536)  // threads only pay off on big tensors
  for (int64_t nc = 0; nc < g.NC; ++nc) {
    const T* xp = x + g.base<kNhwc>(nc, g.H * g.W);
    T* yp = y + g.base<kNhwc>(nc, g.P * g.Q);
    for (int64_t p = 0; p < g.P; ++p)
      for (int64_t q = 0; q < g.Q; ++q) {
        double sum = 0;
        for (int64_t h = std::max<int64_t>(p * g.s - g.pad, 0);
             h < std::min<int64_t>(p * g.s - g.pad + g.k, g.H); ++h)
          for (int64_t w = std::max<int64_t>(q * g.s - g.pad, 0);
               w < std::min<int64_t>(q * g.s - g.pad + g.k, g.W); ++w)
            sum += widen(xp[(h * g.W + w) * step]);
        yp[(p * g.Q + q) * step] = narrow<T>(static_cast<compute_t<T>>(sum * inv_area));
      }
  }
}

template <typename T, bool kNhwc>
void avgpool2d_backward(T* dx, const T* dy, const Geometry& g) {
  using C = compute_t<T>;
  const C inv_area = C(1) / static_cast<C>(g.k * g.k);
  // The NHWC form accumulates a whole image, channels innermost (see maxpool2d_backward): `ch`
  // channels per pixel, `units` stretches of ch * H * W values.
  const int64_t ch = kNhwc ? g.C : 1, units = g.NC / ch;
#pragma omp parallel for schedule(static) if (g.NC * g.H * g.W > 65536)  // threads only pay off on big tensors
  for (int64_t u = 0; u < units; ++u) {
    PlaneAccumulator<T> acc(dx + u * g.H * g.W * ch, g.H * g.W * ch);
    auto* dxp = acc.data();
    const T* dyp = dy + u * g.P * g.Q * ch;
    for (int64_t p = 0; p < g.P; ++p)
      for (int64_t q = 0; q < g.Q; ++q) {
        const T* d = dyp + (p * g.Q + q) * ch;
        for (int64_t h = std::max<int64_t>(p * g.s - g.pad, 0);
             h < std::min<int64_t>(p * g.s - g.pad + g.k, g.H); ++h)
          for (int64_t w = std::max<int64_t>(q * g.s - g.pad, 0);
               w < std::min<int64_t>(q * g.s - g.pad + g.k, g.W); ++w) {
            C* out = dxp + (h * g.W + w) * ch;
            for (int64_t c = 0; c < ch; ++c) out[c] += widen(d[c]) * inv_area;
          }
      }
    acc.finish();
  }
}

// y (N, C, 1, 1) has the same memory in both layouts: y[nc]. g: NC, C, and H*W in H (W = 1).
template <typename T, bool kNhwc>
void global_avgpool_forward(T* y, const T* x, const Geometry& g) {
  const int64_t HW = g.H, step = g.step<kNhwc>();
#pragma omp parallel for schedule(static) if (g.NC * HW > \
                                              65536)  // threads only pay off on big tensors
  for (int64_t nc = 0; nc < g.NC; ++nc) {
    const T* xp = x + g.base<kNhwc>(nc, HW);
    double sum = 0;
    for (int64_t i = 0; i < HW; ++i) sum += widen(xp[i * step]);
    y[nc] = narrow<T>(static_cast<compute_t<T>>(sum / static_cast<double>(HW)));
  }
}

template <typename T, bool kNhwc>
void global_avgpool_backward(T* dx, const T* dy, const Geometry& g) {
  using C = compute_t<T>;
  const int64_t HW = g.H, step = g.step<kNhwc>();
#pragma omp parallel for schedule(static) if (g.NC * HW > \
                                              65536)  // threads only pay off on big tensors
  for (int64_t nc = 0; nc < g.NC; ++nc) {
    const T d = narrow<T>(widen(dy[nc]) / static_cast<C>(HW));
    T* dxp = dx + g.base<kNhwc>(nc, HW);
    for (int64_t i = 0; i < HW; ++i) dxp[i * step] = d;
  }
}

}  // namespace cpu

namespace {

// Checks x against y/dy of the pooled shape and returns the geometry both implementations use.
// x (or dx) decides the layout; y (or dy) must have it too.
cuda::PoolGeometry pool_geometry(const char* who, const Tensor& x, const Tensor& y, Pool2dParams p) {
  const Shape out = pool2d_output_shape(x.shape(), p, who);
  check_shape(y, out, who, "output (gradient)");
  check_layout(y, x.layout(), who, "output (gradient)");
  check_same_device(y, x, who);
  check_dtype(y, x.dtype(), who, "output (gradient)");
  return {x.size(0), x.size(1), x.size(2), x.size(3), out[2],
          out[3],    p.kernel,  p.stride,  p.pad,     x.layout()};
}

cpu::Geometry cpu_geometry(const cuda::PoolGeometry& g) {
  return {g.N * g.C, g.C, g.H, g.W, g.P, g.Q, g.kernel, g.stride, g.pad};
}

// argmax lies in y's layout (its values are pixel indices h*W + w: pooling.h).
void check_argmax(const char* who, const Tensor& argmax, const Tensor& y) {
  check_shape(argmax, y.shape(), who, "argmax");
  check_layout(argmax, y.layout(), who, "argmax");
  check_dtype(argmax, DType::I32, who, "argmax");
  check_same_device(argmax, y, who);
}

// The geometry of a global average pool: its planes of H*W pixels as Geometry::H (W = 1).
cpu::Geometry global_geometry(const Tensor& x) {
  return {x.size(0) * x.size(1), x.size(1), x.size(2) * x.size(3), 1, 1, 1, 1, 1, 0};
}

}  // namespace

const OpInfo& maxpool2d_op() {
  static const OpInfo op{"maxpool2d",
                         "`maxpool2d_forward`, `maxpool2d_backward`",
                         {{Backend::CpuReference,
                           "loops over (n, c) planes (NHWC: strided; backward per image), "
                           "argmax kept for backward; bfloat16/float16 with float32 math",
                           {DType::F32, DType::F64, DType::BF16, DType::F16}},
                          {Backend::CudaHandwritten,
                           "one thread per output (forward) / input (backward) element (NHWC: "
                           "channels fastest)",
                           {DType::F32, DType::BF16, DType::F16}},
                          {Backend::CudaVendor,
                           "cudnnPoolingForward/Backward, NCHW or NHWC descriptors (x and y "
                           "instead of argmax)",
                           {DType::F32, DType::BF16, DType::F16}}}};
  return op;
}

const OpInfo& avgpool2d_op() {
  static const OpInfo op{"avgpool2d",
                         "`avgpool2d_forward`, `avgpool2d_backward`",
                         {{Backend::CpuReference,
                           "loops over (n, c) planes (NHWC: strided; backward per image); "
                           "bfloat16/float16 with float32 math",
                           {DType::F32, DType::F64, DType::BF16, DType::F16}},
                          {Backend::CudaHandwritten,
                           "one thread per output (forward) / input (backward) element (NHWC: "
                           "channels fastest)",
                           {DType::F32, DType::BF16, DType::F16}},
                          {Backend::CudaVendor,
                           "cudnnPoolingForward, NCHW or NHWC descriptors; backward runs ours",
                           {DType::F32, DType::BF16, DType::F16}}}};
  return op;
}

const OpInfo& global_avgpool_op() {
  static const OpInfo op{"global_avgpool",
                         "`global_avgpool_forward`, `global_avgpool_backward`",
                         {{Backend::CpuReference,
                           "loops over (n, c) planes (NHWC: strided); bfloat16/float16 with "
                           "float32 math",
                           {DType::F32, DType::F64, DType::BF16, DType::F16}},
                          {Backend::CudaHandwritten,
                           "a warp per (n, c) plane; NHWC: a thread per (n, c)",
                           {DType::F32, DType::BF16, DType::F16}}}};
  return op;
}

Backend select_maxpool2d_backend(const Device& d, DType dtype) {
  return select_backend(maxpool2d_op(), d, dtype);
}
Backend select_avgpool2d_backend(const Device& d, DType dtype) {
  return select_backend(avgpool2d_op(), d, dtype);
}
Backend select_global_avgpool_backend(const Device& d, DType dtype) {
  return select_backend(global_avgpool_op(), d, dtype);
}

void maxpool2d_forward(Tensor& y, Tensor& argmax, const Tensor& x, Pool2dParams p) {
  maxpool2d_forward(select_maxpool2d_backend(x.device(), x.dtype()), y, argmax, x, p);
}

void maxpool2d_forward(Backend b, Tensor& y, Tensor& argmax, const Tensor& x, Pool2dParams p) {
  const char* who = "maxpool2d_forward";
  const cuda::PoolGeometry g = pool_geometry(who, x, y, p);
  check_argmax(who, argmax, y);
  check_backend(maxpool2d_op(), b, x.device(), x.dtype(), who);
  if (b == Backend::CpuReference) {
    dispatch_storage(x.dtype(), who, [&]<typename T>() {
      dispatch_layout(g.layout, [&]<bool kNhwc>() {
        cpu::maxpool2d_forward<T, kNhwc>(y.data<T>(), argmax.data<int32_t>(), x.data<T>(),
                                         cpu_geometry(g));
      });
    });
    return;
  }
  MINIDL_IF_CUDA(dispatch_float32_storage(y.dtype(), who, [&]<typename T>() {
    cuda::maxpool2d_forward<T>(y.data<T>(), argmax.data<int32_t>(), x.data<T>(), g,
                               b == Backend::CudaVendor, cuda_context(x.device()));
  }));
}

void maxpool2d_backward(Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                        const Tensor& argmax, Pool2dParams p) {
  maxpool2d_backward(select_maxpool2d_backend(x.device(), x.dtype()), dx, dy, x, y, argmax, p);
}

void maxpool2d_backward(Backend b, Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y,
                        const Tensor& argmax, Pool2dParams p) {
  const char* who = "maxpool2d_backward";
  const cuda::PoolGeometry g = pool_geometry(who, x, dy, p);
  check_same_shape(dx, x, who);
  check_same_device(dx, x, who);
  check_dtype(dx, x.dtype(), who, "input gradient");
  check_shape(y, dy.shape(), who, "output");
  check_layout(y, x.layout(), who, "output");
  check_same_device(y, x, who);
  check_argmax(who, argmax, dy);
  check_backend(maxpool2d_op(), b, x.device(), x.dtype(), who);
  if (b == Backend::CpuReference) {
    dispatch_storage(x.dtype(), who, [&]<typename T>() {
      dispatch_layout(g.layout, [&]<bool kNhwc>() {
        cpu::maxpool2d_backward<T, kNhwc>(dx.data<T>(), dy.data<T>(), argmax.data<int32_t>(),
                                          cpu_geometry(g));
      });
    });
    return;
  }
  MINIDL_IF_CUDA(dispatch_float32_storage(dx.dtype(), who, [&]<typename T>() {
    cuda::maxpool2d_backward<T>(dx.data<T>(), dy.data<T>(), x.data<T>(), y.data<T>(),
                                argmax.data<int32_t>(), g, b == Backend::CudaVendor,
                                cuda_context(x.device()));
  }));
}

void avgpool2d_forward(Tensor& y, const Tensor& x, Pool2dParams p) {
  avgpool2d_forward(select_avgpool2d_backend(x.device(), x.dtype()), y, x, p);
}

void avgpool2d_forward(Backend b, Tensor& y, const Tensor& x, Pool2dParams p) {
  const char* who = "avgpool2d_forward";
  const cuda::PoolGeometry g = pool_geometry(who, x, y, p);
  check_backend(avgpool2d_op(), b, x.device(), x.dtype(), who);
  if (b == Backend::CpuReference) {
    dispatch_storage(x.dtype(), who, [&]<typename T>() {
      dispatch_layout(g.layout, [&]<bool kNhwc>() {
        cpu::avgpool2d_forward<T, kNhwc>(y.data<T>(), x.data<T>(), cpu_geometry(g));
      });
    });
    return;
  }
  MINIDL_IF_CUDA(dispatch_float32_storage(y.dtype(), who, [&]<typename T>() {
    cuda::avgpool2d_forward<T>(y.data<T>(), x.data<T>(), g, b == Backend::CudaVendor,
                               cuda_context(x.device()));
  }));
}

void avgpool2d_backward(Tensor& dx, const Tensor& dy, Pool2dParams p) {
  avgpool2d_backward(select_avgpool2d_backend(dx.device(), dx.dtype()), dx, dy, p);
}

void avgpool2d_backward(Backend b, Tensor& dx, const Tensor& dy, Pool2dParams p) {
  const char* who = "avgpool2d_backward";
  const cuda::PoolGeometry g = pool_geometry(who, dx, dy, p);
  check_backend(avgpool2d_op(), b, dx.device(), dx.dtype(), who);
  if (b == Backend::CpuReference) {
    dispatch_storage(dx.dtype(), who, [&]<typename T>() {
      dispatch_layout(g.layout, [&]<bool kNhwc>() {
        cpu::avgpool2d_backward<T, kNhwc>(dx.data<T>(), dy.data<T>(), cpu_geometry(g));
      });
    });
    return;
  }
  // Both CUDA backends run our kernel (pooling.h).
  MINIDL_IF_CUDA(dispatch_float32_storage(dx.dtype(), who, [&]<typename T>() {
    cuda::avgpool2d_backward<T>(dx.data<T>(), dy.data<T>(), g, cuda_context(dx.device()));
  }));
}

void global_avgpool_forward(Tensor& y, const Tensor& x) {
  global_avgpool_forward(select_global_avgpool_backend(x.device(), x.dtype()), y, x);
}

void global_avgpool_forward(Backend b, Tensor& y, const Tensor& x) {
  const char* who = "global_avgpool_forward";
  MINIDL_CHECK(x.defined() && x.dim() == 4, who, ": input must be 4-D (N, C, H, W), got ",
               x.defined() ? x.shape().str() : std::string("an undefined tensor"));
  check_shape(y, Shape{x.size(0), x.size(1), 1, 1}, who, "output");
  check_same_device(y, x, who);
  check_dtype(y, x.dtype(), who, "output");
  const int64_t HW = x.size(2) * x.size(3);
  MINIDL_CHECK(HW > 0, who, ": input ", x.shape(), " has no pixels to average");
  check_backend(global_avgpool_op(), b, x.device(), x.dtype(), who);
  if (b == Backend::CpuReference) {
    dispatch_storage(x.dtype(), who, [&]<typename T>() {
      dispatch_layout(x.layout(), [&]<bool kNhwc>() {
        cpu::global_avgpool_forward<T, kNhwc>(y.data<T>(), x.data<T>(), global_geometry(x));
      });
    });
    return;
  }
  MINIDL_IF_CUDA(dispatch_float32_storage(y.dtype(), who, [&]<typename T>() {
    cuda::global_avgpool_forward<T>(y.data<T>(), x.data<T>(), x.size(0), x.size(1), HW, x.layout(),
                                    cuda_context(x.device()));
  }));
}

void global_avgpool_backward(Tensor& dx, const Tensor& dy) {
  global_avgpool_backward(select_global_avgpool_backend(dx.device(), dx.dtype()), dx, dy);
}

void global_avgpool_backward(Backend b, Tensor& dx, const Tensor& dy) {
  const char* who = "global_avgpool_backward";
  MINIDL_CHECK(dx.defined() && dx.dim() == 4, who,
               ": input gradient must be 4-D (N, C, H, W), got ",
               dx.defined() ? dx.shape().str() : std::string("an undefined tensor"));
  check_shape(dy, Shape{dx.size(0), dx.size(1), 1, 1}, who, "output gradient");
  check_same_device(dy, dx, who);
  check_dtype(dy, dx.dtype(), who, "output gradient");
  const int64_t HW = dx.size(2) * dx.size(3);
  MINIDL_CHECK(HW > 0, who, ": input gradient ", dx.shape(), " has no pixels");
  check_backend(global_avgpool_op(), b, dx.device(), dx.dtype(), who);
  if (b == Backend::CpuReference) {
    dispatch_storage(dx.dtype(), who, [&]<typename T>() {
      dispatch_layout(dx.layout(), [&]<bool kNhwc>() {
        cpu::global_avgpool_backward<T, kNhwc>(dx.data<T>(), dy.data<T>(), global_geometry(dx));
      });
    });
    return;
  }
  MINIDL_IF_CUDA(dispatch_float32_storage(dx.dtype(), who, [&]<typename T>() {
    cuda::global_avgpool_backward<T>(dx.data<T>(), dy.data<T>(), dx.size(0), dx.size(1), HW,
                                     dx.layout(), cuda_context(dx.device()));
  }));
}

}  // namespace minidl

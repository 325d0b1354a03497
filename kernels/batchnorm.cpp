// Batch normalisation: argument checks, device dispatch and the CPU reference (formulas in
// batchnorm.h, derivation in docs/backprop/batchnorm.md). The CUDA kernels are in batchnorm.cu.
//
// The CPU kernels work one channel at a time (OpenMP over channels: channels are independent,
// so no reduction crosses threads and the result does not depend on the thread count). Within a
// channel the statistics are two-pass (mean first, then the sum of squared deviations), which
// avoids the cancellation of E[x^2] - E[x]^2 when |mean| >> std. Each row of HW contiguous values
// is summed in T in 16 interleaved lanes (so each lane adds a few dozen values),
// and the row sums are accumulated in double: a float running sum over all M = N*H*W terms
// (131072 for a (128, 64, 32, 32) activation) would lose about log2(M) of its 24 bits in the
// worst case, and these sums are what the CUDA kernels are compared with at 1e-5. The
// elementwise passes are one multiply-add per element with per-channel coefficients. With 16-bit
// tensors each channel runs in the AVX-512 copy where the CPU has it (kernels/cpu_simd.h).
// Channels-last (NHWC) tensors have their own loops (the *_nhwc functions): rows in memory order,
// channels innermost, per-channel accumulators, fixed row chunks summed in order afterwards.
#include "kernels/batchnorm.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu_simd.h"

namespace minidl {

namespace cpu {

// Element (n, c, i) of an (N, C, HW) tensor.
inline int64_t at(int64_t n, int64_t c, int64_t i, int64_t C, int64_t HW) {
  return (n * C + c) * HW + i;
}

// Sum over one channel's N rows of HW contiguous values of f(value at k): each row is summed in
// compute_t<T> into 16 interleaved partial sums (lane j adds elements j, j + 16, ...: at most
// HW / 16 values per lane), which the compiler keeps in vector registers whatever their width, in
// the same order on every ISA (an `omp simd` reduction would not vectorise in the AVX-512 copy:
// its lane count is fixed for the baseline ISA); the rows are accumulated in double.
template <typename T, typename F>
double channel_sum(int64_t N, int64_t c, int64_t C, int64_t HW, F f) {
  using A = compute_t<T>;
  constexpr int64_t kLanes = 16;
  const int64_t body = HW - HW % kLanes;
  double sum = 0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t base = at(n, c, 0, C, HW);
    A lane[kLanes] = {};
    for (int64_t i = 0; i < body; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) lane[j] += f(base + i + j);
    A row = 0;
    for (int64_t i = body; i < HW; ++i) row += f(base + i);
    for (int64_t j = 0; j < kLanes; ++j) row += lane[j];
    sum += row;
  }
  return sum;
}

// dst[k] = a * src[k] + b over one channel (a, b in compute_t<T>: one fused multiply-add per
// element, rounded once into T).
template <typename T>
void channel_affine(T* dst, const T* src, compute_t<T> a, compute_t<T> b, int64_t N, int64_t c,
                    int64_t C, int64_t HW) {
  for (int64_t n = 0; n < N; ++n) {
    const int64_t base = at(n, c, 0, C, HW);
#pragma omp simd
    for (int64_t i = 0; i < HW; ++i) dst[base + i] = narrow<T>(a * widen(src[base + i]) + b);
  }
}

// The per-channel arithmetic both layouts share.
// Train forward: from the channel's mean and biased variance, save the statistics, update the
// running ones and return y's coefficients: y = scale x + shift.
template <typename P>
void finish_train_stats(P& scale, P& shift, P* save_mean, P* save_invstd, P* running_mean,
                        P* running_var, const P* gamma, const P* beta, int64_t c, double mean,
                        double var, double M, double momentum, double eps) {
  const double invstd = 1.0 / std::sqrt(var + eps);
  const double sc = gamma[c] * invstd;
  scale = static_cast<P>(sc);
  shift = static_cast<P>(beta[c] - mean * sc);
  save_mean[c] = static_cast<P>(mean);
  save_invstd[c] = static_cast<P>(invstd);
  // The running variance estimates the population variance, hence the unbiased M / (M - 1).
  running_mean[c] = static_cast<P>((1 - momentum) * running_mean[c] + momentum * mean);
  running_var[c] = static_cast<P>((1 - momentum) * running_var[c] + momentum * var * M / (M - 1));
}

// Train backward: dx = gamma invstd / M (M dy - sum dy - xhat sum(dy xhat)), written with the
// means and expanded to dx = k dy + a x + b with xhat = (x - mean) invstd.
template <typename P>
void train_dx_coefficients(P& k, P& a, P& b, double gamma, double mean, double invstd,
                           double sum_dy, double sum_dy_xhat, double M) {
  const double kd = gamma * invstd, mean_dy = sum_dy / M, mean_dy_xhat = sum_dy_xhat / M;
  const double ad = -kd * mean_dy_xhat * invstd, bd = -kd * mean_dy - ad * mean;
  k = static_cast<P>(kd);
  a = static_cast<P>(ad);
  b = static_cast<P>(bd);
}

template <typename T, typename P = compute_t<T>>
void batchnorm_forward_train(T* y, P* save_mean, P* save_invstd, P* running_mean, P* running_var,
                             const T* x, const P* gamma, const P* beta, int64_t N, int64_t C,
                             int64_t HW, double momentum, double eps) {
  const double M = static_cast<double>(N * HW);
#pragma omp parallel for schedule(static) if (N * C * HW > 65536)  // threads only pay off on big tensors
  for (int64_t c = 0; c < C; ++c)
    run_simd16<T>([&] {
      const double mean = channel_sum<T>(N, c, C, HW, [&](int64_t k) { return widen(x[k]); }) / M;
      const P mean_t = static_cast<P>(mean);
      const double sq = channel_sum<T>(N, c, C, HW, [&](int64_t k) {
        const P d = widen(x[k]) - mean_t;
        return d * d;
      });
      const double var = sq / M;  // biased: this is what normalises the batch
      P scale, shift;
      finish_train_stats(scale, shift, save_mean, save_invstd, running_mean, running_var, gamma,
                         beta, c, mean, var, M, momentum, eps);
      channel_affine<T>(y, x, scale, shift, N, c, C, HW);
    });
}

template <typename T, typename P = compute_t<T>>
void batchnorm_forward_eval(T* y, const T* x, const P* gamma, const P* beta, const P* running_mean,
                            const P* running_var, int64_t N, int64_t C, int64_t HW, double eps) {
#pragma omp parallel for schedule(static) if (N * C * HW > 65536)  // threads only pay off on big tensors
  for (int64_t c = 0; c < C; ++c)
    run_simd16<T>([&] {
      const double scale = gamma[c] / std::sqrt(static_cast<double>(running_var[c]) + eps);
      channel_affine<T>(y, x, static_cast<P>(scale),
                        static_cast<P>(beta[c] - running_mean[c] * scale), N, c, C, HW);
    });
}

// Shared by both backward modes: the per-channel sums of dy and dy * xhat, with
// xhat = (x - mean) invstd, accumulated into dbeta and dgamma. `mean`, `invstd` are the batch
// statistics (train) or the running ones (eval).
template <typename T>
void batchnorm_param_grads(double& sum_dy, double& sum_dy_xhat, const T* dy, const T* x,
                           double mean, double invstd, int64_t N, int64_t c, int64_t C,
                           int64_t HW) {
  const compute_t<T> mean_t = static_cast<compute_t<T>>(mean);
  sum_dy = channel_sum<T>(N, c, C, HW, [&](int64_t k) { return widen(dy[k]); });
  sum_dy_xhat = invstd * channel_sum<T>(N, c, C, HW, [&](int64_t k) {
                  return widen(dy[k]) * (widen(x[k]) - mean_t);
                });
}

template <typename T, typename P = compute_t<T>>
void batchnorm_backward_train(T* dx, P* dgamma, P* dbeta, const T* dy, const T* x, const P* gamma,
                              const P* save_mean, const P* save_invstd, int64_t N, int64_t C,
                              int64_t HW) {
  const double M = static_cast<double>(N * HW);
#pragma omp parallel for schedule(static) if (N * C * HW > 65536)  // threads only pay off on big tensors
  for (int64_t c = 0; c < C; ++c)
    run_simd16<T>([&] {
      const double mean = save_mean[c], invstd = save_invstd[c];
      double sum_dy, sum_dy_xhat;
      batchnorm_param_grads(sum_dy, sum_dy_xhat, dy, x, mean, invstd, N, c, C, HW);
      dbeta[c] += static_cast<P>(sum_dy);
      dgamma[c] += static_cast<P>(sum_dy_xhat);
      P kt, at_, bt;
      train_dx_coefficients(kt, at_, bt, gamma[c], mean, invstd, sum_dy, sum_dy_xhat, M);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t base = at(n, c, 0, C, HW);
#pragma omp simd
        for (int64_t i = 0; i < HW; ++i)
          dx[base + i] = narrow<T>(kt * widen(dy[base + i]) + at_ * widen(x[base + i]) + bt);
      }
    });
}

template <typename T, typename P = compute_t<T>>
void batchnorm_backward_eval(T* dx, P* dgamma, P* dbeta, const T* dy, const T* x, const P* gamma,
                             const P* running_mean, const P* running_var, int64_t N, int64_t C,
                             int64_t HW, double eps) {
#pragma omp parallel for schedule(static) if (N * C * HW > 65536)  // threads only pay off on big tensors
  for (int64_t c = 0; c < C; ++c)
    run_simd16<T>([&] {
      const double mean = running_mean[c];
      const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
      double sum_dy, sum_dy_xhat;
      batchnorm_param_grads(sum_dy, sum_dy_xhat, dy, x, mean, invstd, N, c, C, HW);
      dbeta[c] += static_cast<P>(sum_dy);
      dgamma[c] += static_cast<P>(sum_dy_xhat);
      channel_affine<T>(dx, dy, static_cast<P>(gamma[c] * invstd), P(0), N, c, C, HW);
    });
}

// ---------------------------------------------------------------- channels-last (NHWC)
// An NHWC tensor is an (R, C) matrix of R = N*H*W rows. The per-channel loops above would read it
// with stride C (one cache line per value, no vectorisation: 7-20x slower, measured), so these
// walk the rows in memory order, the inner loop over the C contiguous channels of a row, with
// per-channel accumulators. Rows are cut into fixed chunks (not one per thread) of
// chunk_rows(C) rows, whose per-channel results are merged in chunk order afterwards in double:
// the result does not depend on the thread count. Within a chunk a channel has 32 to 128 terms
// (fewer channels, longer chunks: a chunk's setup costs as much as a short row), summed in
// compute_t<T> as the NCHW lanes sum a few dozen. A chunk is small enough to stay in cache, so the
// statistics take one pass over x: each chunk's mean and squared deviations two-pass inside the
// chunk (no E[x^2] - E[x]^2 cancellation), the chunks merged by Chan et al.'s pairwise formula, as
// the CUDA kernels merge theirs. The per-channel arithmetic after the sums is the NCHW path's
// (finish_train_stats, train_dx_coefficients).
inline int64_t chunk_rows(int64_t C) { return std::clamp<int64_t>(2048 / C, 32, 128); }

// body(k, r0, r1) for the row chunks k = [r0, r1) in parallel, each in run_simd16<T>.
template <typename T, typename F>
void for_row_chunks(int64_t R, int64_t C, F body) {
  const int64_t rows = chunk_rows(C), chunks = (R + rows - 1) / rows;
#pragma omp parallel for schedule(static) if (R * C > 65536)  // threads only pay off on big tensors
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t r0 = k * rows, r1 = std::min(R, r0 + rows);
    run_simd16<T>([&] { body(k, r0, r1); });
  }
}

// Per-channel mean and M2 = sum (x - mean)^2 over the R rows, in double.
template <typename T>
void rows_channel_moments(std::vector<double>& mean, std::vector<double>& m2, const T* x, int64_t R,
                          int64_t C) {
  using A = compute_t<T>;
  const int64_t rows = chunk_rows(C), chunks = (R + rows - 1) / rows;
  std::vector<double> part_mean(static_cast<size_t>(chunks * C)), part_m2(part_mean.size());
  for_row_chunks<T>(R, C, [&](int64_t k, int64_t r0, int64_t r1) {
    std::vector<A> sum(static_cast<size_t>(C), A(0)), sq(sum.size(), A(0)), m(sum.size());
    for (int64_t r = r0; r < r1; ++r) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) sum[c] += widen(x[r * C + c]);
    }
    for (int64_t c = 0; c < C; ++c) {
      part_mean[k * C + c] = static_cast<double>(sum[c]) / static_cast<double>(r1 - r0);
      m[c] = static_cast<A>(part_mean[k * C + c]);
    }
    for (int64_t r = r0; r < r1; ++r) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const A d = widen(x[r * C + c]) - m[c];
        sq[c] += d * d;
      }
    }
    // M2 about the chunk's exact mean: the deviations were taken from its rounding m, which adds
    // (r1 - r0) (m - mean)^2.
    for (int64_t c = 0; c < C; ++c) {
      const double e = static_cast<double>(m[c]) - part_mean[k * C + c];
      part_m2[k * C + c] = static_cast<double>(sq[c]) - static_cast<double>(r1 - r0) * e * e;
    }
  });
  mean.assign(static_cast<size_t>(C), 0.0);
  m2.assign(static_cast<size_t>(C), 0.0);
  double n = 0;
  for (int64_t k = 0; k < chunks; ++k) {
    const double nk = static_cast<double>(std::min(R, (k + 1) * rows) - k * rows), nt = n + nk;
    for (int64_t c = 0; c < C; ++c) {
      const double delta = part_mean[k * C + c] - mean[c];
      mean[c] += delta * nk / nt;
      m2[c] += part_m2[k * C + c] + delta * delta * n * nk / nt;
    }
    n = nt;
  }
}

// dst[r, c] = f(r*C + c, c) rounded once into T, rows in parallel.
template <typename T, typename F>
void rows_map(T* dst, int64_t R, int64_t C, F f) {
  for_row_chunks<T>(R, C, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) dst[r * C + c] = narrow<T>(f(r * C + c, c));
    }
  });
}

template <typename T, typename P = compute_t<T>>
void batchnorm_forward_train_nhwc(T* y, P* save_mean, P* save_invstd, P* running_mean,
                                  P* running_var, const T* x, const P* gamma, const P* beta,
                                  int64_t R, int64_t C, double momentum, double eps) {
  const double M = static_cast<double>(R);
  std::vector<double> mean, m2;
  rows_channel_moments(mean, m2, x, R, C);
  std::vector<P> scale(static_cast<size_t>(C)), shift(scale.size());
  for (int64_t c = 0; c < C; ++c)
    finish_train_stats(scale[c], shift[c], save_mean, save_invstd, running_mean, running_var, gamma,
                       beta, c, mean[c], m2[c] / M, M, momentum, eps);
  rows_map(y, R, C, [&](int64_t k, int64_t c) { return scale[c] * widen(x[k]) + shift[c]; });
}

template <typename T, typename P = compute_t<T>>
void batchnorm_forward_eval_nhwc(T* y, const T* x, const P* gamma, const P* beta,
                                 const P* running_mean, const P* running_var, int64_t R, int64_t C,
                                 double eps) {
  std::vector<P> scale(static_cast<size_t>(C)), shift(scale.size());
  for (int64_t c = 0; c < C; ++c) {
    const double sc = gamma[c] / std::sqrt(static_cast<double>(running_var[c]) + eps);
    scale[c] = static_cast<P>(sc);
    shift[c] = static_cast<P>(beta[c] - running_mean[c] * sc);
  }
  rows_map(y, R, C, [&](int64_t k, int64_t c) { return scale[c] * widen(x[k]) + shift[c]; });
}

// Both backward modes: sum dy and sum dy xhat per channel (mean, invstd: the batch statistics or
// the running ones), accumulated into dbeta and dgamma.
template <typename T, typename P>
void batchnorm_param_grads_nhwc(std::vector<double>& sum_dy, std::vector<double>& sum_dy_xhat,
                                P* dgamma, P* dbeta, const T* dy, const T* x, const P* mean,
                                const std::vector<double>& invstd, int64_t R, int64_t C) {
  using A = compute_t<T>;
  // One pass over dy and x: both sums per chunk, the chunks added in order in double.
  const int64_t chunks = (R + chunk_rows(C) - 1) / chunk_rows(C);
  std::vector<double> part(static_cast<size_t>(2 * chunks * C));
  for_row_chunks<T>(R, C, [&](int64_t k, int64_t r0, int64_t r1) {
    std::vector<A> s1(static_cast<size_t>(C), A(0)), s2(s1.size(), A(0)), m(s1.size());
    for (int64_t c = 0; c < C; ++c) m[c] = static_cast<A>(mean[c]);
    for (int64_t r = r0; r < r1; ++r) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const A g = widen(dy[r * C + c]);
        s1[c] += g;
        s2[c] += g * (widen(x[r * C + c]) - m[c]);
      }
    }
    double* out = part.data() + 2 * k * C;
    for (int64_t c = 0; c < C; ++c) {
      out[c] = s1[c];
      out[C + c] = s2[c];
    }
  });
  sum_dy.assign(static_cast<size_t>(C), 0.0);
  sum_dy_xhat.assign(static_cast<size_t>(C), 0.0);
  for (int64_t k = 0; k < chunks; ++k)
    for (int64_t c = 0; c < C; ++c) {
      sum_dy[c] += part[2 * k * C + c];
      sum_dy_xhat[c] += part[(2 * k + 1) * C + c];
    }
  for (int64_t c = 0; c < C; ++c) {
    sum_dy_xhat[c] *= invstd[c];
    dbeta[c] += static_cast<P>(sum_dy[c]);
    dgamma[c] += static_cast<P>(sum_dy_xhat[c]);
  }
}

template <typename T, typename P = compute_t<T>>
void batchnorm_backward_train_nhwc(T* dx, P* dgamma, P* dbeta, const T* dy, const T* x,
                                   const P* gamma, const P* save_mean, const P* save_invstd,
                                   int64_t R, int64_t C) {
  const double M = static_cast<double>(R);
  std::vector<double> invstd(save_invstd, save_invstd + C), sum_dy, sum_dy_xhat;
  batchnorm_param_grads_nhwc(sum_dy, sum_dy_xhat, dgamma, dbeta, dy, x, save_mean, invstd, R, C);
  std::vector<P> kt(static_cast<size_t>(C)), at_(kt.size()), bt(kt.size());
  for (int64_t c = 0; c < C; ++c)
    train_dx_coefficients(kt[c], at_[c], bt[c], gamma[c], save_mean[c], invstd[c], sum_dy[c],
                          sum_dy_xhat[c], M);
  rows_map(dx, R, C, [&](int64_t k, int64_t c) {
    return kt[c] * widen(dy[k]) + at_[c] * widen(x[k]) + bt[c];
  });
}

template <typename T, typename P = compute_t<T>>
void batchnorm_backward_eval_nhwc(T* dx, P* dgamma, P* dbeta, const T* dy, const T* x,
                                  const P* gamma, const P* running_mean, const P* running_var,
                                  int64_t R, int64_t C, double eps) {
  std::vector<double> invstd(static_cast<size_t>(C)), sum_dy, sum_dy_xhat;
  for (int64_t c = 0; c < C; ++c)
    invstd[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
  batchnorm_param_grads_nhwc(sum_dy, sum_dy_xhat, dgamma, dbeta, dy, x, running_mean, invstd, R, C);
  std::vector<P> k(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) k[c] = static_cast<P>(gamma[c] * invstd[c]);
  rows_map(dx, R, C, [&](int64_t e, int64_t c) { return k[c] * widen(dy[e]); });
}

}  // namespace cpu

namespace {

struct BnDims {
  int64_t N, C, HW;
  Layout layout;  // x's, which every other activation shares (check_bn)
};

// x must be (N, C, H, W); every per-channel tensor (C) on x's device, in x's dtype, or float32 when x
// is bfloat16/float16 (the parameters, statistics and their gradients stay float32: autocast's
// policy); on a GPU, float32.
BnDims check_bn(const char* who, const Tensor& x, std::initializer_list<const Tensor*> same_as_x,
                std::initializer_list<std::pair<const Tensor*, const char*>> per_channel) {
  MINIDL_CHECK(x.defined() && x.dim() == 4, who, ": input must be 4-D (N, C, H, W), got ",
               x.defined() ? x.shape().str() : std::string("an undefined tensor"));
  const BnDims d{x.size(0), x.size(1), x.size(2) * x.size(3), x.layout()};
  for (const Tensor* t : same_as_x) {
    check_same_shape(*t, x, who);
    check_same_device(*t, x, who);
    check_dtype(*t, x.dtype(), who, "tensor");
  }
  for (const auto& [t, what] : per_channel) {
    check_shape(*t, Shape{d.C}, who, what);
    check_same_device(*t, x, who);
    check_dtype(*t, is_low_precision(x.dtype()) ? DType::F32 : x.dtype(), who, what);
  }
  return d;
}

}  // namespace

const OpInfo& batchnorm_op() {
  static const OpInfo op{
      "batchnorm",
      "`batchnorm_forward_train`, `batchnorm_forward_eval`, `batchnorm_backward_train`, "
      "`batchnorm_backward_eval`",
      {{Backend::CpuReference,
        "per-channel loops (NHWC: over rows, channels innermost), statistics in float64; "
        "bfloat16/float16 activations with float32 parameters",
        {DType::F32, DType::F64, DType::BF16, DType::F16}},
       {Backend::CudaHandwritten,
        "per-channel partial sums in float64 (NHWC: consecutive threads on consecutive "
        "channels), then one elementwise pass; bfloat16/float16 activations in 16-byte vectors "
        "with float32 statistics and parameters",
        {DType::F32, DType::BF16, DType::F16}},
       {Backend::CudaVendor,
        "cudnnBatchNormalization* (spatial; NCHW or NHWC descriptors); eval backward runs ours",
        {DType::F32, DType::BF16, DType::F16}}},
      "eps >= CUDNN_BN_MIN_EPSILON (0 in cuDNN 9)"};
  return op;
}

// One rule for forward and backward (both carry p), so a training step never mixes cuDNN's
// statistics with our backward.
Backend select_batchnorm_backend(const Device& d, DType dtype, BatchNormParams p) {
  return select_backend(batchnorm_op(), d, dtype, p.eps >= kCudnnBnMinEpsilon);
}

void batchnorm_forward_train(Tensor& y, Tensor& save_mean, Tensor& save_invstd,
                             Tensor& running_mean, Tensor& running_var, const Tensor& x,
                             const Tensor& gamma, const Tensor& beta, BatchNormParams p) {
  batchnorm_forward_train(select_batchnorm_backend(x.device(), x.dtype(), p), y, save_mean,
                          save_invstd, running_mean, running_var, x, gamma, beta, p);
}

void batchnorm_forward_train(Backend b, Tensor& y, Tensor& save_mean, Tensor& save_invstd,
                             Tensor& running_mean, Tensor& running_var, const Tensor& x,
                             const Tensor& gamma, const Tensor& beta, BatchNormParams p) {
  const char* who = "batchnorm_forward_train";
  const BnDims d = check_bn(who, x, {&y},
                            {{&gamma, "weight"}, {&beta, "bias"}, {&running_mean, "running_mean"},
                             {&running_var, "running_var"}, {&save_mean, "save_mean"},
                             {&save_invstd, "save_invstd"}});
  // As torch: one value per channel has no variance (and M / (M - 1) would divide by zero).
  MINIDL_CHECK(d.N * d.HW > 1, who, ": expected more than 1 value per channel when training, got "
               "input ", x.shape());
  check_backend(batchnorm_op(), b, x.device(), x.dtype(), who);
  switch (b) {
    case Backend::CudaHandwritten:
    case Backend::CudaVendor:
      MINIDL_IF_CUDA(dispatch_float32_storage(x.dtype(), who, [&]<typename T>() {
        (b == Backend::CudaVendor
             ? cuda::batchnorm_forward_train_cudnn<T>
             : cuda::batchnorm_forward_train<T>)(y.data<T>(), save_mean.data<float>(),
                                                 save_invstd.data<float>(),
                                                 running_mean.data<float>(),
                                                 running_var.data<float>(), x.data<T>(),
                                                 gamma.data<float>(), beta.data<float>(), d.N, d.C,
                                                 d.HW, d.layout, p, cuda_context(x.device()));
      }));
      return;
    default:
      dispatch_storage(x.dtype(), who, [&]<typename T>() {
        using P = compute_t<T>;
        if (d.layout == Layout::NHWC)
          cpu::batchnorm_forward_train_nhwc<T>(y.data<T>(), save_mean.data<P>(),
                                               save_invstd.data<P>(), running_mean.data<P>(),
                                               running_var.data<P>(), x.data<T>(), gamma.data<P>(),
                                               beta.data<P>(), d.N * d.HW, d.C, p.momentum, p.eps);
        else
          cpu::batchnorm_forward_train<T>(y.data<T>(), save_mean.data<P>(), save_invstd.data<P>(),
                                          running_mean.data<P>(), running_var.data<P>(),
                                          x.data<T>(), gamma.data<P>(), beta.data<P>(), d.N, d.C,
                                          d.HW, p.momentum, p.eps);
      });
  }
}

void batchnorm_forward_eval(Tensor& y, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var,
                            BatchNormParams p) {
  batchnorm_forward_eval(select_batchnorm_backend(x.device(), x.dtype(), p), y, x, gamma, beta,
                         running_mean, running_var, p);
}

void batchnorm_forward_eval(Backend b, Tensor& y, const Tensor& x, const Tensor& gamma,
                            const Tensor& beta, const Tensor& running_mean,
                            const Tensor& running_var, BatchNormParams p) {
  const char* who = "batchnorm_forward_eval";
  const BnDims d = check_bn(who, x, {&y},
                            {{&gamma, "weight"}, {&beta, "bias"}, {&running_mean, "running_mean"},
                             {&running_var, "running_var"}});
  check_backend(batchnorm_op(), b, x.device(), x.dtype(), who);
  switch (b) {
    case Backend::CudaHandwritten:
    case Backend::CudaVendor:
      MINIDL_IF_CUDA(dispatch_float32_storage(x.dtype(), who, [&]<typename T>() {
        (b == Backend::CudaVendor
             ? cuda::batchnorm_forward_eval_cudnn<T>
             : cuda::batchnorm_forward_eval<T>)(y.data<T>(), x.data<T>(), gamma.data<float>(),
                                                beta.data<float>(), running_mean.data<float>(),
                                                running_var.data<float>(), d.N, d.C, d.HW, d.layout,
                                                p, cuda_context(x.device()));
      }));
      return;
    default:
      dispatch_storage(x.dtype(), who, [&]<typename T>() {
        using P = compute_t<T>;
        if (d.layout == Layout::NHWC)
          cpu::batchnorm_forward_eval_nhwc<T>(y.data<T>(), x.data<T>(), gamma.data<P>(),
                                              beta.data<P>(), running_mean.data<P>(),
                                              running_var.data<P>(), d.N * d.HW, d.C, p.eps);
        else
          cpu::batchnorm_forward_eval<T>(y.data<T>(), x.data<T>(), gamma.data<P>(), beta.data<P>(),
                                         running_mean.data<P>(), running_var.data<P>(), d.N, d.C,
                                         d.HW, p.eps);
      });
  }
}

void batchnorm_backward_train(Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy,
                              const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
                              const Tensor& save_invstd, BatchNormParams p) {
  batchnorm_backward_train(select_batchnorm_backend(x.device(), x.dtype(), p), dx, dgamma, dbeta,
                           dy, x, gamma, save_mean, save_invstd, p);
}

void batchnorm_backward_train(Backend b, Tensor& dx, Tensor& dgamma, Tensor& dbeta,
                              const Tensor& dy, const Tensor& x, const Tensor& gamma,
                              const Tensor& save_mean, const Tensor& save_invstd,
                              BatchNormParams p) {
  const char* who = "batchnorm_backward_train";
  const BnDims d = check_bn(who, x, {&dy, &dx},
                            {{&gamma, "weight"}, {&dgamma, "weight gradient"},
                             {&dbeta, "bias gradient"}, {&save_mean, "save_mean"},
                             {&save_invstd, "save_invstd"}});
  check_backend(batchnorm_op(), b, x.device(), x.dtype(), who);
  switch (b) {
    case Backend::CudaVendor:
      MINIDL_IF_CUDA(dispatch_float32_storage(x.dtype(), who, [&]<typename T>() {
        cuda::batchnorm_backward_train_cudnn<T>(
            dx.data<T>(), dgamma.data<float>(), dbeta.data<float>(), dy.data<T>(), x.data<T>(),
            gamma.data<float>(), save_mean.data<float>(), save_invstd.data<float>(), d.N, d.C, d.HW,
            d.layout, p, cuda_context(x.device()));
      }));
      return;
    case Backend::CudaHandwritten:
      MINIDL_IF_CUDA(dispatch_float32_storage(x.dtype(), who, [&]<typename T>() {
        cuda::batchnorm_backward_train<T>(dx.data<T>(), dgamma.data<float>(), dbeta.data<float>(),
                                          dy.data<T>(), x.data<T>(), gamma.data<float>(),
                                          save_mean.data<float>(), save_invstd.data<float>(), d.N,
                                          d.C, d.HW, d.layout, cuda_context(x.device()));
      }));
      return;
    default:
      dispatch_storage(x.dtype(), who, [&]<typename T>() {
        using P = compute_t<T>;
        if (d.layout == Layout::NHWC)
          cpu::batchnorm_backward_train_nhwc<T>(
              dx.data<T>(), dgamma.data<P>(), dbeta.data<P>(), dy.data<T>(), x.data<T>(),
              gamma.data<P>(), save_mean.data<P>(), save_invstd.data<P>(), d.N * d.HW, d.C);
        else
          cpu::batchnorm_backward_train<T>(
              dx.data<T>(), dgamma.data<P>(), dbeta.data<P>(), dy.data<T>(), x.data<T>(),
              gamma.data<P>(), save_mean.data<P>(), save_invstd.data<P>(), d.N, d.C, d.HW);
      });
  }
}

void batchnorm_backward_eval(Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy,
                             const Tensor& x, const Tensor& gamma, const Tensor& running_mean,
                             const Tensor& running_var, BatchNormParams p) {
  batchnorm_backward_eval(select_batchnorm_backend(x.device(), x.dtype(), p), dx, dgamma, dbeta, dy,
                          x, gamma, running_mean, running_var, p);
}

void batchnorm_backward_eval(Backend b, Tensor& dx, Tensor& dgamma, Tensor& dbeta, const Tensor& dy,
                             const Tensor& x, const Tensor& gamma, const Tensor& running_mean,
                             const Tensor& running_var, BatchNormParams p) {
  const char* who = "batchnorm_backward_eval";
  const BnDims d = check_bn(who, x, {&dy, &dx},
                            {{&gamma, "weight"}, {&dgamma, "weight gradient"},
                             {&dbeta, "bias gradient"}, {&running_mean, "running_mean"},
                             {&running_var, "running_var"}});
  check_backend(batchnorm_op(), b, x.device(), x.dtype(), who);
  switch (b) {
    // cuDNN has no eval-mode backward, so both CUDA backends run our kernel.
    case Backend::CudaHandwritten:
    case Backend::CudaVendor:
      MINIDL_IF_CUDA(dispatch_float32_storage(x.dtype(), who, [&]<typename T>() {
        cuda::batchnorm_backward_eval<T>(dx.data<T>(), dgamma.data<float>(), dbeta.data<float>(),
                                         dy.data<T>(), x.data<T>(), gamma.data<float>(),
                                         running_mean.data<float>(), running_var.data<float>(), d.N,
                                         d.C, d.HW, d.layout, p, cuda_context(x.device()));
      }));
      return;
    default:
      dispatch_storage(x.dtype(), who, [&]<typename T>() {
        using P = compute_t<T>;
        if (d.layout == Layout::NHWC)
          cpu::batchnorm_backward_eval_nhwc<T>(dx.data<T>(), dgamma.data<P>(), dbeta.data<P>(),
                                               dy.data<T>(), x.data<T>(), gamma.data<P>(),
                                               running_mean.data<P>(), running_var.data<P>(),
                                               d.N * d.HW, d.C, p.eps);
        else
          cpu::batchnorm_backward_eval<T>(dx.data<T>(), dgamma.data<P>(), dbeta.data<P>(),
                                          dy.data<T>(), x.data<T>(), gamma.data<P>(),
                                          running_mean.data<P>(), running_var.data<P>(), d.N, d.C,
                                          d.HW, p.eps);
      });
  }
}

// The counter stays on the model's device; bumping it there with a one-thread kernel keeps the
// training loop free of host/device copies (and a value loaded from a checkpoint stays the truth).
void batchnorm_count_batch(Tensor& num_batches_tracked) {
  const char* who = "batchnorm_count_batch";
  check_shape(num_batches_tracked, Shape{}, who, "num_batches_tracked");
  check_dtype(num_batches_tracked, DType::I32, who, "num_batches_tracked");
  if (num_batches_tracked.is_cuda()) {
    MINIDL_IF_CUDA(cuda::batchnorm_count_batch(num_batches_tracked.data<int32_t>(),
                                               cuda_context(num_batches_tracked.device())));
    return;
  }
  ++num_batches_tracked.data<int32_t>()[0];
}

}  // namespace minidl

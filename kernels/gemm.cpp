// Matrix products: argument checks, device dispatch and the CPU path (OpenBLAS, or the built-in
// blocked product below when built with -DMINIDL_BLAS=OFF). The CUDA kernels (our tiled SGEMM and
// the cuBLAS call) are in gemm.cu; the formulas are in gemm.h.
#include "kernels/gemm.h"

#include "kernels/convert.h"
#include "kernels/gemm_tc.h"

#if MINIDL_WITH_BLAS
#include <cblas.h>
#endif

#include <algorithm>
#include <atomic>
#include <limits>
#include <type_traits>
#include <vector>

namespace minidl {

namespace {

// BLAS's rules for a row-major product: op(A) is M x K, so A is stored M x K (lda >= K) or, when
// transposed, K x M (lda >= M); likewise for B; C is M x N (ldc >= N). A leading dimension is at
// least 1 even for an empty matrix (BLAS and cuBLAS both insist).
void check_gemm_shape(const GemmShape& s) {
  MINIDL_CHECK(s.M >= 0 && s.N >= 0 && s.K >= 0 && s.batch >= 1,
               "gemm: sizes must be >= 0 and "
               "batch >= 1, got M=",
               s.M, " N=", s.N, " K=", s.K, " batch=", s.batch);
  const int64_t a_cols = s.trans_a ? s.M : s.K;
  const int64_t b_cols = s.trans_b ? s.K : s.N;
  MINIDL_CHECK(s.lda >= std::max<int64_t>(1, a_cols), "gemm: lda=", s.lda, " is too small for A ",
               s.trans_a ? "(K x M, transposed)" : "(M x K)", " with M=", s.M, " K=", s.K);
  MINIDL_CHECK(s.ldb >= std::max<int64_t>(1, b_cols), "gemm: ldb=", s.ldb, " is too small for B ",
               s.trans_b ? "(N x K, transposed)" : "(K x N)", " with K=", s.K, " N=", s.N);
  MINIDL_CHECK(s.ldc >= std::max<int64_t>(1, s.N), "gemm: ldc=", s.ldc, " is smaller than N=", s.N);
  MINIDL_CHECK(s.stride_a >= 0 && s.stride_b >= 0 && s.stride_c >= 0,
               "gemm: batch strides must be >= 0");
  // OpenBLAS and cuBLAS take 32-bit sizes.
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  MINIDL_CHECK(s.M <= kMax && s.N <= kMax && s.K <= kMax && s.lda <= kMax && s.ldb <= kMax &&
                   s.ldc <= kMax && s.batch <= kMax,
               "gemm: sizes must fit in 32 bits, got M=", s.M, " N=", s.N, " K=", s.K);
}

namespace cpu {

template <typename T>
void gemm(const GemmShape& s, T alpha, const T* A, const T* B, T beta, T* C) {
#if !MINIDL_WITH_BLAS
  detail::gemm_builtin<T>(s, alpha, A, B, beta, C);
#else
  const CBLAS_TRANSPOSE ta = s.trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = s.trans_b ? CblasTrans : CblasNoTrans;
  const int M = static_cast<int>(s.M), N = static_cast<int>(s.N), K = static_cast<int>(s.K);
  const int lda = static_cast<int>(s.lda), ldb = static_cast<int>(s.ldb),
            ldc = static_cast<int>(s.ldc);
  for (int64_t b = 0; b < s.batch; ++b) {
    const T* a = A + b * s.stride_a;
    const T* bm = B + b * s.stride_b;
    T* c = C + b * s.stride_c;
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, a, lda, bm, ldb, beta, c, ldc);
    else
      cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, a, lda, bm, ldb, beta, c, ldc);
  }
#endif
}

}  // namespace cpu

// ---------------------------------------------------------------- built-in CPU product
// The classic blocking (Goto's): for each block of KC along K, op(A) is packed into panels of MR
// rows and op(B) into panels of NR columns (k-major, zero-padded at the edges), so the
// micro-kernel reads both contiguously; tiles of MC x NC of C are shared out among the OpenMP
// threads (disjoint, so no two threads write the same element). The micro-kernel keeps an MR x NR
// block of C in registers; with compile-time MR and NR the compiler vectorises the NR loop.
// Sums run in the order k = 0..K-1 within a block, blocks added into C in order.
template <typename T>
struct GemmBlocking;
// MR x NR accumulators fill 8 of the 16 SSE registers (the baseline x86-64 target), leaving room
// for the B row and the broadcast A element: measured with GCC 12 -O3, 4 x 16 floats spill to the
// stack and ran at half the speed.
template <>
struct GemmBlocking<float> {
  static constexpr int64_t MR = 4, NR = 8;
};
template <>
struct GemmBlocking<double> {
  static constexpr int64_t MR = 4, NR = 4;
};
constexpr int64_t kKC = 256, kMC = 64, kNC = 256;

template <typename T, int64_t MR, int64_t NR>
inline void micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b,
                         T* __restrict out) {
  T c[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const T* bk = b + k * NR;
    for (int64_t i = 0; i < MR; ++i) {
      const T av = a[k * MR + i];
      for (int64_t j = 0; j < NR; ++j) c[i][j] += av * bk[j];
    }
  }
  for (int64_t i = 0; i < MR; ++i)
    for (int64_t j = 0; j < NR; ++j) out[i * NR + j] = c[i][j];
}

}  // namespace

namespace detail {

template <typename T>
void gemm_builtin(const GemmShape& s, T alpha, const T* A, const T* B, T beta, T* C) {
  constexpr int64_t MR = GemmBlocking<T>::MR, NR = GemmBlocking<T>::NR;
  const int64_t M = s.M, N = s.N, K = s.K;
  if (M == 0 || N == 0) return;
  const int64_t m_panels = (M + MR - 1) / MR, n_panels = (N + NR - 1) / NR;
  const int64_t m_tiles = (M + kMC - 1) / kMC, n_tiles = (N + kNC - 1) / kNC;
  // Small products are not worth waking the thread team for.
  const bool parallel = M * N * K >= 64 * 64 * 64;
  std::vector<T> apack(static_cast<size_t>(m_panels * MR * std::min(K, kKC)));
  std::vector<T> bpack(static_cast<size_t>(n_panels * NR * std::min(K, kKC)));
  for (int64_t bi = 0; bi < s.batch; ++bi) {
    const T* a = A + bi * s.stride_a;
    const T* b = B + bi * s.stride_b;
    T* c = C + bi * s.stride_c;
    // C = beta C first (beta == 0 writes zeros without reading: C may hold NaN), then the blocks
    // of K add alpha op(A) op(B).
#pragma omp parallel for if (parallel)
    for (int64_t m = 0; m < M; ++m) {
      T* row = c + m * s.ldc;
      if (beta == T(0))
        std::fill(row, row + N, T(0));
      else if (beta != T(1))
        for (int64_t n = 0; n < N; ++n) row[n] *= beta;
    }
    if (K == 0 || alpha == T(0)) continue;
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      const int64_t kc = std::min(kKC, K - k0);
#pragma omp parallel if (parallel)
      {
#pragma omp for nowait
        for (int64_t p = 0; p < m_panels; ++p) {
          T* dst = apack.data() + p * kc * MR;
          for (int64_t i = 0; i < MR; ++i) {
            const int64_t m = p * MR + i;
            for (int64_t k = 0; k < kc; ++k)
              dst[k * MR + i] = m >= M ? T(0)
                                : s.trans_a ? a[(k0 + k) * s.lda + m]
                                            : a[m * s.lda + k0 + k];
          }
        }
#pragma omp for
        for (int64_t q = 0; q < n_panels; ++q) {
          T* dst = bpack.data() + q * kc * NR;
          for (int64_t k = 0; k < kc; ++k)
            for (int64_t j = 0; j < NR; ++j) {
              const int64_t n = q * NR + j;
              dst[k * NR + j] = n >= N ? T(0)
                                : s.trans_b ? b[n * s.ldb + k0 + k]
                                            : b[(k0 + k) * s.ldb + n];
            }
        }
        // (the implicit barrier of the loop above: both packs are complete)
#pragma omp for collapse(2) schedule(dynamic)
        for (int64_t mt = 0; mt < m_tiles; ++mt)
          for (int64_t nt = 0; nt < n_tiles; ++nt) {
            T out[MR * NR];
            const int64_t q_end = std::min(n_panels, (nt + 1) * kNC / NR);
            const int64_t p_end = std::min(m_panels, (mt + 1) * kMC / MR);
            for (int64_t q = nt * kNC / NR; q < q_end; ++q)
              for (int64_t p = mt * kMC / MR; p < p_end; ++p) {
                micro_kernel<T, MR, NR>(kc, apack.data() + p * kc * MR,
                                        bpack.data() + q * kc * NR, out);
                const int64_t rows = std::min(MR, M - p * MR), cols = std::min(NR, N - q * NR);
                for (int64_t i = 0; i < rows; ++i) {
                  T* crow = c + (p * MR + i) * s.ldc + q * NR;
                  for (int64_t j = 0; j < cols; ++j) crow[j] += alpha * out[i * NR + j];
                }
              }
          }
      }
    }
  }
}

template void gemm_builtin<float>(const GemmShape&, float, const float*, const float*, float,
                                  float*);
template void gemm_builtin<double>(const GemmShape&, double, const double*, const double*, double,
                                   double*);

}  // namespace detail

const OpInfo& gemm_op() {
  static const OpInfo op{
      "gemm",
      "`gemm`, `matmul`",
      {{Backend::CpuReference,
        "OpenBLAS (or the built-in blocked product); `matmul` in bfloat16/float16 "
        "as float32 copies",
        {DType::F32, DType::F64, DType::BF16, DType::F16}},
       {Backend::CudaHandwritten,
        "our tiled shared-memory SGEMM; bfloat16/float16 on our WMMA tensor-core "
        "product (float32 accumulation)",
        {DType::F32, DType::BF16, DType::F16}},
       {Backend::CudaCublas,
        "cublasSgemm; bfloat16/float16 by cublasGemmEx with CUBLAS_COMPUTE_32F",
        {DType::F32, DType::BF16, DType::F16}}}};
  return op;
}

Backend select_gemm_backend(const Device& d, DType dtype) {
  return select_backend(gemm_op(), d, dtype);
}

template <typename T>
void gemm(Backend b, Device dev, const GemmShape& s, T alpha, const T* A, const T* B, T beta,
          T* C) {
  check_gemm_shape(s);
  check_backend(gemm_op(), b, dev, dtype_v<T>, "gemm");
  if (s.M == 0 || s.N == 0) return;
  switch (b) {
    case Backend::CudaHandwritten:
    case Backend::CudaCublas:
      if constexpr (std::is_same_v<T, float>) {
        MINIDL_IF_CUDA({
          CudaContext& ctx = cuda_context(dev);
          if (b == Backend::CudaHandwritten)
            cuda::sgemm_handwritten(s, alpha, A, B, beta, C, ctx);
          else
            cuda::sgemm_cublas(s, alpha, A, B, beta, C, device_settings(dev).allow_tf32, ctx);
        });
      }
      return;
    default: cpu::gemm<T>(s, alpha, A, B, beta, C);
  }
}

template <typename T>
void gemm(Device dev, const GemmShape& s, T alpha, const T* A, const T* B, T beta, T* C) {
  gemm<T>(select_gemm_backend(dev, dtype_v<T>), dev, s, alpha, A, B, beta, C);
}

template void gemm<float>(Backend, Device, const GemmShape&, float, const float*, const float*,
                          float, float*);
template void gemm<double>(Backend, Device, const GemmShape&, double, const double*, const double*,
                           double, double*);
template void gemm<float>(Device, const GemmShape&, float, const float*, const float*, float,
                          float*);
template void gemm<double>(Device, const GemmShape&, double, const double*, const double*, double,
                           double*);

void gemm_lowp(Backend b, Device dev, const GemmShape& s, DType in, float alpha, const void* A,
               const void* B, float beta, float* C) {
  check_gemm_shape(s);
  MINIDL_CHECK(is_low_precision(in), "gemm_lowp: A and B must be bfloat16 or float16, got ",
               dtype_name(in));
  check_backend(gemm_op(), b, dev, in, "gemm_lowp");
  if (s.M == 0 || s.N == 0) return;
  switch (b) {
    case Backend::CudaHandwritten:
      MINIDL_IF_CUDA(cuda::gemm_tc(s, in, alpha, A, B, beta, C, cuda_context(dev)));
      return;
    case Backend::CudaCublas:
      MINIDL_IF_CUDA(cuda::gemm_ex_cublas(s, in, alpha, A, B, beta, C, cuda_context(dev)));
      return;
    default: {
      // cpu-reference: float32 copies of every element the product reads (exact), then sgemm.
      const auto widen_all = [&](const void* p, bool trans, int64_t rows, int64_t cols, int64_t ld,
                                 int64_t stride) {
        const int64_t r = trans ? cols : rows;  // stored rows
        const int64_t n = (s.batch - 1) * stride + (r - 1) * ld + (trans ? rows : cols);
        std::vector<float> out(static_cast<size_t>(std::max<int64_t>(n, 0)));
        const uint16_t* bits = static_cast<const uint16_t*>(p);
        for (size_t i = 0; i < out.size(); ++i)
          out[i] = in == DType::BF16 ? bf16_bits_to_float(bits[i]) : f16_bits_to_float(bits[i]);
        return out;
      };
      if (s.K == 0) {
        cpu::gemm<float>(s, alpha, static_cast<const float*>(nullptr),
                         static_cast<const float*>(nullptr), beta, C);
        return;
      }
      const std::vector<float> a = widen_all(A, s.trans_a, s.M, s.K, s.lda, s.stride_a);
      const std::vector<float> bm = widen_all(B, s.trans_b, s.K, s.N, s.ldb, s.stride_b);
      cpu::gemm<float>(s, alpha, a.data(), bm.data(), beta, C);
    }
  }
}

void matmul(Tensor& C, const Tensor& A, const Tensor& B, bool trans_a, bool trans_b, double alpha,
            double beta) {
  matmul(select_gemm_backend(A.device(), A.dtype()), C, A, B, trans_a, trans_b, alpha, beta);
}

void matmul(Backend b, Tensor& C, const Tensor& A, const Tensor& B, bool trans_a, bool trans_b,
            double alpha, double beta) {
  const char* who = "matmul";
  MINIDL_CHECK(A.dim() == 2 && B.dim() == 2 && C.dim() == 2, who, ": expects 2-D tensors, got A ",
               A.shape(), ", B ", B.shape(), ", C ", C.shape());
  check_same_device(A, B, who);
  check_same_device(A, C, who);
  check_dtype(B, A.dtype(), who, "B");
  // bfloat16/float16 A and B accumulate in float32 and round into C once, or leave C float32.
  if (!(is_low_precision(A.dtype()) && C.dtype() == DType::F32)) check_dtype(C, A.dtype(), who, "C");
  const int64_t M = trans_a ? A.size(1) : A.size(0), K = trans_a ? A.size(0) : A.size(1);
  const int64_t Kb = trans_b ? B.size(1) : B.size(0), N = trans_b ? B.size(0) : B.size(1);
  MINIDL_CHECK(K == Kb, who, ": inner dimensions differ: op(A) is ", M, " x ", K, " (A ", A.shape(),
               trans_a ? " transposed" : "", ") but op(B) is ", Kb, " x ", N, " (B ", B.shape(),
               trans_b ? " transposed" : "", ")");
  check_shape(C, Shape{M, N}, who, "C");
  GemmShape s;
  s.trans_a = trans_a;
  s.trans_b = trans_b;
  s.M = M;
  s.N = N;
  s.K = K;
  s.lda = std::max<int64_t>(1, A.size(1));
  s.ldb = std::max<int64_t>(1, B.size(1));
  s.ldc = std::max<int64_t>(1, N);
  if (is_low_precision(A.dtype())) {
    // 16-bit A and B go to gemm_lowp as they are (float32 accumulation; cpu-reference widens them
    // exactly), into a float32 C, rounded once into a 16-bit C.
    Tensor c32 = to_dtype(C, DType::F32);
    if (c32.same_data(C)) c32 = C;
    gemm_lowp(b, A.device(), s, A.dtype(), static_cast<float>(alpha), A.raw_data(), B.raw_data(),
              static_cast<float>(beta), c32.data<float>());
    if (!c32.same_data(C)) convert(C, c32);  // (convert's own rule picks its backend)
    return;
  }
  dispatch_floating(A.dtype(), who, [&]<typename T>() {
    gemm<T>(b, A.device(), s, static_cast<T>(alpha), A.data<T>(), B.data<T>(), static_cast<T>(beta),
            C.data<T>());
  });
}

}  // namespace minidl

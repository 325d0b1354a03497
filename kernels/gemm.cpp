// Matrix products: argument checks, device dispatch and the CPU path (OpenBLAS). The CUDA
// kernels (our tiled SGEMM and the cuBLAS call) are in gemm.cu; the formulas are in gemm.h.
#include "kernels/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <type_traits>

namespace minidl {

namespace {

std::atomic<bool> g_allow_tf32{false};

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
}

}  // namespace cpu

}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }

template <typename T>
void gemm(Device dev, KernelPath path, const GemmShape& s, T alpha, const T* A, const T* B, T beta,
          T* C) {
  check_gemm_shape(s);
  if (s.M == 0 || s.N == 0) return;
  if (dev.is_cuda()) {
    if constexpr (std::is_same_v<T, float>) {
      MINIDL_IF_CUDA({
        CudaContext& ctx = cuda_context(dev);
        if (path == KernelPath::Handwritten)
          cuda::sgemm_handwritten(s, alpha, A, B, beta, C, ctx);
        else
          cuda::sgemm_cublas(s, alpha, A, B, beta, C, allow_tf32(), ctx);
      });
    } else {
      throw_error(str("gemm: float64 is not supported on ", dev,
                      " (CUDA products are float32; use float64 on the CPU for reference checks)"));
    }
    return;
  }
  cpu::gemm<T>(s, alpha, A, B, beta, C);
}

template void gemm<float>(Device, KernelPath, const GemmShape&, float, const float*, const float*,
                          float, float*);
template void gemm<double>(Device, KernelPath, const GemmShape&, double, const double*,
                           const double*, double, double*);

void matmul(Tensor& C, const Tensor& A, const Tensor& B, bool trans_a, bool trans_b, double alpha,
            double beta, KernelPath path) {
  const char* who = "matmul";
  MINIDL_CHECK(A.dim() == 2 && B.dim() == 2 && C.dim() == 2, who, ": expects 2-D tensors, got A ",
               A.shape(), ", B ", B.shape(), ", C ", C.shape());
  check_same_device(A, B, who);
  check_same_device(A, C, who);
  check_dtype(B, A.dtype(), who, "B");
  check_dtype(C, A.dtype(), who, "C");
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
  dispatch_floating(A.dtype(), who, [&]<typename T>() {
    gemm<T>(A.device(), path, s, static_cast<T>(alpha), A.data<T>(), B.data<T>(),
            static_cast<T>(beta), C.data<T>());
  });
}

}  // namespace minidl

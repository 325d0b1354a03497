// Matrix products, row-major throughout:
//
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]      for b in [0, batch)
//
// op(X) is X or X^T; C is M x N, op(A) is M x K, op(B) is K x N; lda/ldb/ldc are row strides and
// strideA/B/C the distance between consecutive matrices of the batch (0 repeats one matrix).
//
// Backends (kernels/backend.h):
//   cpu-reference     one cblas_{s,d}gemm per batch entry (OpenBLAS), or, in a build configured
//                     with -DMINIDL_BLAS=OFF, detail::gemm_builtin below (slower; fine for
//                     references);
//   cuda-handwritten  our tiled shared-memory SGEMM (float32);
//   cuda-cublas       cublasSgemm (column-major, so it computes C^T = op(B)^T op(A)^T, which is the
//                     same memory), TF32 when the device's settings allow it.
// bfloat16/float16 A and B (gemm_lowp below; matmul on 16-bit tensors): float32 accumulation,
// float32 C (a 16-bit C is rounded once from it):
//   cpu-reference     float32 copies of A and B (exact), then the float32 product;
//   cuda-handwritten  cuda::gemm_tc, our WMMA tensor-core product (kernels/gemm_tc.h);
//   cuda-cublas       cublasGemmStridedBatchedEx, 16-bit A and B, float32 C, CUBLAS_COMPUTE_32F.
// cuBLAS counts as the vendor of matrix products, so the cudnn kernel path selects cuda-cublas.
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

struct GemmShape {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int64_t batch = 1;
};

const OpInfo& gemm_op();
Backend select_gemm_backend(const Device& d, DType dtype);

// Raw-pointer product on `dev` (all pointers on that device). T is float or double (double:
// CPU only). The first form runs backend `b` (ops built on products pass their own backend on:
// conv2d's cuda-cublas runs its products on cuda-cublas).
template <typename T>
void gemm(Backend b, Device dev, const GemmShape& s, T alpha, const T* A, const T* B, T beta, T* C);
template <typename T>
void gemm(Device dev, const GemmShape& s, T alpha, const T* A, const T* B, T beta, T* C);

// The mixed-precision product: A and B of dtype `in` (bfloat16 or float16, raw 16-bit storage on
// `dev`), C float32 (same shape rules as gemm). The products of conv2d's and linear's 16-bit rows.
void gemm_lowp(Backend b, Device dev, const GemmShape& s, DType in, float alpha, const void* A,
               const void* B, float beta, float* C);

// Tensor form for 2-D operands: C = alpha * op(A) op(B) + beta * C, shapes checked.
void matmul(Tensor& C, const Tensor& A, const Tensor& B, bool trans_a, bool trans_b,
            double alpha = 1.0, double beta = 0.0);
void matmul(Backend b, Tensor& C, const Tensor& A, const Tensor& B, bool trans_a, bool trans_b,
            double alpha = 1.0, double beta = 0.0);

namespace detail {
// The CPU product without BLAS: A and B packed into cache blocks, a register-tiled micro-kernel,
// OpenMP over tiles of C. Used by gemm() when minidl is built with -DMINIDL_BLAS=OFF; always
// compiled, so that its test runs in every build. Same contract as gemm() on the CPU (beta == 0
// never reads C).
template <typename T>
void gemm_builtin(const GemmShape& s, T alpha, const T* A, const T* B, T beta, T* C);
}  // namespace detail

namespace cuda {
void sgemm_handwritten(const GemmShape& s, float alpha, const float* A, const float* B, float beta,
                       float* C, CudaContext& ctx);
void sgemm_cublas(const GemmShape& s, float alpha, const float* A, const float* B, float beta,
                  float* C, bool tf32, CudaContext& ctx);
// cublasGemmStridedBatchedEx: A and B of dtype `in` (bfloat16/float16), C float32, float32 compute.
void gemm_ex_cublas(const GemmShape& s, DType in, float alpha, const void* A, const void* B,
                    float beta, float* C, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

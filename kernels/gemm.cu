// CUDA matrix products (float32), row-major: C[b] = alpha op(A[b]) op(B[b]) + beta C[b].
//
// Hand-written path: a classic tiled SGEMM (the design of Volkov & Demmel 2008, MAGMA and CUTLASS's
// SIMT kernels, without tensor cores).
//   * Each block of 256 threads computes a 128 x 128 tile of C. Per step it stages a 128 x 8 slice
//     of op(A) and an 8 x 128 slice of op(B) in shared memory, both stored "k-major" (As[k][m],
//     Bs[k][n]), so the inner loop reads a row of each with 16-byte loads.
//   * Each thread owns an 8 x 8 micro-tile of C in registers: per k it loads 8 values of A and 8 of
//     B from shared memory and does 64 FMAs, so shared-memory traffic is 1/4 load per FMA, which is
//     what lets a SIMT kernel run at a good fraction of the FP32 peak. The thread's 8 rows are two
//     groups of 4 that are 64 apart (same for columns), so the 16 threads of a half-warp read 16
//     consecutive float4s of Bs (no bank conflicts) and the two distinct rows of As are broadcasts.
//   * The global loads of the next k-slice are issued into registers before the FMAs on the current
//     slice and stored into the second shared buffer after them (double buffering): the memory
//     latency hides behind 512 FMAs per thread, with one __syncthreads per slice.
//   * All four transpose combinations use the same inner loop; only how the slices are read from
//     global memory changes (template parameters, so no branches in the loop). Whichever of m/n or
//     k is contiguous in memory is walked by consecutive threads, so the loads are coalesced.
//     Loads outside the matrix read 0 and stores outside are skipped, so any M, N, K work.
//   * beta == 0 never reads C (BLAS semantics: C may hold garbage, e.g. NaN). The batch is
//     blockIdx.z, each matrix at its own stride (stride 0 repeats one matrix).
//   * Shared memory rows are padded by 4 floats so that the transposing stores (m-major global
//     reads written k-major) spread over all banks.
// __launch_bounds__(256, 2) caps registers at 128 per thread so two blocks share an SM.
//
// cuBLAS path: cuBLAS is column-major, and a row-major matrix is its transpose in column-major, so
// C^T = op(B)^T op(A)^T is one cublasSgemmStridedBatched with A and B swapped and M and N swapped.
#include <limits>

#include "core/cuda_check.h"
#include "kernels/gemm.h"

namespace minidl::cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 8;
constexpr int THREADS = 256;
constexpr int PAD = 4;

// Loads this thread's share (4 values) of a BK-slice of op(X), where op(X) is rows x K and the
// slice covers rows [row0, row0 + 128) and k in [k0, k0 + 8). `k_contiguous`: X is stored with k
// contiguous (X[row * ld + k]); otherwise X[k * ld + row].
//   k contiguous:  thread t reads row t/2, k = 4 (t%2) .. +3  (two threads cover one row's 8 k)
//   row contiguous: thread t reads k = t/32, rows 4 (t%32) .. +3 (a warp reads 128 rows of one k)
template <bool k_contiguous>
__device__ __forceinline__ void load_slice(float (&v)[4], const float* __restrict__ X, int64_t ld,
                                           int rows, int K, int row0, int k0) {
  const int t = threadIdx.x;
  if (k_contiguous) {
    const int row = row0 + (t >> 1), k = k0 + (t & 1) * 4;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      v[i] = (row < rows && k + i < K) ? X[static_cast<int64_t>(row) * ld + k + i] : 0.f;
  } else {
    const int k = k0 + (t >> 5), row = row0 + (t & 31) * 4;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      v[i] = (k < K && row + i < rows) ? X[static_cast<int64_t>(k) * ld + row + i] : 0.f;
  }
}

// Stores what load_slice read into the k-major shared tile S[k][row].
template <bool k_contiguous>
__device__ __forceinline__ void store_slice(float (*S)[BM + PAD], const float (&v)[4]) {
  const int t = threadIdx.x;
  if (k_contiguous) {
    const int row = t >> 1, k = (t & 1) * 4;
#pragma unroll
    for (int i = 0; i < 4; ++i) S[k + i][row] = v[i];
  } else {
    const int k = t >> 5, row = (t & 31) * 4;
    *reinterpret_cast<float4*>(&S[k][row]) = make_float4(v[0], v[1], v[2], v[3]);
  }
}

// op(A) = A (M x K, k contiguous) unless TA (A stored K x M, m contiguous);
// op(B) = B (K x N, n contiguous) unless TB (B stored N x K, k contiguous).
template <bool TA, bool TB>
__global__ void __launch_bounds__(THREADS, 2)
    sgemm_tiled_kernel(int M, int N, int K, float alpha, const float* __restrict__ A, int64_t lda,
                       int64_t stride_a, const float* __restrict__ B, int64_t ldb, int64_t stride_b,
                       float beta, float* __restrict__ C, int64_t ldc, int64_t stride_c) {
  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];

  A += blockIdx.z * stride_a;
  B += blockIdx.z * stride_b;
  C += blockIdx.z * stride_c;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  float va[4], vb[4];
  load_slice<!TA>(va, A, lda, M, K, m0, 0);
  load_slice<TB>(vb, B, ldb, N, K, n0, 0);
  store_slice<!TA>(As[0], va);
  store_slice<TB>(Bs[0], vb);
  __syncthreads();

  int buf = 0;
  for (int k0 = 0; k0 < K; k0 += BK) {
    const bool has_next = k0 + BK < K;
    if (has_next) {  // issue the next slice's global loads now; they complete during the FMAs
      load_slice<!TA>(va, A, lda, M, K, m0, k0 + BK);
      load_slice<TB>(vb, B, ldb, N, K, n0, k0 + BK);
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][k][ty * 4 + 64]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][k][tx * 4 + 64]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    // The other buffer was last read in the previous step, which every thread has finished (the
    // barrier below), so it can be overwritten while slow threads still read `buf`.
    if (has_next) {
      store_slice<!TA>(As[buf ^ 1], va);
      store_slice<TB>(Bs[buf ^ 1], vb);
    }
    __syncthreads();
    buf ^= 1;
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + ty * 4 + (i & 3) + (i >> 2) * 64;
    if (m >= M) continue;
    float* c_row = C + static_cast<int64_t>(m) * ldc;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int n = n0 + tx * 4 + (j & 3) + (j >> 2) * 64;
      if (n >= N) continue;
      const float v = alpha * acc[i][j];
      c_row[n] = beta == 0.f ? v : v + beta * c_row[n];
    }
  }
}

template <bool TA, bool TB>
void launch_tiled(const GemmShape& s, float alpha, const float* A, const float* B, float beta,
                  float* C, CudaContext& ctx) {
  const dim3 grid(static_cast<unsigned>((s.N + BN - 1) / BN),
                  static_cast<unsigned>((s.M + BM - 1) / BM), static_cast<unsigned>(s.batch));
  sgemm_tiled_kernel<TA, TB><<<grid, THREADS, 0, ctx.stream>>>(
      static_cast<int>(s.M), static_cast<int>(s.N), static_cast<int>(s.K), alpha, A, s.lda,
      s.stride_a, B, s.ldb, s.stride_b, beta, C, s.ldc, s.stride_c);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

}  // namespace

void sgemm_handwritten(const GemmShape& s, float alpha, const float* A, const float* B, float beta,
                       float* C, CudaContext& ctx) {
  if (s.M == 0 || s.N == 0) return;
  MINIDL_CHECK((s.M + BM - 1) / BM <= 65535 && s.batch <= 65535, "sgemm_handwritten: M=", s.M,
               " and batch=", s.batch, " must give at most 65535 tiles in grid y and z");
  if (!s.trans_a && !s.trans_b)
    launch_tiled<false, false>(s, alpha, A, B, beta, C, ctx);
  else if (!s.trans_a && s.trans_b)
    launch_tiled<false, true>(s, alpha, A, B, beta, C, ctx);
  else if (s.trans_a && !s.trans_b)
    launch_tiled<true, false>(s, alpha, A, B, beta, C, ctx);
  else
    launch_tiled<true, true>(s, alpha, A, B, beta, C, ctx);
}

void sgemm_cublas(const GemmShape& s, float alpha, const float* A, const float* B, float beta,
                  float* C, bool tf32, CudaContext& ctx) {
  if (s.M == 0 || s.N == 0) return;
  // The handle is shared by every op on this device and is kept in pedantic fp32 (see
  // core/cuda_runtime.cpp); TF32 is switched on for this call only.
  if (tf32) CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, CUBLAS_TF32_TENSOR_OP_MATH));
  // Row-major C (M x N) is column-major C^T (N x M): C^T = op(B)^T op(A)^T, so cuBLAS's "A" is our
  // B with our B's transpose flag, its "B" is our A, and its m, n are our N, M.
  const cublasStatus_t st = cublasSgemmStridedBatched(
      ctx.cublas, s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(s.N), static_cast<int>(s.M), static_cast<int>(s.K), &alpha, B,
      static_cast<int>(s.ldb), s.stride_b, A, static_cast<int>(s.lda), s.stride_a, &beta, C,
      static_cast<int>(s.ldc), s.stride_c, static_cast<int>(s.batch));
  if (tf32) CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, CUBLAS_PEDANTIC_MATH));
  CUBLAS_CHECK(st);
}

void gemm_ex_cublas(const GemmShape& s, DType in, float alpha, const void* A, const void* B,
                    float beta, float* C, CudaContext& ctx) {
  MINIDL_CHECK(in == DType::BF16 || in == DType::F16,
               "gemm_ex_cublas: A and B must be bfloat16 or float16, got ", dtype_name(in));
  if (s.M == 0 || s.N == 0) return;
  const cudaDataType t = in == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  // The same row-major <-> column-major exchange as sgemm_cublas above; CUBLAS_COMPUTE_32F
  // accumulates in float32. The shared handle is kept in pedantic math (see sgemm_cublas), which
  // may keep cuBLAS off the tensor cores; default math for this call, where 16-bit products
  // accumulated in float32 are exactly what the tensor cores compute.
  CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, CUBLAS_DEFAULT_MATH));
  const cublasStatus_t st = cublasGemmStridedBatchedEx(
      ctx.cublas, s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(s.N), static_cast<int>(s.M), static_cast<int>(s.K), &alpha, B, t,
      static_cast<int>(s.ldb), s.stride_b, A, t, static_cast<int>(s.lda), s.stride_a, &beta, C,
      CUDA_R_32F, static_cast<int>(s.ldc), s.stride_c, static_cast<int>(s.batch),
      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, CUBLAS_PEDANTIC_MATH));
  CUBLAS_CHECK(st);
}

}  // namespace minidl::cuda

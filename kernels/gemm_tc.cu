// Tensor-core matrix product (kernels/gemm_tc.h): bfloat16 or float16 A and B, float32 accumulate
// and C, row-major: C[b] = alpha op(A[b]) op(B[b]) + beta C[b].
//
// Design (the WMMA form of the tiled GEMM in kernels/gemm.cu; CUTLASS's "multistage" kernels do the
// same with cp.async and ldmatrix/mma.sync):
//   * A block of 256 threads (8 warps) computes a 128 x 128 tile of C. Per step it stages a
//     128 x 32 slice of op(A) (As[m][k]) and a 32 x 128 slice of op(B) (Bs[k][n]) in shared memory,
//     always in that orientation, so one compute loop serves the four transpose combinations; only
//     the staging differs (template parameters). Rows are padded by 8 elements: the leading
//     dimensions (40, 136) stay multiples of 8 elements, as WMMA requires, every fragment's start
//     stays 32-byte aligned, and consecutive rows start in different banks.
//   * The warps form a 4 x 2 grid; each owns a 32 x 64 piece of the tile, 2 x 4 accumulator
//     fragments (16 x 16 float each), and per 16-wide k step loads 2 A and 4 B fragments and issues
//     8 mma_sync (m16n16k16).
//   * Each thread moves 16 consecutive elements of each operand per step: two 16-byte loads where
//     the matrix's pointer, leading dimension and batch stride allow it (decided on the host, one
//     flag per operand), else 16 predicated 2-byte loads. Whatever lies outside the matrix reads as
//     0, so any M, N, K work: the zero padding adds nothing to the sums.
//   * Double buffering as in gemm.cu: the next slice's global loads are issued into registers
//     before the current slice's mma_sync and written to the other shared buffer after them, with
//     one __syncthreads per step.
//   * Epilogue: the fragment-to-lane mapping is unspecified, so each accumulator goes through a
//     per-warp 16 x 16 float scratch tile (store_matrix_sync), from which each lane writes 8
//     elements of C with the bounds checks and alpha/beta (beta == 0 never reads C). The barriers
//     around the scratch are __syncthreads, not __syncwarp, because cudasim's race checker orders
//     shared-memory accesses by block barriers only; every warp runs the same epilogue loop.
// Shared memory: 20 KiB (A, two buffers) + 17 KiB (B) + 8 KiB (scratch) = 45 KiB, under the 48 KiB
// a block gets without opting in.
//
// Tensor-core bfloat16 needs sm_80; the host entry point refuses older devices, and the kernel
// body is compiled only for sm_80 and newer.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "kernels/gemm_tc.h"

namespace minidl::cuda {

namespace {

using namespace nvcuda;

constexpr int BM = 128, BN = 128, BK = 32, THREADS = 256;
constexpr int LDA_S = BK + 8, LDB_S = BN + 8;  // shared leading dimensions (elements)
constexpr int WARPS_M = 4, WARPS_N = 2;
constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // 32 x 64 per warp
constexpr int FM = WM / 16, FN = WN / 16;            // 2 x 4 fragments per warp

template <class T>
__device__ __forceinline__ T from_bits(unsigned short b);
template <>
__device__ __forceinline__ __half from_bits<__half>(unsigned short b) {
  return __ushort_as_half(b);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_bits<__nv_bfloat16>(unsigned short b) {
  return __ushort_as_bfloat16(b);
}

// Element i (0..15) of 16 packed 16-bit values.
__device__ __forceinline__ unsigned short elem(const uint4 (&r)[2], int i) {
  const uint4& q = r[i >> 3];
  const int j = (i >> 1) & 3;
  const unsigned w = j == 0 ? q.x : j == 1 ? q.y : j == 2 ? q.z : q.w;
  return static_cast<unsigned short>((i & 1) ? w >> 16 : w & 0xffffu);
}

// r = X[outer * ld + inner0 .. + 15], zero outside [0, outer_n) x [0, inner_n). `vec`: X and ld
// allow 16-byte loads (inner0 is a multiple of 16).
__device__ __forceinline__ void load_run(uint4 (&r)[2], const unsigned short* __restrict__ X,
                                         int64_t ld, int outer, int inner0, int outer_n,
                                         int inner_n, bool vec) {
  const unsigned short* row = X + static_cast<int64_t>(outer) * ld;
  if (vec && outer < outer_n && inner0 + 16 <= inner_n) {
    r[0] = reinterpret_cast<const uint4*>(row + inner0)[0];
    r[1] = reinterpret_cast<const uint4*>(row + inner0)[1];
    return;
  }
  unsigned w[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int c = inner0 + 2 * i;
    const unsigned lo = outer < outer_n && c < inner_n ? row[c] : 0u;
    const unsigned hi = outer < outer_n && c + 1 < inner_n ? row[c + 1] : 0u;
    w[i] = lo | hi << 16;
  }
  r[0] = make_uint4(w[0], w[1], w[2], w[3]);
  r[1] = make_uint4(w[4], w[5], w[6], w[7]);
}

// One operand's 16 elements for the slice starting at k0, and where they go in shared memory.
// op(A) (M x K): A is M x K (k contiguous) unless TA (A is K x M, m contiguous).
//   k contiguous: thread t takes row t/2, k = 16 (t%2) .. +15; stored as one run of As[row].
//   m contiguous: thread t takes k = t/8, m = 16 (t%8) .. +15; stored down a column of As.
// op(B) (K x N): B is K x N (n contiguous) unless TB (B is N x K, k contiguous); the same with the
// roles of rows and columns of Bs[k][n] exchanged.
template <bool TA>
__device__ __forceinline__ void load_a(uint4 (&r)[2], const unsigned short* A, int64_t lda, int M,
                                       int K, int m0, int k0, bool vec) {
  const int t = threadIdx.x;
  if (!TA)
    load_run(r, A, lda, m0 + (t >> 1), k0 + (t & 1) * 16, M, K, vec);
  else
    load_run(r, A, lda, k0 + (t >> 3), m0 + (t & 7) * 16, K, M, vec);
}
template <bool TA, class T>
__device__ __forceinline__ void store_a(T (*As)[LDA_S], const uint4 (&r)[2]) {
  const int t = threadIdx.x;
  if (!TA) {
    uint4* dst = reinterpret_cast<uint4*>(&As[t >> 1][(t & 1) * 16]);
    dst[0] = r[0];
    dst[1] = r[1];
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) As[(t & 7) * 16 + i][t >> 3] = from_bits<T>(elem(r, i));
  }
}
template <bool TB>
__device__ __forceinline__ void load_b(uint4 (&r)[2], const unsigned short* B, int64_t ldb, int N,
                                       int K, int n0, int k0, bool vec) {
  const int t = threadIdx.x;
  if (!TB)
    load_run(r, B, ldb, k0 + (t >> 3), n0 + (t & 7) * 16, K, N, vec);
  else
    load_run(r, B, ldb, n0 + (t >> 1), k0 + (t & 1) * 16, N, K, vec);
}
template <bool TB, class T>
__device__ __forceinline__ void store_b(T (*Bs)[LDB_S], const uint4 (&r)[2]) {
  const int t = threadIdx.x;
  if (!TB) {
    uint4* dst = reinterpret_cast<uint4*>(&Bs[t >> 3][(t & 7) * 16]);
    dst[0] = r[0];
    dst[1] = r[1];
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) Bs[(t & 1) * 16 + i][t >> 1] = from_bits<T>(elem(r, i));
  }
}

template <class T, bool TA, bool TB>
__global__ void __launch_bounds__(THREADS)
    gemm_tc_kernel(int M, int N, int K, float alpha, const unsigned short* __restrict__ A,
                   int64_t lda, int64_t stride_a, bool vec_a, const unsigned short* __restrict__ B,
                   int64_t ldb, int64_t stride_b, bool vec_b, float beta, float* __restrict__ C,
                   int64_t ldc, int64_t stride_c) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  __shared__ __align__(32) T As[2][BM][LDA_S];
  __shared__ __align__(32) T Bs[2][BK][LDB_S];
  __shared__ __align__(32) float Cs[WARPS_M * WARPS_N][16 * 16];

  A += blockIdx.z * stride_a;
  B += blockIdx.z * stride_b;
  C += blockIdx.z * stride_c;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  uint4 ra[2], rb[2];
  load_a<TA>(ra, A, lda, M, K, m0, 0, vec_a);
  load_b<TB>(rb, B, ldb, N, K, n0, 0, vec_b);
  store_a<TA>(As[0], ra);
  store_b<TB>(Bs[0], rb);
  __syncthreads();

  const int steps = (K + BK - 1) / BK;
  for (int step = 0; step < steps; ++step) {
    const int buf = step & 1;
    const bool has_next = step + 1 < steps;
    if (has_next) {  // the next slice's global loads complete during the mma_syncs below
      load_a<TA>(ra, A, lda, M, K, m0, (step + 1) * BK, vec_a);
      load_b<TB>(rb, B, ldb, N, K, n0, (step + 1) * BK, vec_b);
    }
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i)
        wmma::load_matrix_sync(a[i], &As[buf][wm * WM + i * 16][kk], LDA_S);
#pragma unroll
      for (int j = 0; j < FN; ++j)
        wmma::load_matrix_sync(b[j], &Bs[buf][kk][wn * WN + j * 16], LDB_S);
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    // The other buffer was last read in the previous step, which every thread has finished (the
    // barrier below), so it can be overwritten while slower warps still read `buf`.
    if (has_next) {
      store_a<TA>(As[buf ^ 1], ra);
      store_b<TB>(Bs[buf ^ 1], rb);
    }
    __syncthreads();
  }

  float* cs = Cs[warp];
  const int r = lane / 2, c0 = (lane % 2) * 8;
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) {
      wmma::store_matrix_sync(cs, acc[i][j], 16, wmma::mem_row_major);
      __syncthreads();
      const int m = m0 + wm * WM + i * 16 + r;
      if (m < M) {
        float* c_row = C + static_cast<int64_t>(m) * ldc;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const int n = n0 + wn * WN + j * 16 + c0 + e;
          if (n >= N) continue;
          const float v = alpha * cs[r * 16 + c0 + e];
          c_row[n] = beta == 0.f ? v : v + beta * c_row[n];
        }
      }
      __syncthreads();  // the scratch is rewritten by the next fragment
    }
#endif
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class T, bool TA, bool TB>
void launch(const GemmShape& s, float alpha, const void* A, const void* B, float beta, float* C,
            CudaContext& ctx) {
  const dim3 grid(static_cast<unsigned>((s.N + BN - 1) / BN),
                  static_cast<unsigned>((s.M + BM - 1) / BM), static_cast<unsigned>(s.batch));
  // 16-byte loads need every run of 8 elements they read to start 16-byte aligned: the base
  // pointer, the leading dimension and (with a batch) the stride in multiples of 8 elements.
  const bool vec_a = aligned16(A) && s.lda % 8 == 0 && (s.batch == 1 || s.stride_a % 8 == 0);
  const bool vec_b = aligned16(B) && s.ldb % 8 == 0 && (s.batch == 1 || s.stride_b % 8 == 0);
  gemm_tc_kernel<T, TA, TB><<<grid, THREADS, 0, ctx.stream>>>(
      static_cast<int>(s.M), static_cast<int>(s.N), static_cast<int>(s.K), alpha,
      static_cast<const unsigned short*>(A), s.lda, s.stride_a, vec_a,
      static_cast<const unsigned short*>(B), s.ldb, s.stride_b, vec_b, beta, C, s.ldc, s.stride_c);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <class T>
void dispatch(const GemmShape& s, float alpha, const void* A, const void* B, float beta, float* C,
              CudaContext& ctx) {
  if (!s.trans_a && !s.trans_b)
    launch<T, false, false>(s, alpha, A, B, beta, C, ctx);
  else if (!s.trans_a && s.trans_b)
    launch<T, false, true>(s, alpha, A, B, beta, C, ctx);
  else if (s.trans_a && !s.trans_b)
    launch<T, true, false>(s, alpha, A, B, beta, C, ctx);
  else
    launch<T, true, true>(s, alpha, A, B, beta, C, ctx);
}

}  // namespace

void gemm_tc(const GemmShape& s, DType in, float alpha, const void* A, const void* B, float beta,
             float* C, CudaContext& ctx) {
  MINIDL_CHECK(in == DType::BF16 || in == DType::F16,
               "gemm_tc: A and B must be bfloat16 or float16, got ", dtype_name(in));
  if (s.M == 0 || s.N == 0) return;
  MINIDL_CHECK((s.M + BM - 1) / BM <= 65535 && s.batch <= 65535, "gemm_tc: M=", s.M,
               " and batch=", s.batch, " must give at most 65535 tiles in grid y and z");
  MINIDL_CHECK(s.M <= INT32_MAX && s.N <= INT32_MAX && s.K <= INT32_MAX, "gemm_tc: M, N, K (", s.M,
               ", ", s.N, ", ", s.K, ") must fit in 32 bits");
  int major = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ctx.device));
  MINIDL_CHECK(major >= 8,
               "gemm_tc: tensor-core bfloat16/float16 products need compute capability "
               "8.0 (A100) or newer; cuda:",
               ctx.device, " is sm_", major, "x (run float32 there)");
  if (in == DType::BF16)
    dispatch<__nv_bfloat16>(s, alpha, A, B, beta, C, ctx);
  else
    dispatch<__half>(s, alpha, A, B, beta, C, ctx);
}

}  // namespace minidl::cuda

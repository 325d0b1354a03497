// The tensor-core GEMM (kernels/gemm_tc.h) against the float64 product of the same bfloat16/float16
// inputs, on shapes that are not multiples of the 128 x 128 x 32 tile or of 16 (padding and
// predication), on shapes where every loop runs more than once (2-3 tiles in M and N, 4-7 k steps,
// a batch), all four transpose combinations, padded leading dimensions, both the 16-byte and the
// 2-byte load paths, beta == 0 over a NaN-poisoned C and beta != 0, and C's row padding, which
// must be left untouched. Runs on a GPU and on cudasim (normal, race and protect modes).
//
// Bound: the inputs are 16-bit floats, so each product a_k b_k (at most 11 + 11 significant bits)
// is exact in float32 and only the K additions round: for any order of summation,
// |acc - sum_k a_k b_k| <= gamma_K S, S = sum_k |a_k b_k|, gamma_n = n u / (1 - n u). Tensor cores
// accumulate in an unspecified order and some generations truncate rather than round (Fasi et al.
// 2021), so u = 2^-23 (1 ulp per addition, not 1/2). The epilogue alpha acc + beta C rounds at most
// 3 times: |C - C_exact| <= |alpha| gamma_K S + gamma_3 (|alpha| S (1 + gamma_K) + |beta C0|).
// An accumulation in 16 bits instead of float32 would be off by ~2^-9 S, over 100x the bound at
// these K; a wrong element, tile or transpose is off by O(S).
#include "kernels/gemm_tc.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "../support/test_util.h"
#include "core/cuda_context.h"
#include "core/tensor.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct TcCase {
  bool ta, tb;
  int64_t M, N, K, batch;
  int64_t pad;  // added to every leading dimension
  int64_t gap;  // added to every batch stride
  float alpha, beta;
};

// Bits of a 16-bit float nearest to v, and back (NVIDIA's host conversions on a GPU build,
// cudasim's on the emulator; both checked exhaustively by cudasim/tests/lowp_test.cpp).
uint16_t to_bits(float v, DType t) {
  return t == DType::BF16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v))
                          : __half_as_ushort(__float2half_rn(v));
}
double from_bits(uint16_t b, DType t) {
  return t == DType::BF16 ? __bfloat162float(__ushort_as_bfloat16(b))
                          : __half2float(__ushort_as_half(b));
}

// A device buffer holding `host`'s bytes.
template <class T>
Tensor device_copy(const std::vector<T>& host) {
  Tensor t = Tensor::empty(Shape{static_cast<int64_t>(host.size() * sizeof(T))}, DType::U8,
                           Device::cuda(0));
  memcpy_any(t.raw_data(), t.device(), host.data(), Device::cpu(), host.size() * sizeof(T));
  return t;
}

void run_case(const TcCase& c, DType dt, Generator& g) {
  const int64_t rows_a = c.ta ? c.K : c.M, cols_a = c.ta ? c.M : c.K;
  const int64_t rows_b = c.tb ? c.N : c.K, cols_b = c.tb ? c.K : c.N;
  GemmShape s;
  s.trans_a = c.ta;
  s.trans_b = c.tb;
  s.M = c.M;
  s.N = c.N;
  s.K = c.K;
  s.batch = c.batch;
  s.lda = cols_a + c.pad;
  s.ldb = cols_b + c.pad;
  s.ldc = c.N + c.pad;
  s.stride_a = rows_a * s.lda + c.gap;
  s.stride_b = rows_b * s.ldb + c.gap;
  s.stride_c = c.M * s.ldc + c.gap;
  const size_t na = static_cast<size_t>(s.stride_a * c.batch),
               nb = static_cast<size_t>(s.stride_b * c.batch);
  const size_t nc = static_cast<size_t>(s.stride_c * c.batch);
  std::vector<uint16_t> A(na), B(nb);
  for (auto& v : A) v = to_bits(static_cast<float>(g.uniform(-2, 2)), dt);
  for (auto& v : B) v = to_bits(static_cast<float>(g.uniform(-2, 2)), dt);
  // C: inside the matrices NaN (beta == 0 must not read it) or random; outside (row padding, batch
  // gaps) a sentinel that must survive.
  const float sentinel = 12345.f;
  std::vector<float> C0(nc, sentinel);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n)
        C0[static_cast<size_t>(b * s.stride_c + m * s.ldc + n)] =
            c.beta == 0.f ? NAN : static_cast<float>(g.uniform(-2, 2));
  Tensor dA = device_copy(A), dB = device_copy(B), dC = device_copy(C0);
  cuda::gemm_tc(s, dt, c.alpha, dA.raw_data(), dB.raw_data(), c.beta,
                static_cast<float*>(dC.raw_data()), cuda_context(0));
  std::vector<float> C(nc);
  memcpy_any(C.data(), Device::cpu(), dC.raw_data(), dC.device(), nc * sizeof(float));

  const double u = std::ldexp(1.0, -23);
  auto gamma = [u](double n) { return n * u / (1 - n * u); };
  int bad = 0;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        double sum = 0, S = 0;
        for (int64_t k = 0; k < c.K; ++k) {
          const double a = from_bits(
              A[static_cast<size_t>(b * s.stride_a + (c.ta ? k * s.lda + m : m * s.lda + k))], dt);
          const double bb = from_bits(
              B[static_cast<size_t>(b * s.stride_b + (c.tb ? n * s.ldb + k : k * s.ldb + n))], dt);
          sum += a * bb;
          S += std::fabs(a * bb);
        }
        const size_t ic = static_cast<size_t>(b * s.stride_c + m * s.ldc + n);
        const double c0 = c.beta == 0.f ? 0.0 : C0[ic];
        const double ref = c.alpha * sum + c.beta * c0;
        const double bound =
            std::fabs(c.alpha) * gamma(static_cast<double>(c.K)) * S +
            gamma(3) * (std::fabs(c.alpha) * S * (1 + gamma(static_cast<double>(c.K))) +
                        std::fabs(c.beta * c0));
        if (!(std::fabs(C[ic] - ref) <= bound) && bad++ < 5)
          UNSCOPED_INFO("C[" << b << "](" << m << "," << n << ") = " << C[ic] << ", float64 " << ref
                             << ", bound " << bound);
        C[ic] = sentinel;  // checked; the rest must still be the sentinel
      }
  CHECK(bad == 0);
  int touched = 0;
  for (float v : C) touched += v != sentinel;
  CHECK(touched == 0);  // nothing outside the M x N matrices was written
}

}  // namespace

TEST_CASE("gemm_tc: tensor-core bf16/fp16 products match float64 within the float32 bound",
          "[cuda][gemm_tc][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // (M, N, K): tiny; all odd; 2 x 3 tiles and 4 k steps with a batch; transposes with padded
  // leading dimensions; 3 x 2 tiles and 7 k steps; exact tiles on the 16-byte path; K = 0; both
  // operands on the 16-byte path with a partial k slice.
  const TcCase cases[] = {
      {false, false, 1, 1, 1, 1, 0, 0, 1.f, 0.f},
      {false, false, 17, 33, 45, 1, 0, 0, 1.5f, -0.5f},
      {false, false, 150, 260, 104, 2, 0, 0, 1.f, 0.f},
      {true, false, 131, 129, 200, 1, 3, 0, 1.f, 1.f},
      {false, true, 64, 300, 77, 3, 5, 3, -2.f, 0.f},
      {true, true, 257, 140, 96, 1, 0, 0, 1.f, 0.f},
      {true, false, 136, 136, 64, 2, 0, 8, 0.5f, 2.f},
      {false, false, 5, 7, 0, 1, 1, 0, 1.f, -1.f},
      // Both operands k-contiguous on the 16-byte path with a partial last k slice (88 = 2 x 32
      // + 24): the only direction where a load past the matrix would reach into the sums.
      {false, true, 70, 90, 88, 1, 0, 0, 1.f, 0.f},
  };
  for (DType dt : {DType::BF16, DType::F16})
    for (const TcCase& c : cases) {
      INFO(dtype_name(dt) << " M=" << c.M << " N=" << c.N << " K=" << c.K << " batch=" << c.batch
                          << " ta=" << c.ta << " tb=" << c.tb << " pad=" << c.pad
                          << " alpha=" << c.alpha << " beta=" << c.beta);
      run_case(c, dt, g);
    }
}

TEST_CASE("gemm_tc: refuses inputs that are not 16-bit floats", "[cuda][gemm_tc]") {
  GemmShape s;
  s.M = s.N = s.K = 16;
  s.lda = s.ldb = s.ldc = 16;
  Tensor a = Tensor::empty(Shape{256}, DType::F32, Device::cuda(0));
  Tensor c = Tensor::empty(Shape{256}, DType::F32, Device::cuda(0));
  CHECK_THROWS_WITH(cuda::gemm_tc(s, DType::F32, 1.f, a.raw_data(), a.raw_data(), 0.f,
                                  static_cast<float*>(c.raw_data()), cuda_context(0)),
                    Catch::Contains("must be bfloat16 or float16"));
}

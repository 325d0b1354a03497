#include "kernels/gemm.h"

#include <catch2/catch.hpp>
#include <vector>

#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// C[b] = alpha op(A[b]) op(B[b]) + beta C[b] by the definition, in double.
std::vector<double> naive_gemm(const GemmShape& s, double alpha, const std::vector<double>& A,
                               const std::vector<double>& B, double beta, std::vector<double> C) {
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t n = 0; n < s.N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < s.K; ++k) {
          const double a =
              s.trans_a ? A[b * s.stride_a + k * s.lda + m] : A[b * s.stride_a + m * s.lda + k];
          const double bv =
              s.trans_b ? B[b * s.stride_b + n * s.ldb + k] : B[b * s.stride_b + k * s.ldb + n];
          acc += a * bv;
        }
        double& c = C[b * s.stride_c + m * s.ldc + n];
        c = alpha * acc + beta * c;
      }
  return C;
}

// Operand sizes (elements) including padding of the leading dimensions and the batch strides.
int64_t extent(int64_t rows, int64_t ld, int64_t stride, int64_t batch) {
  return (batch - 1) * stride + rows * ld;
}

struct GemmCase {
  int64_t M, N, K, batch;
  int pad;        // extra columns in every leading dimension (non-contiguous rows)
  bool repeat_a;  // stride_a = 0: one A shared by the whole batch
};

// Runs `product(shape, alpha, A, B, beta, C)` (generic over float and double) on every case, for
// every transpose combination and both dtypes, against naive_gemm. The padding between rows is
// compared too: it must be left untouched. `tol64`/`tol32`: atol = rtol per dtype.
template <class Product>
void check_against_naive(const std::vector<GemmCase>& cases, double alpha, double beta,
                         double tol64, double tol32, Product product) {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (const GemmCase& c : cases)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (DType dt : {DType::F64, DType::F32}) {
          GemmShape s;
          s.trans_a = ta;
          s.trans_b = tb;
          s.M = c.M;
          s.N = c.N;
          s.K = c.K;
          s.batch = c.batch;
          const int64_t a_rows = ta ? c.K : c.M, b_rows = tb ? c.N : c.K;
          s.lda = (ta ? c.M : c.K) + c.pad;
          s.ldb = (tb ? c.K : c.N) + c.pad;
          s.ldc = c.N + c.pad;
          s.stride_a = c.repeat_a ? 0 : a_rows * s.lda;
          s.stride_b = b_rows * s.ldb;
          s.stride_c = c.M * s.ldc;
          INFO("M=" << c.M << " N=" << c.N << " K=" << c.K << " batch=" << c.batch << " ta=" << ta
                    << " tb=" << tb << " " << dtype_name(dt));
          const Tensor A =
              uniform_tensor(Shape{extent(a_rows, s.lda, s.stride_a, c.batch)}, g, -1, 1, dt);
          const Tensor B =
              uniform_tensor(Shape{extent(b_rows, s.ldb, s.stride_b, c.batch)}, g, -1, 1, dt);
          Tensor C = uniform_tensor(Shape{extent(c.M, s.ldc, s.stride_c, c.batch)}, g, -1, 1, dt);
          const std::vector<double> ref =
              naive_gemm(s, alpha, to_doubles(A), to_doubles(B), beta, to_doubles(C));
          dispatch_floating(dt, "test", [&]<typename T>() {
            product(s, T(alpha), A.data<T>(), B.data<T>(), T(beta), C.data<T>());
          });
          const double tol = dt == DType::F64 ? tol64 : tol32;
          const Comparison cmp = compare(C, Tensor::from_vector(ref, C.shape()), tol, tol);
          INFO(cmp.report);
          CHECK(cmp.ok);
        }
}

}  // namespace

TEST_CASE("gemm matches a naive triple loop for every transpose combination", "[gemm]") {
  // float64: only round-off of K <= 65 products (~1e-16 each). float32: the operands are the same
  // float32 values in both computations, so the difference is float32 accumulation round-off,
  // below K * 2^-24 * |terms| ~ 1e-5 here.
  check_against_naive({{1, 1, 1, 1, 0, false}, {17, 33, 65, 1, 0, false}, {5, 3, 7, 3, 2, false},
                       {8, 1, 9, 2, 1, true}, {31, 20, 1, 1, 3, false}, {12, 14, 16, 4, 0, true}},
                      0.75, -0.5, 1e-13, 2e-5,
                      [](const GemmShape& s, auto alpha, auto* A, auto* B, auto beta, auto* C) {
                        gemm<decltype(alpha)>(Backend::CpuReference, Device::cpu(), s, alpha, A,
                                              B, beta, C);
                      });
}

TEST_CASE("gemm with beta 0 ignores NaN in C and with K 0 scales C by beta", "[gemm]") {
  GemmShape s;
  s.M = 2;
  s.N = 2;
  s.K = 1;
  s.lda = 1;
  s.ldb = 2;
  s.ldc = 2;
  const std::vector<double> A = {1, 2}, B = {3, 4};
  Tensor C = Tensor::empty(Shape{2, 2}, DType::F64);
  poison(C);
  gemm<double>(Device::cpu(), s, 1.0, A.data(), B.data(), 0.0, C.data<double>());
  CHECK(C.to_vector<double>() == std::vector<double>{3, 4, 6, 8});
  s.K = 0;
  gemm<double>(Device::cpu(), s, 1.0, A.data(), B.data(), 0.5, C.data<double>());
  CHECK(C.to_vector<double>() == std::vector<double>{1.5, 2, 3, 4});
}

TEST_CASE("matmul computes op(A) op(B) on 2-D tensors", "[gemm]") {
  // A = [[1, 2, 3], [4, 5, 6]] (2x3), B = [[1, 0], [0, 1], [1, 1]] (3x2): A B = [[4, 5], [10, 11]]
  const Tensor A = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  const Tensor B = Tensor::from_vector<double>({1, 0, 0, 1, 1, 1}, Shape{3, 2});
  Tensor C = Tensor::full(Shape{2, 2}, 1.0, DType::F64);
  matmul(C, A, B, false, false, 2.0, 1.0);  // C = 2 A B + C
  CHECK(C.to_vector<double>() == std::vector<double>{9, 11, 21, 23});
  // A^T A (3x3) with A^T transposed on the fly: entry (0,0) = 1 + 16, (1,2) = 2*3 + 5*6
  Tensor D = Tensor::empty(Shape{3, 3}, DType::F64);
  matmul(D, A, A, true, false);
  CHECK(D.to_vector<double>()[0] == 17);
  CHECK(D.to_vector<double>()[5] == 36);
  // A A^T (2x2): (0,1) = 1*4 + 2*5 + 3*6
  Tensor E = Tensor::empty(Shape{2, 2}, DType::F64);
  matmul(E, A, A, false, true);
  CHECK(E.to_vector<double>()[1] == 32);
}

TEST_CASE("matmul errors name both shapes", "[gemm][errors]") {
  const Tensor A = Tensor::zeros(Shape{2, 3}, DType::F64);
  const Tensor B = Tensor::zeros(Shape{4, 5}, DType::F64);
  Tensor C = Tensor::zeros(Shape{2, 5}, DType::F64);
  REQUIRE_THROWS_WITH(matmul(C, A, B, false, false), Catch::Contains("matmul") &&
                                                         Catch::Contains("(2, 3)") &&
                                                         Catch::Contains("(4, 5)"));
  const Tensor B2 = Tensor::zeros(Shape{3, 5}, DType::F64);
  Tensor Cbad = Tensor::zeros(Shape{5, 2}, DType::F64);
  REQUIRE_THROWS_WITH(matmul(Cbad, A, B2, false, false), Catch::Contains("matmul") &&
                                                             Catch::Contains("(5, 2)") &&
                                                             Catch::Contains("(2, 5)"));
  const Tensor B32 = Tensor::zeros(Shape{3, 5}, DType::F32);
  REQUIRE_THROWS_WITH(matmul(C, A, B32, false, false),
                      Catch::Contains("matmul") && Catch::Contains("float32"));
  GemmShape s;
  s.M = 2;
  s.N = 2;
  s.K = 3;
  s.lda = 2;  // A is 2x3, so lda must be >= 3
  s.ldb = 2;
  s.ldc = 2;
  std::vector<double> buf(16);
  REQUIRE_THROWS_WITH(gemm<double>(Device::cpu(), s, 1.0, buf.data(), buf.data(), 0.0, buf.data()),
                      Catch::Contains("lda=2"));
}

// Setting it for a scope and restoring it is tested with the other settings (backend_test.cpp).
TEST_CASE("allow_tf32 is a device setting, off by default", "[gemm]") {
  CHECK_FALSE(DeviceSettings{}.allow_tf32);
  CHECK_FALSE(device_settings(Device::cpu()).allow_tf32);
  CHECK_FALSE(device_settings(Device::cuda(0)).allow_tf32);
}

// The built-in product (-DMINIDL_BLAS=OFF) on shapes that cross its block edges: K beyond one
// 256-deep block, M beyond 64-row tiles, N beyond 256-column tiles, and sizes that leave partial
// 4 x 8 (float) and 4 x 4 (double) micro-tiles; transposes, padded rows, a batch with a shared A.
TEST_CASE("built-in CPU gemm matches a naive triple loop across its blocks", "[gemm][builtin]") {
  // As above, with K up to 513: float64 ~K * 1e-16, float32 accumulation below
  // K * 2^-24 * |terms| ~ 3e-5 (the elements of C are sums of K terms of size <= 1.25).
  check_against_naive({{1, 1, 1, 1, 0, false}, {3, 5, 7, 2, 1, false}, {67, 259, 300, 1, 0, false},
                       {130, 70, 513, 1, 3, false}, {65, 17, 257, 3, 2, true}, {9, 300, 64, 1, 0, false}},
                      -1.25, 0.5, 1e-12, 1e-4,
                      [](const GemmShape& s, auto alpha, auto* A, auto* B, auto beta, auto* C) {
                        detail::gemm_builtin<decltype(alpha)>(s, alpha, A, B, beta, C);
                      });
}

TEST_CASE("built-in CPU gemm: beta 0 ignores NaN in C, K 0 or alpha 0 only scale C", "[gemm][builtin]") {
  GemmShape s;
  s.M = 2;
  s.N = 2;
  s.K = 1;
  s.lda = 1;
  s.ldb = 2;
  s.ldc = 2;
  const std::vector<double> A = {1, 2}, B = {3, 4};
  Tensor C = Tensor::empty(Shape{2, 2}, DType::F64);
  poison(C);
  detail::gemm_builtin<double>(s, 1.0, A.data(), B.data(), 0.0, C.data<double>());
  CHECK(C.to_vector<double>() == std::vector<double>{3, 4, 6, 8});
  detail::gemm_builtin<double>(s, 0.0, A.data(), B.data(), 2.0, C.data<double>());
  CHECK(C.to_vector<double>() == std::vector<double>{6, 8, 12, 16});
  s.K = 0;
  detail::gemm_builtin<double>(s, 1.0, A.data(), B.data(), 0.5, C.data<double>());
  CHECK(C.to_vector<double>() == std::vector<double>{3, 4, 6, 8});
}

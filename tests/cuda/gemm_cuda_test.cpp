// CUDA matrix products on every kernel path against the CPU float64 product of the same float32
// inputs.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "../support/cuda_paths.h"
#include "../support/test_util.h"
#include "kernels/gemm.h"

using namespace minidl;
using namespace minidl::test;

namespace {

const Device kGpu = Device::cuda(0);

// Elements an operand occupies: rows of `ld` elements, `batch` matrices `stride` apart.
int64_t extent(int64_t rows, int64_t ld, int64_t stride, int64_t batch) {
  return (batch - 1) * stride + rows * ld;
}

struct GemmCase {
  int64_t M, N, K, batch;
  int pad;        // extra elements per row of every operand
  bool repeat_a;  // stride_a = 0
};

GemmShape make_shape(const GemmCase& c, bool ta, bool tb) {
  GemmShape s;
  s.trans_a = ta;
  s.trans_b = tb;
  s.M = c.M;
  s.N = c.N;
  s.K = c.K;
  s.batch = c.batch;
  s.lda = (ta ? c.M : c.K) + c.pad;
  s.ldb = (tb ? c.K : c.N) + c.pad;
  s.ldc = c.N + c.pad;
  s.stride_a = c.repeat_a ? 0 : (ta ? c.K : c.M) * s.lda;
  s.stride_b = (tb ? c.N : c.K) * s.ldb;
  s.stride_c = c.M * s.ldc;
  return s;
}

// Runs the product on the GPU (path) and on the CPU in float64 from the same float32 values;
// returns the comparison of C (padding included: it must be left untouched).
Comparison run_case(const GemmShape& s, KernelPath path, float alpha, float beta, Generator& g,
                    double atol, double rtol) {
  const int64_t a_rows = s.trans_a ? s.K : s.M, b_rows = s.trans_b ? s.N : s.K;
  const Tensor A =
      uniform_tensor(Shape{extent(a_rows, s.lda, s.stride_a, s.batch)}, g, -1, 1, DType::F32);
  const Tensor B =
      uniform_tensor(Shape{extent(b_rows, s.ldb, s.stride_b, s.batch)}, g, -1, 1, DType::F32);
  const Tensor C0 =
      uniform_tensor(Shape{extent(s.M, s.ldc, s.stride_c, s.batch)}, g, -1, 1, DType::F32);
  Tensor C = C0.to(kGpu);
  if (beta == 0.f) {
    // beta = 0 must not read C; NaN inside the matrix would leak into the result if it did. The
    // padding keeps C0's values, which must survive.
    Tensor host = C0.clone();
    float* h = host.data<float>();
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t m = 0; m < s.M; ++m)
        for (int64_t n = 0; n < s.N; ++n) h[b * s.stride_c + m * s.ldc + n] = NAN;
    C = host.to(kGpu);
  }
  const Tensor Ad = A.to(kGpu), Bd = B.to(kGpu);
  gemm<float>(kGpu, path, s, alpha, Ad.data<float>(), Bd.data<float>(), beta, C.data<float>());

  Tensor ref = cast(C0, DType::F64);
  const Tensor A64 = cast(A, DType::F64), B64 = cast(B, DType::F64);
  gemm<double>(Device::cpu(), path, s, alpha, A64.data<double>(), B64.data<double>(), beta,
               ref.data<double>());
  return compare(C, ref, atol, rtol);
}

}  // namespace

TEST_CASE("CUDA gemm matches the CPU float64 product on every path", "[cuda][gemm][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Sizes that are and are not multiples of the 128x128x8 tile, one-element matrices, padded rows,
  // batches with a shared A (stride 0).
  const std::vector<GemmCase> cases = {{1, 1, 1, 1, 0, false},        {17, 33, 65, 1, 0, false},
                                       {128, 257, 300, 1, 0, false},  {130, 129, 31, 2, 3, false},
                                       {5, 300, 7, 3, 1, true},       {256, 128, 512, 1, 0, false},
                                       {515, 1031, 700, 1, 0, false}, {64, 64, 4608, 2, 0, true}};
  for (KernelPath path : cuda_paths())
    for (const GemmCase& c : cases)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (float beta : {0.f, 0.5f}) {
            const GemmShape s = make_shape(c, ta, tb);
            INFO(kernel_path_name(path) << " M=" << c.M << " N=" << c.N << " K=" << c.K << " batch="
                                        << c.batch << " pad=" << c.pad << " stride_a=" << s.stride_a
                                        << " ta=" << ta << " tb=" << tb << " beta=" << beta);
            // Each element is a float32 sum of K <= 4608 products of values in [-1, 1]: its
            // rounding error grows like sqrt(K) 2^-24 |C| (~4e-6 relative at K = 4608), so the
            // relative L2 error stays below 1e-5. Elementwise, atol 1e-3 covers entries whose
            // value cancels to near zero (|C| ~ sqrt(K / 9) ~ 23 at most here, 2^-24 * K ~ 3e-4
            // even for worst-case sequential accumulation).
            const Comparison cmp = run_case(s, path, 0.75f, beta, g, 1e-3, 1e-4);
            INFO(cmp.report);
            CHECK(cmp.ok);
            CHECK(cmp.rel_l2_error < 1e-5);
          }
}

TEST_CASE("CUDA gemm with TF32 is close, and full fp32 is restored afterwards", "[cuda][gemm]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const GemmShape s = make_shape({256, 256, 1024, 1, 0, false}, false, true);
  set_allow_tf32(true);
  // TF32 keeps 10 mantissa bits: products carry ~2^-11 relative error, so ~1e-3 relative overall.
  const Comparison tf32 = run_case(s, KernelPath::Cublas, 1.f, 0.f, g, 1e-1, 1e-2);
  set_allow_tf32(false);
  INFO(tf32.report);
  CHECK(tf32.rel_l2_error < 5e-3);
  // Back to pedantic fp32: the same bound as above (K = 1024, ~2e-6 relative).
  const Comparison fp32 = run_case(s, KernelPath::Cublas, 1.f, 0.f, g, 1e-3, 1e-4);
  INFO(fp32.report);
  CHECK(fp32.rel_l2_error < 1e-5);
}

TEST_CASE("CUDA matmul and the float64 error", "[cuda][gemm][errors]") {
  // A = [[1, 2, 3], [4, 5, 6]], B = [[1, 0], [0, 1], [1, 1]]: A B = [[4, 5], [10, 11]] (exact in
  // float32).
  const Tensor A = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, Shape{2, 3}, kGpu);
  const Tensor B = Tensor::from_vector<float>({1, 0, 0, 1, 1, 1}, Shape{3, 2}, kGpu);
  for (KernelPath path : {KernelPath::Handwritten, KernelPath::Cublas}) {
    Tensor C = Tensor::empty(Shape{2, 2}, DType::F32, kGpu);
    poison(C);
    matmul(C, A, B, false, false, 1.0, 0.0, path);
    CHECK(C.to_vector<float>() == std::vector<float>{4, 5, 10, 11});
  }
  const Tensor A64 = Tensor::zeros(Shape{2, 3}, DType::F64, kGpu);
  const Tensor B64 = Tensor::zeros(Shape{3, 2}, DType::F64, kGpu);
  Tensor C64 = Tensor::zeros(Shape{2, 2}, DType::F64, kGpu);
  REQUIRE_THROWS_WITH(matmul(C64, A64, B64, false, false), Catch::Contains("gemm") &&
                                                               Catch::Contains("float64") &&
                                                               Catch::Contains("cuda"));
}

// gemm and matmul on every backend of the op (cpu-reference in the CPU suite; cuda-handwritten and
// cuda-cublas in the CUDA suite) against the float64 cpu-reference product of the same float32
// inputs. The float64 cpu-reference itself is checked against a naive triple loop in
// tests/kernels/gemm_test.cpp.
#include "kernels/gemm.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "../support/backends.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

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

// The test body: the product on backend c.backend and on the float64 cpu-reference from the same
// float32 values; returns the comparison of C (padding included: it must be left untouched).
Comparison run_case(const GemmShape& s, const BackendCase& c, float alpha, float beta, Generator& g,
                    double atol, double rtol) {
  const int64_t a_rows = s.trans_a ? s.K : s.M, b_rows = s.trans_b ? s.N : s.K;
  const Tensor A =
      uniform_tensor(Shape{extent(a_rows, s.lda, s.stride_a, s.batch)}, g, -1, 1, DType::F32);
  const Tensor B =
      uniform_tensor(Shape{extent(b_rows, s.ldb, s.stride_b, s.batch)}, g, -1, 1, DType::F32);
  const Tensor C0 =
      uniform_tensor(Shape{extent(s.M, s.ldc, s.stride_c, s.batch)}, g, -1, 1, DType::F32);
  Tensor C = to_case(c, C0);
  if (beta == 0.f) {
    // beta = 0 must not read C; NaN inside the matrix would leak into the result if it did. The
    // padding keeps C0's values, which must survive.
    Tensor host = C0.clone();
    float* h = host.data<float>();
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t m = 0; m < s.M; ++m)
        for (int64_t n = 0; n < s.N; ++n) h[b * s.stride_c + m * s.ldc + n] = NAN;
    C = to_case(c, host);
  }
  const Tensor Ad = to_case(c, A), Bd = to_case(c, B);
  dispatch_floating(c.dtype, "test", [&]<typename T>() {
    gemm<T>(c.backend, c.device, s, T(alpha), Ad.data<T>(), Bd.data<T>(), T(beta), C.data<T>());
  });

  Tensor ref = cast(C0, DType::F64);
  const Tensor A64 = cast(A, DType::F64), B64 = cast(B, DType::F64);
  gemm<double>(Backend::CpuReference, Device::cpu(), s, alpha, A64.data<double>(),
               B64.data<double>(), beta, ref.data<double>());
  return compare(C, ref, atol, rtol);
}

}  // namespace

TEST_CASE("gemm: every backend matches the float64 reference product", "[ops][gemm][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Sizes that are and are not multiples of the 128x128x8 tile, one-element matrices, padded rows,
  // batches with a shared A (stride 0).
  const std::vector<GemmCase> cases = {{1, 1, 1, 1, 0, false},        {17, 33, 65, 1, 0, false},
                                       {128, 257, 300, 1, 0, false},  {130, 129, 31, 2, 3, false},
                                       {5, 300, 7, 3, 1, true},       {256, 128, 512, 1, 0, false},
                                       {515, 1031, 700, 1, 0, false}, {64, 64, 4608, 2, 0, true}};
  for (const BackendCase& c : backend_cases(gemm_op()))
    for (const GemmCase& k : cases)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (float beta : {0.f, 0.5f}) {
            const GemmShape s = make_shape(k, ta, tb);
            INFO(c.name() << " M=" << k.M << " N=" << k.N << " K=" << k.K << " batch=" << k.batch
                          << " pad=" << k.pad << " stride_a=" << s.stride_a << " ta=" << ta
                          << " tb=" << tb << " beta=" << beta);
            // Each element is a float32 sum of K <= 4608 products of values in [-1, 1]: its
            // rounding error grows like sqrt(K) 2^-24 |C| (~4e-6 relative at K = 4608), so the
            // relative L2 error stays below 1e-5. Elementwise, atol 1e-3 covers entries whose
            // value cancels to near zero (|C| ~ sqrt(K / 9) ~ 23 at most here, 2^-24 * K ~ 3e-4
            // even for worst-case sequential accumulation). Float32 bounds: every case computes
            // in float32.
            // The relative L2 bound is waived when every element is within 1e-7 absolute: a
            // product that nearly cancels against beta C (seen at M = N = K = 1, |C| ~ 6e-4)
            // has a tiny ||C|| and so a large relative error from rounding alone, while a wrong
            // kernel is off by O(1) and fails both.
            const Comparison cmp = run_case(s, c, 0.75f, beta, g, 1e-3, 1e-4);
            INFO(cmp.report);
            CHECK(cmp.ok);
            CHECK((cmp.rel_l2_error < 1e-5 || cmp.max_abs_error < 1e-7));
          }
}

TEST_CASE("gemm: allow_tf32 loosens cuBLAS only, and full float32 comes back after it",
          "[ops][gemm]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const GemmShape s = make_shape({256, 256, 1024, 1, 0, false}, false, true);
  for (const BackendCase& c : backend_cases(gemm_op())) {
    INFO(c.name());
    {
      DeviceSettings tf32 = device_settings(c.device);
      tf32.allow_tf32 = true;
      ScopedDeviceSettings scope(tf32);
      if (c.backend == Backend::CudaCublas) {
        // TF32 keeps 10 mantissa bits: products carry ~2^-11 relative error, so ~1e-3 relative
        // overall. (The emulator computes TF32 in full float32.)
        const Comparison cmp = run_case(s, c, 1.f, 0.f, g, 1e-1, 1e-2);
        INFO("TF32 allowed: " << cmp.report);
        CHECK(cmp.rel_l2_error < 5e-3);
      } else {
        // Our kernels and the CPU never use TF32: the float32 bound below (K = 1024, ~2e-6
        // relative) holds with the setting on.
        const Comparison cmp = run_case(s, c, 1.f, 0.f, g, 1e-3, 1e-4);
        INFO("TF32 allowed, not used: " << cmp.report);
        CHECK(cmp.ok);
        CHECK(cmp.rel_l2_error < 1e-5);
      }
    }
    // Back to pedantic float32.
    const Comparison cmp = run_case(s, c, 1.f, 0.f, g, 1e-3, 1e-4);
    INFO("TF32 not allowed: " << cmp.report);
    CHECK(cmp.ok);
    CHECK(cmp.rel_l2_error < 1e-5);
  }
}

TEST_CASE("matmul: every backend computes a small product exactly and refuses float64 it lacks",
          "[ops][gemm][errors]") {
  for (const BackendCase& c : backend_cases(gemm_op())) {
    INFO(c.name());
    // A = [[1, 2, 3], [4, 5, 6]], B = [[1, 0], [0, 1], [1, 1]]: A B = [[4, 5], [10, 11]] (exact in
    // float32).
    const Tensor A = to_case(c, Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, Shape{2, 3}));
    const Tensor B = to_case(c, Tensor::from_vector<float>({1, 0, 0, 1, 1, 1}, Shape{3, 2}));
    Tensor C = poisoned(c, Shape{2, 2});
    matmul(c.backend, C, A, B, false, false, 1.0, 0.0);
    CHECK(to_doubles(C) == std::vector<double>{4, 5, 10, 11});
    const std::vector<DType> dtypes = gemm_op().dtypes(c.backend);
    if (std::find(dtypes.begin(), dtypes.end(), DType::F64) == dtypes.end()) {
      const Tensor A64 = Tensor::zeros(Shape{2, 3}, DType::F64, c.device);
      const Tensor B64 = Tensor::zeros(Shape{3, 2}, DType::F64, c.device);
      Tensor C64 = Tensor::zeros(Shape{2, 2}, DType::F64, c.device);
      CHECK_THROWS_WITH(matmul(c.backend, C64, A64, B64, false, false),
                        Catch::Contains("gemm") && Catch::Contains("float64") &&
                            Catch::Contains(backend_name(c.backend)));
      // The selecting form on a GPU: no CUDA backend computes float64.
      if (c.device.is_cuda())
        CHECK_THROWS_WITH(matmul(C64, A64, B64, false, false), Catch::Contains("gemm") &&
                                                                   Catch::Contains("float64") &&
                                                                   Catch::Contains("cuda"));
    }
  }
}

// linear_forward and linear_backward on every backend of the op (cpu-reference in the CPU suite;
// cuda-handwritten and cuda-cublas in the CUDA suite) against the float64 cpu-reference on the
// same float32 inputs, and the Linear layer on each backend against the float64 layer. The float64
// layer is checked against finite differences in tests/layers/linear_test.cpp.
#include "kernels/linear.h"

#include <catch2/catch.hpp>
#include <tuple>
#include <vector>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "layers/linear.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// Outputs are float32 sums of at most max(in, out, N) <= 4096 products of values in [-1, 1]:
// rounding grows like sqrt(terms) 2^-24 relative (~4e-6), so the relative L2 error stays below
// 1e-5; elementwise, atol 1e-4 of the RMS covers values that cancel to near zero. Float32 bounds:
// every case computes in float32.
void expect_close(const char* what, const Tensor& out, const Tensor& ref) {
  test::expect_close(what, out, ref, 1e-4 * rms(ref), 1e-4, 1e-5);
}

}  // namespace

TEST_CASE("linear: every backend matches the float64 reference forward and backward",
          "[ops][linear][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  struct Case {
    int64_t N, in, out;
  };
  // The classifier shapes (512 -> 10, 4096 -> 10 for AlexNet's 256*4*4), one sample, and sizes that
  // are not multiples of the GEMM tile.
  const std::vector<Case> cases = {{3, 512, 10}, {1, 17, 33}, {130, 300, 257}, {64, 4096, 10}};
  const Backend ref = Backend::CpuReference;
  for (const BackendCase& c : backend_cases(linear_op()))
    for (const Case& k : cases)
      for (bool with_bias : {true, false}) {
        INFO(c.name() << " N=" << k.N << " in=" << k.in << " out=" << k.out
                      << " bias=" << with_bias);
        const Tensor x = uniform_tensor(Shape{k.N, k.in}, g, -1, 1, DType::F32);
        const Tensor w = uniform_tensor(Shape{k.out, k.in}, g, -1, 1, DType::F32);
        const Tensor b = uniform_tensor(Shape{k.out}, g, -1, 1, DType::F32);
        const Tensor dy = uniform_tensor(Shape{k.N, k.out}, g, -1, 1, DType::F32);
        const Tensor dw0 = uniform_tensor(w.shape(), g, -1, 1, DType::F32);
        const Tensor db0 = uniform_tensor(b.shape(), g, -1, 1, DType::F32);

        const Tensor x64 = cast(x, DType::F64), w64 = cast(w, DType::F64),
                     b64 = cast(b, DType::F64);
        const Tensor dy64 = cast(dy, DType::F64);
        Tensor y_ref = Tensor::empty(Shape{k.N, k.out}, DType::F64);
        Tensor dx_ref = Tensor::empty(x.shape(), DType::F64);
        Tensor dw_ref = cast(dw0, DType::F64), db_ref = cast(db0, DType::F64);
        linear_forward(ref, y_ref, x64, w64, with_bias ? &b64 : nullptr);
        linear_backward(ref, &dx_ref, dw_ref, with_bias ? &db_ref : nullptr, dy64, x64, w64);

        const Tensor xd = to_case(c, x), wd = to_case(c, w), bd = to_case(c, b);
        const Tensor dyd = to_case(c, dy);
        Tensor y = poisoned(c, Shape{k.N, k.out}), dx = poisoned(c, x.shape());
        Tensor dw = to_case(c, dw0), db = to_case(c, db0);
        linear_forward(c.backend, y, xd, wd, with_bias ? &bd : nullptr);
        linear_backward(c.backend, &dx, dw, with_bias ? &db : nullptr, dyd, xd, wd);
        expect_close("y", y, y_ref);
        expect_close("dx", dx, dx_ref);
        expect_close("dw (accumulated)", dw, dw_ref);
        if (with_bias) expect_close("db (accumulated)", db, db_ref);

        // Without dx only the parameter gradients move: a second accumulation doubles the step.
        linear_backward(c.backend, nullptr, dw, nullptr, dyd, xd, wd);
        Tensor dw_twice = dw_ref.clone();
        linear_backward(ref, nullptr, dw_twice, nullptr, dy64, x64, w64);
        expect_close("dw (accumulated twice, no dx)", dw, dw_twice);
      }
}

TEST_CASE("Linear layer on every backend flattens 4-D input like the float64 layer",
          "[ops][linear][layers]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  LinearConfig cfg;
  cfg.in_features = 12;
  cfg.out_features = 5;
  for (const BackendCase& c : backend_cases(linear_op())) {
    INFO(c.name());
    cfg.dtype = c.dtype;
    Generator init(seed);
    Linear layer(cfg, init);
    cfg.dtype = DType::F64;
    Generator init64(seed);
    Linear ref(cfg, init64);
    // 4-D input: the layer flattens it, and dx comes back in the input's shape.
    const Tensor x = uniform_tensor(Shape{3, 3, 2, 2}, g, -1, 1, DType::F32);
    const Tensor dy = uniform_tensor(Shape{3, 5}, g, -1, 1, DType::F32);
    // Sums of at most 12 terms of size <= 1 in float32: within ~1e-6 of float64, so 1e-4 leaves a
    // wide margin while a wrong index gives errors ~1.
    check_layer_against_float64(c, layer, ref, x, dy, 1e-4);
  }
}

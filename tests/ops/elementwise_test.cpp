// add and add_scaled on every backend of the op (cpu-reference in the CPU suite, cuda-handwritten
// in the CUDA suite) against the float64 cpu-reference on the same float32 inputs. The reference is
// checked by hand in tests/kernels/elementwise_test.cpp.
#include "kernels/elementwise.h"

#include <catch2/catch.hpp>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "kernels/convert.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("add_scaled: every backend matches the float64 reference",
          "[ops][elementwise][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (int64_t n : {1, 7, 1000003}) {
    for (double alpha : {1.0, -0.5, 3.7}) {
      const Tensor a = uniform_tensor(Shape{n}, g, -1, 1, DType::F32);
      const Tensor b = uniform_tensor(Shape{n}, g, -1, 1, DType::F32);
      Tensor ref = Tensor::empty(Shape{n}, DType::F64);
      add_scaled(Backend::CpuReference, ref, cast(a, DType::F64), cast(b, DType::F64), alpha);
      for (const BackendCase& c : backend_cases(elementwise_op())) {
        INFO("n " << n << " alpha " << alpha << ", " << c.name());
        Tensor out = poisoned(c, Shape{n});
        add_scaled(c.backend, out, to_case(c, a), to_case(c, b), alpha);
        // float32 rounds alpha, alpha * b and the sum (or the fused a + alpha b once): each error
        // is at most half an ulp of a value below |a| + |alpha b| <= 4.7, i.e. under 3e-7 each.
        // 1e-6 absolute covers them; a relative bound would fail where a + alpha b cancels.
        // (A float32 bound: every case computes in float32.)
        Comparison cmp = compare(out, ref, 1e-6, 0.0);
        INFO(cmp.report);
        CHECK(cmp.ok);
      }
    }
  }
}

TEST_CASE("add: every backend allows out to alias an input", "[ops][elementwise]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor a = uniform_tensor(Shape{3, 4, 5}, g, -1, 1, DType::F32);
  const Tensor b = uniform_tensor(Shape{3, 4, 5}, g, -1, 1, DType::F32);
  Tensor ref = Tensor::empty(a.shape(), DType::F64);
  add_scaled(Backend::CpuReference, ref, cast(a, DType::F64), cast(b, DType::F64), 1.0);
  for (const BackendCase& c : backend_cases(elementwise_op())) {
    INFO(c.name());
    // The sum of two float32 values is exact in float64 (unless one is below 2^-29 of the other,
    // which uniform draws essentially never give), so a backend's a + b, one correctly rounded
    // addition, is the reference rounded to the case's dtype, bit for bit.
    const std::vector<double> expect = to_doubles(cast(ref, c.dtype));
    Tensor da = to_case(c, a), db = to_case(c, b);
    add(c.backend, da, da, db);  // a += b
    CHECK(to_doubles(da) == expect);
    Tensor db2 = to_case(c, b);
    add(c.backend, db2, to_case(c, a), db2);  // b = a + b
    CHECK(to_doubles(db2) == expect);
    // The selecting form, under the settings that select this backend, is the same addition.
    ScopedDeviceSettings settings(settings_selecting(c.backend));
    Tensor da2 = to_case(c, a);
    add(da2, da2, db);
    CHECK(to_doubles(da2) == expect);
  }
}

TEST_CASE("add on channels-last tensors: the same values, mixed layouts refused",
          "[ops][elementwise]") {
  // add is elementwise and needs no channels-last code (a residual sum of two NHWC activations):
  // NHWC operands give an NHWC sum whose element (n, c, h, w) is the NCHW sum's, bit for bit. An
  // NCHW operand beside an NHWC one would be paired by memory offset with the wrong element, so
  // check_same_shape refuses it, naming the op.
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Shape s{2, 5, 3, 7};
  const Tensor a = uniform_tensor(s, g, -1, 1, DType::F32);
  const Tensor b = uniform_tensor(s, g, -1, 1, DType::F32);
  for (const BackendCase& c : backend_cases(elementwise_op())) {
    INFO(c.name());
    Tensor out = poisoned(c, s);
    add_scaled(c.backend, out, to_case(c, a), to_case(c, b), -0.5);
    const Tensor al = to_case(c, to_layout(a, Layout::NHWC));
    const Tensor bl = to_case(c, to_layout(b, Layout::NHWC));
    Tensor outl = poisoned(c, s, c.dtype, Layout::NHWC);
    add_scaled(c.backend, outl, al, bl, -0.5);
    expect_same("a - b/2", outl, out);
    CHECK_THROWS_WITH(add(c.backend, outl, al, to_case(c, b)),
                      Catch::Contains("add") && Catch::Contains("layouts differ"));
    CHECK_THROWS_WITH(add(c.backend, out, al, bl), Catch::Contains("layouts differ"));
  }
}

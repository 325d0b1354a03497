// Dropout on every backend of the op (cpu-reference in the CPU suite, cuda-handwritten in the CUDA
// suite) against the float64 cpu-reference, and the Dropout layer on each backend. The mask is a
// pure function of (seed, offset + i) on every backend, so masks are compared exactly. Values are
// compared with the float64 reference within float32 rounding, and a float32 backend other than
// the reference must also equal the float32 cpu-reference bit for bit: both compute
// x * (1 / (1 - p)) with the same single-precision scale (kernels/dropout.cpp). The reference's
// statistics (the kept fraction, p = 0) are checked in tests/kernels/dropout_test.cpp.
#include "kernels/dropout.h"

#include <catch2/catch.hpp>
#include <cmath>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "layers/basic.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct DropOut {
  Tensor y, mask;
};

// Forward on backend b into poisoned outputs on x's device.
DropOut drop(Backend b, const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  DropOut o{Tensor::empty(x.shape(), x.dtype(), x.device()),
            Tensor::empty(x.shape(), DType::U8, x.device())};
  poison(o.y);
  poison(o.mask);
  dropout_forward(b, o.y, o.mask, x, p, seed, offset);
  return o;
}

Tensor drop_backward(Backend b, const Tensor& dy, const Tensor& mask, double p) {
  Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
  poison(dx);
  dropout_backward(b, dx, dy, mask, p);
  return dx;
}

// The relative error of a float32 x / (1 - p) against float64: rounding p to float32 moves
// 1 / (1 - p) by up to 2^-24 p / (1 - p) relative (2.4e-7 at p = 0.9, 1.7e-8 at p = 0.3), then
// 1 - p, the quotient and the product round once each (2^-24 = 6e-8 relative each), plus one
// rounding to spare. A dropped element is 0 on both sides (atol 0).
double float32_rtol(double p) { return std::ldexp(4.0 + p / (1.0 - p), -24); }

const Backend kRef = Backend::CpuReference;

}  // namespace

TEST_CASE("dropout: every backend draws the reference's masks and values",
          "[ops][dropout][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Sizes and offsets that start and end inside a Philox counter (the kernel's partial first and
  // last counters), a large count, and an offset beyond 2^32 (64-bit counters).
  for (int64_t n : {1, 3, 4, 5, 1000, (1 << 20) + 3}) {
    for (uint64_t offset : {uint64_t(0), uint64_t(1), uint64_t(2), uint64_t(3), uint64_t(4099),
                            (uint64_t(1) << 33) + 5}) {
      for (double p : {0.0, 0.1, 0.3, 0.5, 0.9}) {
        const Tensor x = uniform_tensor(Shape{n}, g, -1, 1, DType::F32);
        const Tensor dy = uniform_tensor(Shape{n}, g, -1, 1, DType::F32);
        const DropOut ref = drop(kRef, cast(x, DType::F64), p, seed, offset);
        const Tensor dx_ref = drop_backward(kRef, cast(dy, DType::F64), ref.mask, p);
        const DropOut ref32 = drop(kRef, x, p, seed, offset);
        const Tensor dx_ref32 = drop_backward(kRef, dy, ref32.mask, p);
        for (const BackendCase& c : backend_cases(dropout_op())) {
          INFO("n " << n << " offset " << offset << " p " << p << ", " << c.name());
          const DropOut out = drop(c.backend, to_case(c, x), p, seed, offset);
          REQUIRE(out.mask.to_vector<uint8_t>() == ref.mask.to_vector<uint8_t>());
          const Tensor dx = drop_backward(c.backend, to_case(c, dy), out.mask, p);
          const Comparison cy = compare(out.y, ref.y, 0.0, float32_rtol(p));
          INFO("y: " << cy.report);
          REQUIRE(cy.ok);
          const Comparison cdx = compare(dx, dx_ref, 0.0, float32_rtol(p));
          INFO("dx: " << cdx.report);
          REQUIRE(cdx.ok);
          if (c.backend != kRef && c.dtype == DType::F32) {
            REQUIRE(out.y.to_vector<float>() == ref32.y.to_vector<float>());
            REQUIRE(dx.to_vector<float>() == dx_ref32.to_vector<float>());
          }
        }
      }
    }
  }
}

TEST_CASE("Dropout layer on every backend draws the float64 layer's masks",
          "[ops][dropout][layers]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (const BackendCase& c : backend_cases(dropout_op())) {
    INFO(c.name());
    // The layer selects its backend from the device's settings, as in a training run.
    ScopedDeviceSettings settings(settings_selecting(c.backend));
    const Tensor x = uniform_tensor(Shape{3, 37}, g, -1, 1, DType::F32);
    Dropout ref(0.5, seed), layer(0.5, seed);
    // Two steps: the second forward must advance both generators identically.
    for (int step = 0; step < 2; ++step) {
      INFO("step " << step);
      const Tensor y = layer.forward(to_case(c, x), Mode::Train);
      CHECK(y.device() == c.device);
      const Comparison cy =
          compare(y, ref.forward(cast(x, DType::F64), Mode::Train), 0.0, float32_rtol(0.5));
      INFO("y: " << cy.report);
      CHECK(cy.ok);
      const Tensor dy = uniform_tensor(x.shape(), g, -1, 1, DType::F32);
      const Comparison cdx = compare(layer.backward(to_case(c, dy)),
                                     ref.backward(cast(dy, DType::F64)), 0.0, float32_rtol(0.5));
      INFO("dx: " << cdx.report);
      CHECK(cdx.ok);
    }
  }
}

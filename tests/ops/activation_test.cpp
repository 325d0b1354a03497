// Activations on every backend of the op (cpu-reference in the CPU suite; cuda-handwritten and
// cuda-vendor, cuDNN for ReLU/Sigmoid/Tanh, in the CUDA suite) against the float64 cpu-reference
// on the same float32 inputs, forward and backward, on a ResNet-sized tensor and on odd lengths
// (1 element, one more than a block, not a multiple of 4). The float64 cpu-reference is checked
// against finite differences in tests/layers/activation_test.cpp.
#include "kernels/activation.h"

#include <catch2/catch.hpp>
#include <limits>
#include <vector>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "kernels/convert.h"
#include "layers/activation.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("activations: every backend matches the float64 reference",
          "[ops][activation][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Backend ref = Backend::CpuReference;
  for (Shape s : {Shape{8, 64, 32, 32}, Shape{1}, Shape{257}, Shape{3, 5, 7, 9}}) {
    // Inputs away from 0 so that ReLU's derivative is the same on both sides of any rounding.
    const Tensor x32 = away_from_zero_tensor(s, g, 1e-3, DType::F32);
    const Tensor dy32 = uniform_tensor(s, g, -1, 1, DType::F32);
    const Tensor x64 = cast(x32, DType::F64), dy64 = cast(dy32, DType::F64);
    for (Activation act :
         {Activation::ReLU, Activation::LeakyReLU, Activation::Sigmoid, Activation::Tanh}) {
      Tensor y_ref = Tensor::empty(s, DType::F64), dx_ref = Tensor::empty(s, DType::F64);
      activation_forward(ref, y_ref, x64, act, 0.1);
      activation_backward(ref, dx_ref, dy64, x64, y_ref, act, 0.1);
      for (const BackendCase& c : backend_cases(activation_op())) {
        INFO(activation_name(act) << " on " << c.name() << ", shape " << s);
        const Tensor x = to_case(c, x32), dy = to_case(c, dy32);
        Tensor y = poisoned(c, s), dx = poisoned(c, s);
        if (c.backend == Backend::CudaVendor && act == Activation::LeakyReLU) {
          // cuDNN has no LeakyReLU: the selector never picks cuda-vendor for it, and naming it
          // is refused.
          CHECK_THROWS_WITH(activation_forward(c.backend, y, x, act, 0.1),
                            Catch::Contains("cuDNN has no LeakyReLU"));
          continue;
        }
        activation_forward(c.backend, y, x, act, 0.1);
        activation_backward(c.backend, dx, dy, x, y, act, 0.1);
        // A float32 expf/tanhf evaluation is a few ulp from the exact value; cuDNN may use faster
        // intrinsics with a few ulp more: 1e-5 relative, plus 1e-6 absolute for results near 0.
        // (Float32 bounds: every case computes in float32.)
        const Comparison cy = compare(y, y_ref, 1e-6, 1e-5);
        INFO("forward: " << cy.report);
        CHECK(cy.ok);
        // Backward multiplies dy by a derivative computed from that rounded y: the same bound,
        // doubled.
        const Comparison cdx = compare(dx, dx_ref, 2e-6, 2e-5);
        INFO("backward: " << cdx.report);
        CHECK(cdx.ok);
      }
    }
  }
}

TEST_CASE("activations at 0, -0 and NaN on every backend as the reference",
          "[ops][activation][sanitize]") {
  // Where the activations treat values specially: the kink at 0 (ReLU's derivative there is 0, as
  // torch's; LeakyReLU's is the slope), the sign of zero (ReLU(-0) = +0, LeakyReLU(-0) = -0,
  // tanh(-0) = -0) and NaN (ReLU maps it to 0 and its gradient to 0; the others pass it on). With
  // slope 1/2 and dy in multiples of 1/8 every result is exact (sigmoid(0) = 1/2, its derivative
  // 1/4), so our backends must match the reference bit for bit, the sign of zero included. cuDNN
  // is compared on the zeros by value only (its sign of zero and NaN handling are its own).
  // 1029 elements: not a multiple of 4 or of the block, and several grid-stride passes.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t n = 1029;
  std::vector<float> xv(n), dyv(n);
  for (int64_t i = 0; i < n; ++i) {
    xv[i] = i % 3 == 0 ? 0.f : i % 3 == 1 ? -0.f : nan;
    dyv[i] = static_cast<float>(i % 17 - 8) / 8.f;
  }
  const Tensor x32 = Tensor::from_vector(xv, Shape{n}), dy32 = Tensor::from_vector(dyv, Shape{n});
  const Tensor x64 = cast(x32, DType::F64), dy64 = cast(dy32, DType::F64);
  const Backend ref = Backend::CpuReference;
  const double slope = 0.5;
  for (Activation act :
       {Activation::ReLU, Activation::LeakyReLU, Activation::Sigmoid, Activation::Tanh}) {
    Tensor y_ref = Tensor::empty(Shape{n}, DType::F64);
    Tensor dx_ref = Tensor::empty(Shape{n}, DType::F64);
    activation_forward(ref, y_ref, x64, act, slope);
    activation_backward(ref, dx_ref, dy64, x64, y_ref, act, slope);
    for (const BackendCase& c : backend_cases(activation_op())) {
      INFO(activation_name(act) << " on " << c.name());
      if (c.backend == Backend::CudaVendor && act == Activation::LeakyReLU) continue;
      const Tensor x = to_case(c, x32), dy = to_case(c, dy32);
      Tensor y = poisoned(c, Shape{n}), dx = poisoned(c, Shape{n});
      activation_forward(c.backend, y, x, act, slope);
      activation_backward(c.backend, dx, dy, x, y, act, slope);
      if (c.backend != Backend::CudaVendor) {
        expect_same("forward", y, y_ref);
        expect_same("backward", dx, dx_ref);
        continue;
      }
      const std::vector<double> yv = to_doubles(y), dxv = to_doubles(dx);
      const std::vector<double> yr = to_doubles(y_ref), dxr = to_doubles(dx_ref);
      for (int64_t i = 0; i < n; i += 3) {  // +0; i + 1: -0
        // cuDNN may evaluate sigmoid with a fast exponential: a few ulp.
        CHECK(yv[i] == Approx(yr[i]).margin(1e-6));
        CHECK(yv[i + 1] == Approx(yr[i + 1]).margin(1e-6));
        CHECK(dxv[i] == Approx(dxr[i]).margin(1e-6));
        CHECK(dxv[i + 1] == Approx(dxr[i + 1]).margin(1e-6));
      }
    }
  }
}

TEST_CASE("ReLU layer on every backend runs on the input's device", "[ops][activation][layers]") {
  Generator g(test_seed());
  const Tensor x = normal_tensor(Shape{2, 3, 4, 5}, g, 1.0, DType::F32);
  const std::vector<double> xs = to_doubles(x);
  for (const BackendCase& c : backend_cases(activation_op())) {
    INFO(c.name());
    // The layer selects its backend from the device's settings, as in a training run.
    ScopedDeviceSettings settings(settings_selecting(c.backend));
    ReLU relu;
    const Tensor y = relu.forward(to_case(c, x), Mode::Train);
    CHECK(y.device() == c.device);
    CHECK(y.dtype() == c.dtype);
    // max(x, 0) is exact in any precision.
    const std::vector<double> v = to_doubles(y);
    for (size_t i = 0; i < v.size(); ++i) REQUIRE(v[i] == (xs[i] > 0 ? xs[i] : 0.0));
  }
}

TEST_CASE("activations on channels-last tensors: the same values, mixed layouts refused",
          "[ops][activation]") {
  // Activations are elementwise and need no channels-last code: an NHWC x gives an NHWC y whose
  // element (n, c, h, w) is the NCHW computation's (n, c, h, w), bit for bit (the same arithmetic
  // per element); dx likewise. Operands of different layouts would be paired by memory offset, so
  // check_same_shape refuses them, naming the op.
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Shape s{3, 5, 7, 9};
  const Tensor x32 = away_from_zero_tensor(s, g, 1e-3, DType::F32);
  const Tensor dy32 = uniform_tensor(s, g, -1, 1, DType::F32);
  for (const BackendCase& c : backend_cases(activation_op())) {
    for (Activation act : {Activation::ReLU, Activation::Tanh}) {
      INFO(activation_name(act) << " on " << c.name());
      const Tensor x = to_case(c, x32), dy = to_case(c, dy32);
      Tensor y = poisoned(c, s), dx = poisoned(c, s);
      activation_forward(c.backend, y, x, act, 0.1);
      activation_backward(c.backend, dx, dy, x, y, act, 0.1);
      const Tensor xl = to_case(c, to_layout(x32, Layout::NHWC));
      const Tensor dyl = to_case(c, to_layout(dy32, Layout::NHWC));
      Tensor yl = poisoned(c, s, c.dtype, Layout::NHWC),
             dxl = poisoned(c, s, c.dtype, Layout::NHWC);
      activation_forward(c.backend, yl, xl, act, 0.1);
      activation_backward(c.backend, dxl, dyl, xl, yl, act, 0.1);
      CHECK(yl.layout() == Layout::NHWC);
      expect_same("y", yl, y);
      expect_same("dx", dxl, dx);
      CHECK_THROWS_WITH(activation_forward(c.backend, y, xl, act, 0.1),
                        Catch::Contains("layouts differ") && Catch::Contains("channels_last"));
      CHECK_THROWS_WITH(activation_backward(c.backend, dxl, dy, xl, yl, act, 0.1),
                        Catch::Contains("layouts differ"));
    }
  }
}

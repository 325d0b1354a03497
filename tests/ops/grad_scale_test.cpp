// grad_scale (loss scaling's scale-and-check, kernels/grad_scale.h) on every backend: the scaled
// values equal the float64 reference's bit for bit (a multiplication by a power of two is exact,
// and by another factor one rounding either way), the flag is raised by inf and NaN anywhere
// (first, middle, last element of an awkward length) and only then, and it is never lowered.
#include "kernels/grad_scale.h"

#include <catch2/catch.hpp>

#include <limits>
#include <vector>

#include "../support/backends.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("grad_scale: every backend scales exactly and flags inf/NaN", "[ops][grad_scale]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const int64_t n = 100003;  // not a multiple of a block or a vector width
  const Tensor v = uniform_tensor(Shape{n}, g, -4, 4, DType::F32);
  for (const BackendCase& c : backend_cases(grad_scale_op())) {
    for (const double factor : {65536.0, 1.0 / 65536.0, 0.3}) {
      INFO(c.name() << ", factor " << factor);
      Tensor t = to_case(c, v);
      Tensor flag = Tensor::zeros(Shape{}, DType::I32, c.device);
      scale_and_check_finite(c.backend, t, factor, flag);
      // Reference: each element times the factor rounded to the case's dtype, one rounding.
      const std::vector<double> in = to_doubles(v), out = to_doubles(t);
      int wrong = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double expect = c.dtype == DType::F32
                                  ? double(static_cast<float>(in[i]) * static_cast<float>(factor))
                                  : in[i] * factor;
        wrong += out[i] != expect;
      }
      CHECK(wrong == 0);
      CHECK(flag.item<int32_t>() == 0);
    }
    for (const int64_t at : {int64_t(0), n / 2, n - 1}) {
      for (const float bad : {std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::quiet_NaN()}) {
        INFO(c.name() << ", " << bad << " at " << at);
        std::vector<float> h(static_cast<size_t>(n), 1.0f);
        h[static_cast<size_t>(at)] = bad;
        Tensor t = to_case(c, Tensor::from_vector(h, Shape{n}));
        Tensor flag = Tensor::zeros(Shape{}, DType::I32, c.device);
        scale_and_check_finite(c.backend, t, 0.5, flag);
        CHECK(flag.item<int32_t>() == 1);
        // A clean call afterwards leaves the raised flag alone (one flag collects several calls).
        Tensor clean = to_case(c, Tensor::from_vector(std::vector<float>(5, 2.0f), Shape{5}));
        scale_and_check_finite(c.backend, clean, 0.5, flag);
        CHECK(flag.item<int32_t>() == 1);
      }
    }
  }
}

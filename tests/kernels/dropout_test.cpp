#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/dropout.h"
#include "layers/basic.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct DropOut {
  Tensor y, mask;
};

DropOut drop(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  DropOut o{Tensor::empty(x.shape(), x.dtype()), Tensor::empty(x.shape(), DType::U8)};
  poison(o.y);
  poison(o.mask);
  dropout_forward(o.y, o.mask, x, p, seed, offset);
  return o;
}

int64_t count_kept(const Tensor& mask) {
  int64_t n = 0;
  for (uint8_t m : mask.to_vector<uint8_t>()) n += m;
  return n;
}

}  // namespace

TEST_CASE("dropout keeps a fraction 1 - p", "[dropout]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  const int64_t n = 100000;
  const Tensor x = Tensor::full(Shape{n}, 1.0, DType::F32);
  for (double p : {0.1, 0.5, 0.9}) {
    INFO("p " << p);
    const DropOut o = drop(x, p, seed, 12345);
    // The kept count is Binomial(n, 1 - p) if the Philox words are uniform and independent:
    // standard deviation sqrt(n p (1 - p)) <= 158 here. Six of them (a false alarm about once in
    // 5e8 runs) still catch a wrong comparison direction, an off-by-one scale of p or a mask
    // that ignores the index, all of which move the count by thousands.
    const double sd = std::sqrt(n * p * (1 - p));
    CHECK(std::fabs(static_cast<double>(count_kept(o.mask)) - n * (1 - p)) < 6 * sd);
  }
}

TEST_CASE("dropout scales the kept elements and zeroes the rest", "[dropout]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (DType dt : {DType::F64, DType::F32}) {
    INFO(dtype_name(dt));
    const Tensor x = uniform_tensor(Shape{3, 5, 7}, g, -1, 1, dt);
    const double p = 0.3;
    const DropOut o = drop(x, p, seed, 0);
    const auto xs = to_doubles(x), ys = to_doubles(o.y), ms = to_doubles(o.mask);
    int64_t kept = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      INFO("element " << i);
      REQUIRE((ms[i] == 0 || ms[i] == 1));
      kept += ms[i] == 1;
      // One multiplication by the rounded 1 / (1 - p): within an ulp of the exact quotient.
      if (ms[i] == 1) CHECK(ys[i] == Approx(xs[i] / (1 - p)).epsilon(dt == DType::F64 ? 1e-15 : 1e-7));
      else CHECK(ys[i] == 0.0);
    }
    // Neither all dropped nor all kept: 105 elements at p = 0.3 (each outcome has probability
    // below 1e-16).
    CHECK(kept > 0);
    CHECK(kept < static_cast<int64_t>(xs.size()));

    Tensor dy = uniform_tensor(x.shape(), g, -1, 1, dt), dx = Tensor::empty(x.shape(), dt);
    poison(dx);
    dropout_backward(dx, dy, o.mask, p);
    const auto dys = to_doubles(dy), dxs = to_doubles(dx);
    for (size_t i = 0; i < dys.size(); ++i)
      CHECK(dxs[i] == (ms[i] == 1 ? Approx(dys[i] / (1 - p)).epsilon(dt == DType::F64 ? 1e-15 : 1e-7)
                                  : Approx(0.0)));
  }
}

TEST_CASE("dropout masks are a function of seed and offset + index", "[dropout]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  const int64_t n = 10000;
  const Tensor x = Tensor::full(Shape{n}, 1.0, DType::F32);
  const auto m0 = drop(x, 0.5, seed, 100).mask.to_vector<uint8_t>();
  // Same seed and offset: the same mask.
  CHECK(drop(x, 0.5, seed, 100).mask.to_vector<uint8_t>() == m0);
  // Offset + 1 is the same stream shifted by one element (word i belongs to offset + i), also
  // across Philox counter boundaries (offsets that are not multiples of 4).
  const auto m1 = drop(x, 0.5, seed, 101).mask.to_vector<uint8_t>();
  for (int64_t i = 0; i + 1 < n; ++i) REQUIRE(m1[i] == m0[i + 1]);
  // Disjoint offsets and a different seed: independent masks, which differ in a fraction
  // 2 p (1 - p) = 0.5 of the elements (Binomial sd 50 on 10000); below 0.4 n is 20 sd away.
  const auto differ = [&](const std::vector<uint8_t>& a) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; ++i) d += a[i] != m0[i];
    return d;
  };
  CHECK(differ(drop(x, 0.5, seed, 100 + n).mask.to_vector<uint8_t>()) > 0.4 * n);
  CHECK(differ(drop(x, 0.5, seed + 1, 100).mask.to_vector<uint8_t>()) > 0.4 * n);
}

TEST_CASE("dropout with p = 0 is the identity", "[dropout]") {
  Generator g(test_seed());
  const Tensor x = uniform_tensor(Shape{4, 9}, g);
  const DropOut o = drop(x, 0.0, 7, 3);
  CHECK(o.y.to_vector<double>() == x.to_vector<double>());
  CHECK(count_kept(o.mask) == x.numel());
}

TEST_CASE("dropout rejects p outside 0 to 1 (1 excluded)", "[dropout][errors]") {
  const Tensor x = Tensor::zeros(Shape{4}, DType::F64);
  REQUIRE_THROWS_WITH(drop(x, 1.0, 0, 0),
                      Catch::Contains("dropout_forward") && Catch::Contains("[0, 1)") &&
                          Catch::Contains("got 1"));
  REQUIRE_THROWS_WITH(drop(x, -0.1, 0, 0), Catch::Contains("got -0.1"));
  REQUIRE_THROWS_WITH(Dropout(1.5, 0), Catch::Contains("Dropout") && Catch::Contains("got 1.5"));
  Tensor y = Tensor::empty(Shape{5}, DType::F64), mask = Tensor::empty(Shape{4}, DType::U8);
  REQUIRE_THROWS_WITH(dropout_forward(y, mask, x, 0.5, 0, 0),
                      Catch::Contains("dropout_forward") && Catch::Contains("(5,)") &&
                          Catch::Contains("(4,)"));
}

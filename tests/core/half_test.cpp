// bfloat16 and float16 conversions (core/half.h) against a float64 decoding of the bit fields:
// every one of the 65,536 patterns of each type converts to exactly its value, converts back to
// itself, and every float between two neighbours rounds to the nearer (ties to the even one),
// including the overflow threshold, the subnormal range and the tie at half the smallest
// subnormal. A float64 round-to-nearest-even reference (a search over the 16-bit values, not the
// bit tricks of core/half.h) is checked on a million random floats and every boundary.
#include "core/half.h"

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../support/test_util.h"
#include "core/tensor.h"

using namespace minidl;

namespace {

struct Format {
  const char* name;
  int exp_bits, man_bits;  // bf16: 8, 7; f16: 5, 10
  uint16_t (*encode)(float);
  float (*decode)(uint16_t);
  int bias() const { return (1 << (exp_bits - 1)) - 1; }
  uint16_t max_finite() const {
    return static_cast<uint16_t>((((1u << exp_bits) - 1) << man_bits) - 1);
  }
  uint16_t inf() const { return static_cast<uint16_t>(((1u << exp_bits) - 1) << man_bits); }
  bool is_nan(uint16_t h) const { return (h & 0x7fffu) > inf(); }
  // The value of a (non-NaN) pattern, from its fields, in float64.
  double value(uint16_t h) const {
    const int sign = h >> 15;
    const int e = (h >> man_bits) & ((1 << exp_bits) - 1);
    const int m = h & ((1 << man_bits) - 1);
    double v;
    if (e == (1 << exp_bits) - 1) v = std::numeric_limits<double>::infinity();
    else if (e == 0) v = std::ldexp(m, 1 - bias() - man_bits);  // subnormal or zero
    else v = std::ldexp((1 << man_bits) + m, e - bias() - man_bits);
    return sign ? -v : v;
  }
  // Where the next value above the largest finite one would be, 2^(emax+1): the overflow
  // threshold is halfway between it and max_finite.
  double beyond_max() const { return std::ldexp(1.0, bias() + 1); }
  // Round-to-nearest-even of a finite float64 x, by search: the largest pattern <= |x| and the next
  // one, the nearer wins, a tie goes to the even pattern; beyond the overflow threshold, infinity.
  uint16_t reference_round(double x) const {
    const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const double a = std::fabs(x);
    uint16_t lo = 0, hi = max_finite();  // find the largest h with value(h) <= a
    if (a >= value(hi)) {
      lo = hi;
    } else {
      while (hi - lo > 1) {
        const uint16_t mid = static_cast<uint16_t>((lo + hi) / 2);
        (value(mid) <= a ? lo : hi) = mid;
      }
    }
    const double below = value(lo);
    const double above = lo == max_finite() ? beyond_max() : value(lo + 1);
    uint16_t r;
    if (a - below < above - a) r = lo;
    else if (a - below > above - a) r = static_cast<uint16_t>(lo + 1);
    else r = (lo & 1) ? static_cast<uint16_t>(lo + 1) : lo;  // tie: the even one
    if (r > max_finite()) r = inf();  // lo + 1 past the largest is infinity
    return static_cast<uint16_t>(sign | r);
  }
};

const Format kBF16{"bfloat16", 8, 7, float_to_bf16_bits, bf16_bits_to_float};
const Format kF16{"float16", 5, 10, float_to_f16_bits, f16_bits_to_float};

// The canonical NaNs CUDA produces: float -> 16 bits gives 0x7FFF; float16 -> float gives
// 0x7FFFFFFF; bfloat16 -> float keeps the bits (the high half of the float).
void check_all_patterns(const Format& f) {
  INFO(f.name);
  int failures = 0;
  for (uint32_t i = 0; i < 65536 && failures < 10; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float x = f.decode(h);
    const uint32_t xb = std::bit_cast<uint32_t>(x);
    if (f.is_nan(h)) {
      const uint32_t expect = f.exp_bits == 8 ? static_cast<uint32_t>(h) << 16 : 0x7fffffffu;
      if (!std::isnan(x) || xb != expect || f.encode(x) != 0x7fff) {
        ++failures;
        FAIL_CHECK("NaN pattern 0x" << std::hex << h << " decoded to 0x" << xb
                                    << ", encoded back to 0x" << f.encode(x));
      }
      continue;
    }
    const double ref = f.value(h);
    // Exact decoding, and encoding gives the pattern back (signed zeros and infinities included).
    if (static_cast<double>(x) != ref || std::signbit(x) != static_cast<bool>(h >> 15) ||
        f.encode(x) != h) {
      ++failures;
      FAIL_CHECK("pattern 0x" << std::hex << h << ": decoded " << x << " (float64 " << ref
                              << "), encoded back to 0x" << f.encode(x));
    }
  }
  CHECK(failures == 0);
}

// Between each pair of neighbours (both signs): the midpoint (exact in float: 16-bit formats need
// at most 12 significant bits for it) rounds to the even neighbour, the floats just beside it to
// the nearer one. The last pair is the largest finite value and the overflow threshold.
void check_every_tie(const Format& f) {
  INFO(f.name);
  int failures = 0;
  for (uint32_t lo = 0; lo <= f.max_finite() && failures < 10; ++lo) {
    const double a = f.value(static_cast<uint16_t>(lo));
    const double b = lo == f.max_finite() ? f.beyond_max() : f.value(static_cast<uint16_t>(lo + 1));
    const double mid = (a + b) / 2;
    const float m = static_cast<float>(mid);
    if (static_cast<double>(m) != mid) FAIL("midpoint " << mid << " is not a float");
    const uint16_t up = lo == f.max_finite() ? f.inf() : static_cast<uint16_t>(lo + 1);
    const uint16_t even = (lo & 1) ? up : static_cast<uint16_t>(lo);
    for (const float sign : {1.0f, -1.0f}) {
      const uint16_t s = sign < 0 ? 0x8000 : 0;
      const float below = std::nextafter(m, 0.0f), above = std::nextafter(m, 2 * m);
      const uint16_t got_mid = f.encode(sign * m), got_below = f.encode(sign * below),
                     got_above = f.encode(sign * above);
      if (got_mid != (s | even) || got_below != (s | lo) || got_above != (s | up)) {
        ++failures;
        FAIL_CHECK("between 0x" << std::hex << lo << " and 0x" << up << " (sign " << sign
                                << "): midpoint -> 0x" << got_mid << " (expected 0x" << (s | even)
                                << "), just below -> 0x" << got_below << ", just above -> 0x"
                                << got_above);
      }
    }
  }
  CHECK(failures == 0);
}

}  // namespace

TEST_CASE("bfloat16: all 65,536 patterns decode exactly and encode back", "[half]") {
  check_all_patterns(kBF16);
}

TEST_CASE("float16: all 65,536 patterns decode exactly and encode back", "[half]") {
  check_all_patterns(kF16);
}

TEST_CASE("bfloat16 and float16: every tie rounds to even, neighbours to the nearer", "[half]") {
  check_every_tie(kBF16);
  check_every_tie(kF16);
}

TEST_CASE("float -> bfloat16/float16 agrees with a float64 round-to-nearest-even search",
          "[half]") {
  const uint64_t seed = test::test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const float inf = std::numeric_limits<float>::infinity();
  // Boundaries by name: overflow thresholds, smallest subnormals and the ties below them, the
  // float16 normal/subnormal border, float's own subnormals, infinities.
  std::vector<float> xs = {0.0f,          -0.0f,         65504.0f,        65519.996f,  65520.0f,
                           65536.0f,      -65520.0f,     0x1p-24f,        0x1p-25f,    0x1.000002p-25f,
                           0x1.7ffffep-25f, 0x1.8p-25f,  0x1p-14f,        0x1.ffcp-15f, 0x1.ffep-15f,
                           0x1p-149f,     0x1p-133f,     0x1p-134f,       0x1.fep127f, 0x1.ff0p127f,
                           0x1.fefffep127f, 3.4028235e38f, inf,           -inf};
  for (int i = 0; i < 1'000'000; ++i) {  // random bit patterns: every exponent equally likely
    const float x = std::bit_cast<float>(static_cast<uint32_t>(g.below(uint64_t{1} << 32)));
    if (!std::isnan(x)) xs.push_back(x);
  }
  for (const Format* f : {&kBF16, &kF16}) {
    INFO(f->name);
    int failures = 0;
    for (float x : xs) {
      const uint16_t expect = std::isinf(x) ? static_cast<uint16_t>((x < 0 ? 0x8000 : 0) | f->inf())
                                            : f->reference_round(x);
      if (f->encode(x) != expect && ++failures <= 10)
        FAIL_CHECK("x = " << std::hexfloat << x << " -> 0x" << std::hex << f->encode(x) << ", expected 0x"
                                 << expect);
    }
    CHECK(failures == 0);
    // Every NaN, whatever its sign and payload, becomes the canonical 0x7FFF.
    for (uint32_t bits : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu})
      CHECK(f->encode(std::bit_cast<float>(bits)) == 0x7fff);
  }
}

TEST_CASE("bfloat16/float16 tensors: storage, fill and host copies", "[half][tensor]") {
  Tensor b = Tensor::full(Shape{2, 3}, 1.0 / 3.0, DType::BF16);
  CHECK(b.nbytes() == 12);
  CHECK(b.describe() == "bfloat16 cpu (2, 3)");
  for (bf16 v : b.to_vector<bf16>()) CHECK(v.bits == float_to_bf16_bits(1.0f / 3.0f));
  Tensor h = Tensor::full(Shape{5}, 70000.0, DType::F16);  // beyond float16's range: infinity
  for (f16 v : h.to_vector<f16>()) CHECK(v.bits == 0x7c00);
  const Tensor c = Tensor::from_vector<f16>({f16{0x3c00}, f16{0x0001}}, Shape{2}).clone();
  CHECK(to_float(c.data<f16>()[1]) == 0x1p-24f);
  CHECK_THROWS_WITH(c.data<float>(), Catch::Contains("float16") && Catch::Contains("float32"));
  CHECK(test::to_doubles(test::cast(Tensor::from_vector<float>({1.0f, 0x1.0101p0f}, Shape{2}),
                                    DType::BF16)) == std::vector<double>{1.0, 0x1.02p0});
}

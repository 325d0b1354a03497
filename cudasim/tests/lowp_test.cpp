// The 16-bit float conversions of cuda_fp16.h / cuda_bf16.h against a float64 reference, over every
// bit pattern: each of the 65,536 patterns decoded to float, and float -> 16 bit rounding (_rn and
// _rz) of every representable value, every midpoint between neighbours (the ties), the floats just
// either side of each midpoint, overflow past the largest finite value, float subnormals,
// infinities, NaNs and 200,000 random float bit patterns.
//
// The same file is compiled twice: into build-sim's minidl_cuda_tests against cudasim's headers
// (cudasim/include), and into the nvcc tree's cuda_header_tests by the host compiler against
// NVIDIA's headers (their host code paths), so the reference itself is checked against NVIDIA's
// implementation on every CI run, without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

uint32_t bits_of(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}
float float_of(uint32_t x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// A 16-bit binary format: `mant` stored mantissa bits, `exp` exponent bits.
struct Format {
  const char* name;
  int mant, exp;
  int bias() const { return (1 << (exp - 1)) - 1; }
  uint16_t inf() const { return static_cast<uint16_t>(((1u << exp) - 1u) << mant); }
  bool is_nan(uint16_t p) const { return (p & 0x7fffu) > inf(); }
  // float64 value of a pattern (not NaN): the definition of the format, written independently of
  // the code under test.
  double decode(uint16_t p) const {
    const double sign = (p & 0x8000u) ? -1.0 : 1.0;
    const int e = (p >> mant) & ((1 << exp) - 1);
    const int m = p & ((1 << mant) - 1);
    if ((p & 0x7fffu) == inf()) return sign * HUGE_VAL;
    if (e == 0) return sign * std::ldexp(m, 1 - bias() - mant);
    return sign * std::ldexp((1 << mant) + m, e - bias() - mant);
  }
};
const Format kHalf{"half", 10, 5};
const Format kBf16{"bfloat16", 7, 8};

// Rounding by search: the non-negative finite values in increasing order (their patterns are
// 0, 1, 2, ...), with the value the exponent range would give next (2^16, 2^128) standing for inf,
// as IEEE 754 rounds (an overflow rounds as if the exponent were unbounded).
struct Reference {
  Format f;
  std::vector<double> v;  // v[p] for p = 0 .. inf pattern (the last one: the unbounded next value)
  explicit Reference(Format fmt) : f(fmt) {
    for (uint32_t p = 0; p < f.inf(); ++p) v.push_back(f.decode(static_cast<uint16_t>(p)));
    v.push_back(std::ldexp(1.0, f.bias() + 1));
  }
  uint16_t round(float x, bool rz) const {
    if (std::isnan(x)) return 0x7fffu;
    const uint16_t sign = std::signbit(x) ? 0x8000u : 0u;
    const double a = std::fabs(static_cast<double>(x));
    const uint16_t inf = f.inf(), max_finite = static_cast<uint16_t>(inf - 1);
    if (std::isinf(x)) return static_cast<uint16_t>(sign | inf);  // exact in every mode
    if (a > v.back()) return static_cast<uint16_t>(sign | (rz ? max_finite : inf));
    const size_t hi = static_cast<size_t>(std::lower_bound(v.begin(), v.end(), a) - v.begin());
    if (v[hi] == a) return static_cast<uint16_t>(sign | (rz && hi == inf ? max_finite : hi));
    const size_t lo = hi - 1;
    if (rz) return static_cast<uint16_t>(sign | lo);
    const double dlo = a - v[lo], dhi = v[hi] - a;
    const size_t r = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
    return static_cast<uint16_t>(sign | r);
  }
};

// The floats to round: every value, midpoint and the floats next to each midpoint, both signs.
std::vector<float> rounding_inputs(const Reference& ref) {
  std::vector<float> xs;
  for (size_t p = 0; p + 1 < ref.v.size(); ++p) {
    const double mid = (ref.v[p] + ref.v[p + 1]) / 2;
    const float m = static_cast<float>(mid);
    REQUIRE(static_cast<double>(m) == mid);  // midpoints are floats (p + 1 <= 24 bits)
    for (float x :
         {static_cast<float>(ref.v[p]), m, std::nextafter(m, 0.f), std::nextafter(m, HUGE_VALF)}) {
      xs.push_back(x);
      xs.push_back(-x);
    }
  }
  for (float x : {HUGE_VALF,
                  -HUGE_VALF,
                  3.0e38f,
                  -3.0e38f,
                  65536.f,
                  1e5f,
                  -1e5f,
                  1e-40f,
                  -1e-40f,
                  float_of(1),
                  float_of(0x807fffffu),
                  1e-8f,
                  2.9e-8f,
                  3e-8f,
                  0x1p-25f,
                  -0x1p-25f,
                  std::nextafter(0x1p-25f, 1.f),
                  std::nextafter(0x1p-25f, 0.f),
                  0x1p-24f,
                  0x1.8p-25f,
                  0.f,
                  -0.f})
    xs.push_back(x);
  std::mt19937 rng(12345);
  for (int i = 0; i < 200000; ++i) xs.push_back(float_of(static_cast<uint32_t>(rng())));
  return xs;
}

template <class Convert>
void check_rounding(const Reference& ref, const char* fn, bool rz, Convert convert) {
  int bad = 0;
  std::ostringstream first;
  const std::vector<float> xs = rounding_inputs(ref);
  for (float x : xs) {
    const uint16_t got = convert(x), want = ref.round(x, rz);
    // NaN: both headers return the canonical 0x7fff.
    if (got != want) {
      if (bad++ < 5)
        first << fn << "(" << x << " = 0x" << std::hex << bits_of(x) << ") = 0x" << got
              << ", float64 reference 0x" << want << std::dec << "\n";
    }
  }
  INFO(first.str());
  CHECK(bad == 0);
  CHECK(xs.size() > 8 * (ref.v.size() - 1));  // every value and tie was tried
}

template <class Decode>
void check_decoding(const Format& f, Decode decode) {
  int bad = 0;
  for (uint32_t p = 0; p < 65536; ++p) {
    const float got = decode(static_cast<uint16_t>(p));
    const bool ok = f.is_nan(static_cast<uint16_t>(p))
                        ? std::isnan(got)
                        : static_cast<double>(got) == f.decode(static_cast<uint16_t>(p)) &&
                              std::signbit(got) == ((p & 0x8000u) != 0);
    if (!ok && bad++ < 5) UNSCOPED_INFO(f.name << " 0x" << std::hex << p << " -> " << got);
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("__half conversions: every bit pattern and every tie against float64",
          "[cudasim][lowp]") {
  const Reference ref(kHalf);
  check_decoding(kHalf, [](uint16_t p) { return __half2float(__ushort_as_half(p)); });
  check_rounding(ref, "__float2half_rn", false,
                 [](float x) { return __half_as_ushort(__float2half_rn(x)); });
  check_rounding(ref, "__float2half", false,
                 [](float x) { return __half_as_ushort(__float2half(x)); });
  check_rounding(ref, "__float2half_rz", true,
                 [](float x) { return __half_as_ushort(__float2half_rz(x)); });
  // The pair forms are the scalar ones per lane; the conversion operators are _rn.
  const __half2 h2 = __floats2half2_rn(1.0f / 3.0f, -65519.f);
  CHECK(__half_as_ushort(h2.x) == __half_as_ushort(__float2half_rn(1.0f / 3.0f)));
  CHECK(__half_as_ushort(h2.y) == 0xfbffu);  // -65504: below the -65520 tie
  CHECK(__low2float(h2) == __half2float(h2.x));
  CHECK(__high2float(h2) == -65504.f);
  const float2 f2 = __half22float2(__float22half2_rn(make_float2(0.1f, 70000.f)));
  CHECK(f2.x == __half2float(__float2half_rn(0.1f)));
  CHECK(std::isinf(f2.y));
  const __half h = 0.1f;
  CHECK(static_cast<float>(h) == __half2float(__float2half_rn(0.1f)));
}

TEST_CASE("__nv_bfloat16 conversions: every bit pattern and every tie against float64",
          "[cudasim][lowp]") {
  const Reference ref(kBf16);
  check_decoding(kBf16, [](uint16_t p) { return __bfloat162float(__ushort_as_bfloat16(p)); });
  check_rounding(ref, "__float2bfloat16_rn", false,
                 [](float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); });
  check_rounding(ref, "__float2bfloat16", false,
                 [](float x) { return __bfloat16_as_ushort(__float2bfloat16(x)); });
  check_rounding(ref, "__float2bfloat16_rz", true,
                 [](float x) { return __bfloat16_as_ushort(__float2bfloat16_rz(x)); });
  const __nv_bfloat162 b2 = __floats2bfloat162_rn(1.0f / 3.0f, 1.00390625f);  // 1 + 2^-8: a tie
  CHECK(__bfloat16_as_ushort(b2.x) == __bfloat16_as_ushort(__float2bfloat16_rn(1.0f / 3.0f)));
  CHECK(__bfloat16_as_ushort(b2.y) == 0x3f80u);  // ties to even: 1.0
  CHECK(__low2float(b2) == __bfloat162float(b2.x));
  CHECK(__high2float(b2) == 1.f);
  const float2 f2 = __bfloat1622float2(__float22bfloat162_rn(make_float2(0.1f, 3.4e38f)));
  CHECK(f2.x == __bfloat162float(__float2bfloat16_rn(0.1f)));
  CHECK(std::isinf(f2.y));
  const __nv_bfloat16 b = 0.1f;
  CHECK(static_cast<float>(b) == __bfloat162float(__float2bfloat16_rn(0.1f)));
}

// cudasim: the 16-bit floating-point types of cuda_fp16.h (__half) and cuda_bf16.h (__nv_bfloat16),
// with the CUDA headers' conversion semantics (cudasim/tests/lowp_test.cpp checks every one of the
// 65,536 bit patterns of each type, and the rounding of every midpoint between them, against a
// float64 reference; the same test runs against NVIDIA's headers in the nvcc build):
//   - float -> 16 bit, _rn (and the plain __float2half/__float2bfloat16): round to nearest, ties to
//     even, subnormal results kept (no flush to zero), overflow to +-inf, NaN -> 0x7fff (the
//     canonical NaN of both headers, sign dropped);
//   - _rz: toward zero, overflow to the largest finite value;
//   - 16 bit -> float: exact (every half and bfloat16 value is a float), NaN stays NaN.
// Arithmetic on __half / __nv_bfloat16 is done in float and rounded once: float's 24-bit
// significand is at least 2p+2 for both (p = 11, 8), so +, -, *, / rounded through float equal the
// correctly rounded 16-bit operation (no double-rounding error), as the hardware's.
// Included by cudasim's cuda_fp16.h and cuda_bf16.h; not meant to be included directly.
#pragma once

#include <cstdint>
#include <cstring>

namespace cudasim::lowp {

inline uint32_t f32_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}
inline float bits_f32(uint32_t x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// float -> IEEE binary16 bits; `rz`: round toward zero, else to nearest even.
inline uint16_t f32_to_f16(float f, bool rz) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fffu;
  if (a == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);
  // |f| = m 2^(e - 23) with a 24-bit significand m (float subnormals: e = -126, no hidden bit).
  const int e = a >= 0x00800000u ? static_cast<int>(a >> 23) - 127 : -126;
  const uint32_t m = (a & 0x7fffffu) | (a >= 0x00800000u ? 0x800000u : 0u);
  // The half quantum at |f|: 2^(e - 10) for normal halves (e >= -14), 2^-24 below.
  const int shift = e >= -14 ? 13 : 13 + (-14 - e);
  if (shift > 24) return static_cast<uint16_t>(sign);  // below 2^-25: 0 (rn and rz)
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (!rz && (rem > half || (rem == half && (q & 1u)))) ++q;
  // Normal: q in [2^10, 2^11]; q == 2^11 carries into the exponent by itself. Subnormal: q is
  // the bit pattern (q == 2^10 is the smallest normal, 0x0400).
  const uint32_t bits = e >= -14 ? (static_cast<uint32_t>(e + 15) << 10) + q - 1024u : q;
  if (bits >= 0x7c00u) return static_cast<uint16_t>(sign | (rz ? 0x7bffu : 0x7c00u));
  return static_cast<uint16_t>(sign | bits);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t s = static_cast<uint32_t>(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu,
                 m = h & 0x3ffu;
  if (e == 0x1f) return bits_f32(s | 0x7f800000u | (m << 13));
  if (e == 0) return bits_f32(s | f32_bits(static_cast<float>(m) * 0x1p-24f));  // exact
  return bits_f32(s | ((e + 112u) << 23) | (m << 13));
}

// float -> bfloat16 bits (the upper half of the float, rounded).
inline uint16_t f32_to_bf16(float f, bool rz) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  uint32_t r = x >> 16;
  const uint32_t rem = x & 0xffffu;
  if (!rz && (rem > 0x8000u || (rem == 0x8000u && (r & 1u)))) ++r;  // may carry into inf: right
  return static_cast<uint16_t>(r);
}
inline float bf16_to_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

}  // namespace cudasim::lowp

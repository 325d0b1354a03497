// bfloat16 and float16 (IEEE binary16) as 16-bit storage types, and their conversions to and from
// float, bit for bit as CUDA's own headers compute them (cuda_bf16.hpp / cuda_fp16.hpp, host
// paths; the device instructions cvt.rn.bf16.f32 / cvt.rn.f16.f32 give the same bits):
//
//   float -> bfloat16  round to nearest, ties to even; every NaN becomes the canonical 0x7FFF;
//                      infinities stay infinite, and a float above the largest bfloat16
//                      (0x7F7F, 3.3895e38) by at least half an ulp rounds to infinity; float
//                      subnormals round like any other value (bfloat16 has float's exponent).
//   bfloat16 -> float  exact: the 16 bits are the high half of the float (NaN payloads kept).
//   float -> float16   round to nearest, ties to even, also into the subnormal range (down to
//                      2^-24; 2^-25 and below round to zero, exactly 2^-25 to +-0 by the tie
//                      rule); values >= 65520 (halfway past 65504) round to infinity; every NaN
//                      becomes 0x7FFF.
//   float16 -> float   exact, subnormals included; every NaN becomes 0x7FFFFFFF (the sign and
//                      payload are dropped, as __half2float does).
//
// Self-contained on purpose (no minidl header): CUDA kernels include it, compiled by nvcc or by
// cudasim, and call the same functions on the host and the device. tests/core/half_test.cpp checks
// all 65,536 bit patterns of each type against a float64 decoding, and float rounding at every
// tie, overflow and subnormal boundary.
#pragma once

#include <cstdint>
#include <cstring>

// nvcc compiles these for both sides; on cudasim (and in plain C++) a kernel is host code anyway.
#if defined(__CUDACC__)
#define MINIDL_HALF_HD __host__ __device__
#else
#define MINIDL_HALF_HD
#endif

namespace minidl {

// Storage types: a tensor of dtype bfloat16 / float16 holds these (Tensor::data<bf16>()). They
// convert explicitly, never implicitly, so that no arithmetic happens in 16 bits by accident.
struct bf16 {
  uint16_t bits = 0;
  static constexpr MINIDL_HALF_HD bf16 from_bits(uint16_t b) { return bf16{b}; }
};
struct f16 {
  uint16_t bits = 0;
  static constexpr MINIDL_HALF_HD f16 from_bits(uint16_t b) { return f16{b}; }
};

namespace half_detail {
inline MINIDL_HALF_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
inline MINIDL_HALF_HD float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace half_detail

inline MINIDL_HALF_HD uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = half_detail::float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN
  // Round to nearest even: add 0x7FFF plus the lowest kept bit, then truncate. A carry out of the
  // mantissa bumps the exponent, and past the largest finite value it gives infinity (0x7F80).
  const uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

inline MINIDL_HALF_HD float bf16_bits_to_float(uint16_t h) {
  return half_detail::bits_float(static_cast<uint32_t>(h) << 16);
}

inline MINIDL_HALF_HD uint16_t float_to_f16_bits(float f) {
  const uint32_t x = half_detail::float_bits(f);
  uint32_t u = x & 0x7fffffffu;
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t result, remainder;  // remainder: the dropped bits, left-aligned in 32 bits
  if (u >= 0x7f800000u) {      // inf or NaN
    return static_cast<uint16_t>(u == 0x7f800000u ? (sign | 0x7c00u) : 0x7fffu);
  } else if (u > 0x477fefffu) {  // >= 65520: 0x7BFF plus a remainder of exactly half rounds up
    remainder = 0x80000000u;
    result = sign | 0x7bffu;
  } else if (u >= 0x38800000u) {  // normal float16 (>= 2^-14)
    remainder = u << 19;
    u -= 0x38000000u;  // rebias the exponent: 127 - 15 = 112 = 0x70, shifted by 23
    result = sign | (u >> 13);
  } else if (u < 0x33000001u) {  // <= 2^-25: rounds to zero (2^-25 itself is a tie to even 0)
    remainder = u;
    result = sign;
  } else {  // float16 subnormal: shift the mantissa (with its implicit 1) into place
    const uint32_t exponent = u >> 23;
    const uint32_t shift = 0x7eu - exponent;
    const uint32_t mantissa = (u & 0x7fffffu) | 0x800000u;
    remainder = mantissa << (32u - shift);
    result = (sign | (mantissa >> shift)) & 0xffffu;
  }
  if (remainder > 0x80000000u || (remainder == 0x80000000u && (result & 1u))) ++result;
  return static_cast<uint16_t>(result);
}

inline MINIDL_HALF_HD float f16_bits_to_float(uint16_t h) {
  uint32_t sign = (h >> 15) & 1u;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = (h & 0x3ffu) << 13;
  if (exponent == 0x1fu) {  // inf or NaN (a NaN loses its sign and payload, as in CUDA)
    sign = mantissa != 0 ? 0 : sign;
    mantissa = mantissa != 0 ? 0x7fffffu : 0;
    exponent = 0xffu;
  } else if (exponent == 0) {  // zero or subnormal: normalise
    if (mantissa != 0) {
      exponent = 0x71u;
      while ((mantissa & 0x800000u) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      mantissa &= 0x7fffffu;
    }
  } else {
    exponent += 0x70u;
  }
  return half_detail::bits_float((sign << 31) | (exponent << 23) | mantissa);
}

inline MINIDL_HALF_HD bf16 to_bf16(float f) { return bf16{float_to_bf16_bits(f)}; }
inline MINIDL_HALF_HD f16 to_f16(float f) { return f16{float_to_f16_bits(f)}; }
inline MINIDL_HALF_HD float to_float(bf16 h) { return bf16_bits_to_float(h.bits); }
inline MINIDL_HALF_HD float to_float(f16 h) { return f16_bits_to_float(h.bits); }
inline MINIDL_HALF_HD float to_float(float f) { return f; }

// from_float<T>(f): float -> T for T in {float, bf16, f16}, for kernels templated on storage.
template <typename T> MINIDL_HALF_HD T from_float(float f);
template <> inline MINIDL_HALF_HD float from_float<float>(float f) { return f; }
template <> inline MINIDL_HALF_HD bf16 from_float<bf16>(float f) { return to_bf16(f); }
template <> inline MINIDL_HALF_HD f16 from_float<f16>(float f) { return to_f16(f); }

// The type arithmetic on T runs in: float for the 16-bit types, T itself for float and double.
// Kernels templated on the storage type load with widen() and store with narrow<T>(), so that one
// loop serves float64, float32 and the 16-bit types (float32 math, 16-bit memory traffic).
template <typename T> struct compute_type { using type = T; };
template <> struct compute_type<bf16> { using type = float; };
template <> struct compute_type<f16> { using type = float; };
template <typename T> using compute_t = typename compute_type<T>::type;

template <typename T> inline MINIDL_HALF_HD compute_t<T> widen(T v) { return v; }
template <> inline MINIDL_HALF_HD float widen<bf16>(bf16 v) { return to_float(v); }
template <> inline MINIDL_HALF_HD float widen<f16>(f16 v) { return to_float(v); }
template <typename T> inline MINIDL_HALF_HD T narrow(compute_t<T> v) { return v; }
template <> inline MINIDL_HALF_HD bf16 narrow<bf16>(float v) { return to_bf16(v); }
template <> inline MINIDL_HALF_HD f16 narrow<f16>(float v) { return to_f16(v); }

}  // namespace minidl

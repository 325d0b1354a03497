// cudasim's cuda_fp16.h: __half and __half2 with the CUDA header's conversions (cudasim_lowp.h).
// The names and signatures are NVIDIA's, so the same kernel source compiles against either header.
#pragma once

#include "cuda_runtime.h"
#include "cudasim_lowp.h"

struct __half_raw {
  unsigned short x;
};
struct __half2_raw {
  unsigned short x, y;
};

struct alignas(2) __half {
  unsigned short __x;  // (protected in NVIDIA's header; use __half_as_ushort)
  __half() = default;
  __half(const __half_raw& r) : __x(r.x) {}
  __half& operator=(const __half_raw& r) {
    __x = r.x;
    return *this;
  }
  operator __half_raw() const { return __half_raw{__x}; }
  __half(float f) : __x(cudasim::lowp::f32_to_f16(f, false)) {}
  __half(double d)
      : __half(static_cast<float>(d)) {}  // (NVIDIA rounds doubles once; close enough for literals)
  __half(int i) : __half(static_cast<float>(i)) {}
  operator float() const { return cudasim::lowp::f16_to_f32(__x); }
};
struct alignas(4) __half2 {
  __half x, y;
  __half2() = default;
  __half2(const __half& a, const __half& b) : x(a), y(b) {}
  __half2(const __half2_raw& r) : x(__half_raw{r.x}), y(__half_raw{r.y}) {}
  operator __half2_raw() const { return __half2_raw{x.__x, y.__x}; }
};

inline __half __float2half(float a) { return __half_raw{cudasim::lowp::f32_to_f16(a, false)}; }
inline __half __float2half_rn(float a) { return __half_raw{cudasim::lowp::f32_to_f16(a, false)}; }
inline __half __float2half_rz(float a) { return __half_raw{cudasim::lowp::f32_to_f16(a, true)}; }
inline float __half2float(__half a) { return cudasim::lowp::f16_to_f32(a.__x); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short i) { return __half_raw{i}; }
inline __half2 __float2half2_rn(float a) { return {__float2half_rn(a), __float2half_rn(a)}; }
inline __half2 __floats2half2_rn(float a, float b) {
  return {__float2half_rn(a), __float2half_rn(b)};
}
inline __half2 __float22half2_rn(float2 a) { return {__float2half_rn(a.x), __float2half_rn(a.y)}; }
inline float2 __half22float2(__half2 a) { return {__half2float(a.x), __half2float(a.y)}; }
inline float __low2float(__half2 a) { return __half2float(a.x); }
inline float __high2float(__half2 a) { return __half2float(a.y); }
inline __half __low2half(__half2 a) { return a.x; }
inline __half __high2half(__half2 a) { return a.y; }
inline __half2 __halves2half2(__half a, __half b) { return {a, b}; }
inline bool __hisnan(__half a) { return (a.__x & 0x7fffu) > 0x7c00u; }

// Arithmetic and comparisons: through float, rounded once (see cudasim_lowp.h).
#define CUDASIM_LOWP_OPS(T)                                                                   \
  inline T operator+(T a, T b) { return T(static_cast<float>(a) + static_cast<float>(b)); }   \
  inline T operator-(T a, T b) { return T(static_cast<float>(a) - static_cast<float>(b)); }   \
  inline T operator*(T a, T b) { return T(static_cast<float>(a) * static_cast<float>(b)); }   \
  inline T operator/(T a, T b) { return T(static_cast<float>(a) / static_cast<float>(b)); }   \
  inline T operator-(T a) {                                                                   \
    T r = a;                                                                                  \
    r.__x ^= 0x8000u;                                                                         \
    return r;                                                                                 \
  }                                                                                           \
  inline T& operator+=(T& a, T b) { return a = a + b; }                                       \
  inline T& operator-=(T& a, T b) { return a = a - b; }                                       \
  inline T& operator*=(T& a, T b) { return a = a * b; }                                       \
  inline T& operator/=(T& a, T b) { return a = a / b; }                                       \
  inline bool operator==(T a, T b) { return static_cast<float>(a) == static_cast<float>(b); } \
  inline bool operator!=(T a, T b) { return static_cast<float>(a) != static_cast<float>(b); } \
  inline bool operator<(T a, T b) { return static_cast<float>(a) < static_cast<float>(b); }   \
  inline bool operator>(T a, T b) { return static_cast<float>(a) > static_cast<float>(b); }   \
  inline bool operator<=(T a, T b) { return static_cast<float>(a) <= static_cast<float>(b); } \
  inline bool operator>=(T a, T b) { return static_cast<float>(a) >= static_cast<float>(b); }
CUDASIM_LOWP_OPS(__half)

#define CUDART_INF_FP16 __ushort_as_half(static_cast<unsigned short>(0x7C00U))
#define CUDART_NAN_FP16 __ushort_as_half(static_cast<unsigned short>(0x7FFFU))

// cudasim's cuda_bf16.h: __nv_bfloat16 and __nv_bfloat162 with the CUDA header's conversions
// (cudasim_lowp.h). The names and signatures are NVIDIA's, so the same kernel source compiles
// against either header. Like NVIDIA's, it includes cuda_fp16.h.
#pragma once

#include "cuda_fp16.h"

struct __nv_bfloat16_raw {
  unsigned short x;
};
struct __nv_bfloat162_raw {
  unsigned short x, y;
};

struct alignas(2) __nv_bfloat16 {
  unsigned short __x;  // (protected in NVIDIA's header; use __bfloat16_as_ushort)
  __nv_bfloat16() = default;
  __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
  __nv_bfloat16& operator=(const __nv_bfloat16_raw& r) {
    __x = r.x;
    return *this;
  }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
  __nv_bfloat16(float f) : __x(cudasim::lowp::f32_to_bf16(f, false)) {}
  __nv_bfloat16(double d) : __nv_bfloat16(static_cast<float>(d)) {}
  __nv_bfloat16(int i) : __nv_bfloat16(static_cast<float>(i)) {}
  operator float() const { return cudasim::lowp::bf16_to_f32(__x); }
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
  __nv_bfloat162() = default;
  __nv_bfloat162(const __nv_bfloat16& a, const __nv_bfloat16& b) : x(a), y(b) {}
  __nv_bfloat162(const __nv_bfloat162_raw& r)
      : x(__nv_bfloat16_raw{r.x}), y(__nv_bfloat16_raw{r.y}) {}
  operator __nv_bfloat162_raw() const { return __nv_bfloat162_raw{x.__x, y.__x}; }
};
using nv_bfloat16 = __nv_bfloat16;
using nv_bfloat162 = __nv_bfloat162;

inline __nv_bfloat16 __float2bfloat16(float a) {
  return __nv_bfloat16_raw{cudasim::lowp::f32_to_bf16(a, false)};
}
inline __nv_bfloat16 __float2bfloat16_rn(float a) {
  return __nv_bfloat16_raw{cudasim::lowp::f32_to_bf16(a, false)};
}
inline __nv_bfloat16 __float2bfloat16_rz(float a) {
  return __nv_bfloat16_raw{cudasim::lowp::f32_to_bf16(a, true)};
}
inline float __bfloat162float(__nv_bfloat16 a) { return cudasim::lowp::bf16_to_f32(a.__x); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short i) { return __nv_bfloat16_raw{i}; }
inline __nv_bfloat162 __float2bfloat162_rn(float a) {
  return {__float2bfloat16_rn(a), __float2bfloat16_rn(a)};
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
inline __nv_bfloat162 __float22bfloat162_rn(float2 a) {
  return {__float2bfloat16_rn(a.x), __float2bfloat16_rn(a.y)};
}
inline float2 __bfloat1622float2(__nv_bfloat162 a) {
  return {__bfloat162float(a.x), __bfloat162float(a.y)};
}
inline float __low2float(__nv_bfloat162 a) { return __bfloat162float(a.x); }
inline float __high2float(__nv_bfloat162 a) { return __bfloat162float(a.y); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 a) { return a.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 a) { return a.y; }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return {a, b}; }
inline bool __hisnan(__nv_bfloat16 a) { return (a.__x & 0x7fffu) > 0x7f80u; }

CUDASIM_LOWP_OPS(__nv_bfloat16)

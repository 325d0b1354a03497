// Element types. float32 is the training type; float64 exists on the CPU so that gradient checks
// can use finite differences without round-off; int32/uint8 carry labels, argmax indices, masks and
// raw images. bfloat16/float16 are the storage types of mixed precision (--precision bf16|fp16):
// 16-bit values (core/half.h: minidl::bf16, minidl::f16, conversions as CUDA rounds) that ops
// read and write while they compute in float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>

#include "core/error.h"
#include "core/half.h"

namespace minidl {

enum class DType : uint8_t { F32, F64, I32, U8, BF16, F16 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::U8: return 1;
    case DType::BF16: return 2;
    case DType::F16: return 2;
  }
  return 0;
}

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::I32: return "int32";
    case DType::U8: return "uint8";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
  }
  return "?";
}

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::U8; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::BF16; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::F16; };
template <typename T> inline constexpr DType dtype_v = dtype_of<T>::value;

// float32, float64, bfloat16, float16.
constexpr bool is_floating(DType t) {
  return t == DType::F32 || t == DType::F64 || t == DType::BF16 || t == DType::F16;
}
// bfloat16 and float16: stored in 16 bits, computed in float32.
constexpr bool is_low_precision(DType t) { return t == DType::BF16 || t == DType::F16; }

// Run `fn.template operator()<T>()` with T the C++ type of a floating dtype (float32/float64).
// Usage: dispatch_floating(x.dtype(), "relu_forward", [&]<typename T>() { cpu_relu<T>(...); });
template <typename Fn>
decltype(auto) dispatch_floating(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::F32: return fn.template operator()<float>();
    case DType::F64: return fn.template operator()<double>();
    default: break;
  }
  throw_error(str(op, ": dtype ", t, " is not supported (expected float32 or float64)"));
}

// Run `fn.template operator()<T>()` with T the storage type of a tensor that computes in float32:
// float (float32), bf16 (bfloat16) or f16 (float16). Ops whose low-precision path reads and writes
// 16-bit values with float32 math use it (core/half.h converts: to_float, from_float<T>).
template <typename Fn>
decltype(auto) dispatch_float32_storage(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::F32: return fn.template operator()<float>();
    case DType::BF16: return fn.template operator()<bf16>();
    case DType::F16: return fn.template operator()<f16>();
    default: break;
  }
  throw_error(str(op, ": dtype ", t, " is not supported (expected float32, bfloat16 or float16)"));
}

// Run `fn.template operator()<T>()` with T the storage type of any floating dtype: float, double,
// bf16, f16 (kernels load with widen() and store with narrow<T>(), core/half.h).
template <typename Fn>
decltype(auto) dispatch_storage(DType t, const char* op, Fn&& fn) {
  if (t == DType::F64) return fn.template operator()<double>();
  return dispatch_float32_storage(t, op, fn);
}

}  // namespace minidl

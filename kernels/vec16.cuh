// 16-byte vector loads and stores for the memory-bound CUDA kernels, over the storage types that
// compute in float32 (float, bf16, f16; core/half.h), and the elementwise map kernels built on
// them (add, activations). Included by .cu files only: the kernels are templates, launched from
// each op's .cu (cudasim rewrites the launches there).
//
// A Unit<W> is W consecutive elements of one tensor, held as float (the math type): W = 1, or
// W = kVec<T> = 16 / sizeof(T) (4 float, 8 bfloat16/float16), read and written as one uint4 /
// float4, i.e. one 128-bit transaction per thread. The 16-bit values are unpacked from the uint4's
// halves (element 0 is the low half of .x: little endian, as on every CUDA GPU) and converted with
// core/half.h, the functions the CPU rows use, so both give the same bits.
//
// Elementwise maps (map1_kernel, map2_kernel): the vectors need every pointer 16-byte aligned at
// the same element, which a view into a tensor may not be. vec_split() splits an n-element map
// into a scalar head up to the first 16-byte boundary, whole vectors, and a scalar tail; when the
// pointers sit at different offsets within 16 bytes (only views can), everything runs scalar. One
// grid-stride loop covers the vectors, a second the head and tail elements.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/half.h"

namespace minidl::cuda {

// cuDNN's data type for a storage type (the cuda-vendor rows of the memory-bound ops: cuDNN reads
// and writes 16-bit tensors and computes in float, with float alpha/beta).
template <typename T>
constexpr cudnnDataType_t cudnn_data_type() {
  if constexpr (sizeof(T) == 4)
    return CUDNN_DATA_FLOAT;
  else if constexpr (std::is_same_v<T, bf16>)
    return CUDNN_DATA_BFLOAT16;
  else
    return CUDNN_DATA_HALF;
}

template <typename T>
inline constexpr int kVec = 16 / static_cast<int>(sizeof(T));

template <int W>
struct Unit {
  float v[W];
};

namespace vec_detail {
template <typename T>
__device__ __forceinline__ float from16(unsigned bits) {
  return widen(T::from_bits(static_cast<uint16_t>(bits)));
}
template <typename T>
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
  return unsigned(narrow<T>(lo).bits) | (unsigned(narrow<T>(hi).bits) << 16);
}
}  // namespace vec_detail

// Unit `off` (counted in units of W elements from p) of p, as float. kNc: through the read-only
// (non-coherent) cache, __ldg, for data no thread of the kernel writes; the maps, whose output may
// alias an input, load plainly.
template <typename T, int W, bool kNc = true>
__device__ __forceinline__ Unit<W> load_unit(const T* __restrict__ p, int64_t off) {
  static_assert(W == 1 || W == kVec<T>, "a unit is one element or 16 bytes");
  Unit<W> u;
  if constexpr (W == 1) {
    if constexpr (sizeof(T) == 4 && kNc)
      u.v[0] = __ldg(p + off);
    else
      u.v[0] = widen(p[off]);
  } else if constexpr (sizeof(T) == 4) {
    const float4* q = reinterpret_cast<const float4*>(p) + off;
    const float4 t = kNc ? __ldg(q) : *q;
    u.v[0] = t.x, u.v[1] = t.y, u.v[2] = t.z, u.v[3] = t.w;
  } else {
    const uint4* q = reinterpret_cast<const uint4*>(p) + off;
    const uint4 t = kNc ? __ldg(q) : *q;
    const unsigned w[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      u.v[2 * k] = vec_detail::from16<T>(w[k] & 0xffffu);
      u.v[2 * k + 1] = vec_detail::from16<T>(w[k] >> 16);
    }
  }
  return u;
}

// One element through the read-only cache, as float (gathers: pooling windows, batchnorm).
template <typename T>
__device__ __forceinline__ float ldg_f(const T* p) {
  if constexpr (sizeof(T) == 4)
    return __ldg(p);
  else
    return widen(T::from_bits(__ldg(reinterpret_cast<const uint16_t*>(p))));
}

// Rounds each value of u to T (core/half.h: nearest even) and stores the unit.
template <typename T, int W>
__device__ __forceinline__ void store_unit(T* __restrict__ p, int64_t off, const Unit<W>& u) {
  static_assert(W == 1 || W == kVec<T>, "a unit is one element or 16 bytes");
  if constexpr (W == 1) {
    p[off] = narrow<T>(u.v[0]);
  } else if constexpr (sizeof(T) == 4) {
    reinterpret_cast<float4*>(p)[off] = make_float4(u.v[0], u.v[1], u.v[2], u.v[3]);
  } else {
    reinterpret_cast<uint4*>(p)[off] =
        make_uint4(vec_detail::pack2<T>(u.v[0], u.v[1]), vec_detail::pack2<T>(u.v[2], u.v[3]),
                   vec_detail::pack2<T>(u.v[4], u.v[5]), vec_detail::pack2<T>(u.v[6], u.v[7]));
  }
}

// Whether every pointer is 16-byte aligned.
inline bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// An n-element map: elements [0, head) scalar, then `vecs` vectors of kVec<T> elements from
// element head (16-byte aligned in every pointer), then the scalar tail up to n.
struct VecSplit {
  int64_t n, head, vecs;
  int64_t vecs_end;  // head + vecs * kVec<T>: where the tail starts
};

template <typename T>
VecSplit vec_split(int64_t n, std::initializer_list<const void*> ptrs) {
  const uintptr_t off = reinterpret_cast<uintptr_t>(*ptrs.begin()) % 16;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != off) return {n, n, 0, n};  // no common boundary
  int64_t head = static_cast<int64_t>((16 - off) % 16 / sizeof(T));
  if (head > n) head = n;
  const int64_t vecs = (n - head) / kVec<T>;
  return {n, head, vecs, head + vecs * kVec<T>};
}

// The index of the j-th scalar element of s: the head's, then the tail's.
__device__ __forceinline__ int64_t scalar_index(const VecSplit& s, int64_t j) {
  return j < s.head ? j : s.vecs_end + (j - s.head);
}

// Elements outside the vectors: the head and the tail.
__host__ __device__ __forceinline__ int64_t scalar_count(const VecSplit& s) {
  return s.head + (s.n - s.vecs_end);
}

// Work items of a map launch (vectors and scalars), for grid_stride_blocks.
inline int64_t map_items(const VecSplit& s) {
  const int64_t scalars = scalar_count(s);
  return s.vecs > scalars ? s.vecs : scalars;
}

// out[i] = f(a[i]) for i < s.n: float math, one rounding to T. out may alias a.
template <typename T, typename F>
__global__ void map1_kernel(T* out, const T* a, VecSplit s, F f) {
  constexpr int V = kVec<T>;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t v = first; v < s.vecs; v += stride) {
    Unit<V> u = load_unit<T, V, false>(a + s.head, v);
#pragma unroll
    for (int k = 0; k < V; ++k) u.v[k] = f(u.v[k]);
    store_unit<T, V>(out + s.head, v, u);
  }
  for (int64_t j = first; j < scalar_count(s); j += stride) {
    const int64_t i = scalar_index(s, j);
    out[i] = narrow<T>(f(widen(a[i])));
  }
}

// out[i] = f(a[i], b[i]) for i < s.n: float math, one rounding to T. out may alias a or b.
template <typename T, typename F>
__global__ void map2_kernel(T* out, const T* a, const T* b, VecSplit s, F f) {
  constexpr int V = kVec<T>;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t v = first; v < s.vecs; v += stride) {
    Unit<V> u = load_unit<T, V, false>(a + s.head, v);
    const Unit<V> w = load_unit<T, V, false>(b + s.head, v);
#pragma unroll
    for (int k = 0; k < V; ++k) u.v[k] = f(u.v[k], w.v[k]);
    store_unit<T, V>(out + s.head, v, u);
  }
  for (int64_t j = first; j < scalar_count(s); j += stride) {
    const int64_t i = scalar_index(s, j);
    out[i] = narrow<T>(f(widen(a[i]), widen(b[i])));
  }
}

}  // namespace minidl::cuda

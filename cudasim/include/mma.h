// cudasim's mma.h: the WMMA API (nvcuda::wmma) for the 16x16x16 shape with __half or
// __nv_bfloat16 inputs and float accumulators, emulated to the contract of the CUDA C++
// Programming Guide ("Warp Matrix Functions"):
//   - load_matrix_sync, store_matrix_sync and mma_sync are warp collectives: all 32 lanes of the
//     warp must call them, from the same place, with the same arguments (pointer, ldm, layout) and
//     fragment types. A lane that exited, a warp with fewer than 32 threads, lanes at different
//     calls, or lanes passing different arguments fail the launch with file:line;
//   - the pointer must be 256-bit (32-byte) aligned, and ldm (in elements) a multiple of 8 for
//     16-bit elements and of 4 for float (16 bytes); a store's ldm must also be >= 16 (rows or
//     columns that overlap would make the result depend on the order of the lanes' writes);
//   - fill_fragment is not a collective (it sets the calling lane's elements).
// The mapping of matrix elements to lanes is unspecified by CUDA; here lane l holds elements
// l, l + 32, ..., l + 224 of the 16x16 tile in row-major order (num_elements = 8 per lane; NVIDIA's
// fragments hold more, with duplicates): code that reads x[i] as a particular row or column is
// wrong on a GPU and is wrong here too, differently.
//
// Memory is read and written by each lane for its own elements after the collective has gathered
// the warp, so in race mode a load_matrix_sync of shared memory that another thread wrote in the
// same barrier interval (a missing __syncthreads after staging) is reported as a race.
//
// Numerics of mma_sync: each product of two 16-bit values is exact in float (11 + 11 <= 24
// significant bits for half, 8 + 8 for bfloat16), and d = c + sum_k a_k b_k is accumulated in
// float, k = 0..15 in order, one rounding (to nearest) per step (fmaf). Tensor cores add in a
// different, unspecified order, and some generations truncate instead of rounding (Fasi, Higham,
// Mikaitis and Pranesh, "Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021), so tests bound
// the error for any order with a unit roundoff of 2^-23 (one ulp per addition), which covers both.
#pragma once

#include <cstdint>
#include <cstdio>
#include <source_location>
#include <string>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "cudasim's WMMA emulates the m16n16k16 shape only");
  static_assert(std::is_same_v<Use, accumulator>
                    ? std::is_same_v<T, float> && std::is_void_v<Layout>
                    : (std::is_same_v<T, __half> ||
                       std::is_same_v<T, __nv_bfloat16>)&&(std::is_same_v<Layout, row_major> ||
                                                           std::is_same_v<Layout, col_major>),
                "cudasim's WMMA: matrix_a/matrix_b fragments of __half or __nv_bfloat16 with "
                "row_major or col_major, accumulators of float without a layout");
  using element_type = T;
  using storage_element_type = T;
  enum { num_elements = 8 };
  T x[num_elements];
};

namespace detail {

using Loc = std::source_location;
template <class Use, class T, class Layout>
constexpr uint32_t type_tag() {
  return (std::is_same_v<Use, matrix_a>   ? 1u
          : std::is_same_v<Use, matrix_b> ? 2u
                                          : 3u) |
         (std::is_same_v<T, __half>          ? 4u
          : std::is_same_v<T, __nv_bfloat16> ? 8u
                                             : 16u) |
         (std::is_same_v<Layout, row_major>   ? 32u
          : std::is_same_v<Layout, col_major> ? 64u
                                              : 0u);
}
inline const char* type_name(uint32_t tag) {
  switch (tag & 28u) {
    case 4u:
      return "__half";
    case 8u:
      return "__nv_bfloat16";
    default:
      return "float";
  }
}

// What every lane of a collective passes; all fields must agree across the warp.
struct Args {
  const void* ptr;
  uint64_t ldm;
  const char* file;
  uint32_t line;
  uint32_t tag;
  uint32_t layout;
  uint32_t pad;
};
static_assert(sizeof(Args) <= ::cudasim::detail::kMaxExchangeBytes);

inline std::string where(const Loc& loc) {
  return std::string(loc.file_name()) + ":" + std::to_string(loc.line());
}
inline std::string describe(const Args& a) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "pointer %p, ldm %llu, layout %u, %s fragment, at %s:%u", a.ptr,
                static_cast<unsigned long long>(a.ldm), a.layout, type_name(a.tag), a.file, a.line);
  return buf;
}

// Gathers the warp and checks that every lane passed the same arguments.
inline void gather_uniform(const char* what, const Loc& loc, const Args& mine) {
  Args all[32];
  ::cudasim::detail::warp_exchange({loc.file_name(), static_cast<int>(loc.line())}, what, &mine,
                                   sizeof(Args), all);
  for (unsigned l = 1; l < 32; ++l) {
    const Args& a = all[l];
    if (a.ptr != all[0].ptr || a.ldm != all[0].ldm || a.tag != all[0].tag ||
        a.layout != all[0].layout || a.line != all[0].line || a.file != all[0].file)
      ::cudasim::detail::kernel_fail(std::string(what) + " at " + where(loc) +
                                     ": the lanes of the warp disagree: lane 0 passed " +
                                     describe(all[0]) + ", lane " + std::to_string(l) + " passed " +
                                     describe(a) +
                                     " (all 32 lanes must make the same call with the same "
                                     "arguments)");
  }
}

inline std::string hex_pointer(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

inline void check_memory(const char* what, const Loc& loc, const void* p, unsigned ldm,
                         size_t elem_bytes, bool store) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    ::cudasim::detail::kernel_fail(
        std::string(what) + " at " + where(loc) + ": pointer " + hex_pointer(p) +
        " is not 256-bit (32-byte) aligned, as the CUDA Programming Guide requires");
  if (ldm * elem_bytes % 16 != 0)
    ::cudasim::detail::kernel_fail(
        std::string(what) + " at " + where(loc) + ": ldm " + std::to_string(ldm) +
        " is not a multiple of " + std::to_string(16 / elem_bytes) + " (16 bytes) for " +
        std::to_string(elem_bytes) + "-byte elements, as the CUDA Programming Guide requires");
  if (store && ldm < 16)
    ::cudasim::detail::kernel_fail(std::string(what) + " at " + where(loc) + ": ldm " +
                                   std::to_string(ldm) +
                                   " < 16: the rows (columns) of the 16x16 tile would overlap");
}

inline int lane() { return static_cast<int>(::cudasim::detail::lane_id()); }
// Row and column in the 16x16 tile of this lane's element i.
inline int elem_row(int i) { return (lane() + 32 * i) / 16; }
inline int elem_col(int i) { return (lane() + 32 * i) % 16; }
inline float to_float(float v) { return v; }
inline float to_float(__half v) { return __half2float(v); }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = static_cast<T>(v);
}

// matrix_a (M x K) / matrix_b (K x N) tiles; `Layout` says how the tile lies in memory.
template <class Use, class T, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm,
                             detail::Loc loc = detail::Loc::current()) {
  static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load needs a layout_t");
  detail::gather_uniform("wmma::load_matrix_sync", loc,
                         {p, ldm, loc.file_name(), loc.line(), detail::type_tag<Use, T, Layout>(),
                          std::is_same_v<Layout, row_major> ? 0u : 1u, 0u});
  detail::check_memory("wmma::load_matrix_sync", loc, p, ldm, sizeof(T), false);
  for (int i = 0; i < f.num_elements; ++i) {
    const int r = detail::elem_row(i), c = detail::elem_col(i);
    f.x[i] = std::is_same_v<Layout, row_major> ? p[static_cast<size_t>(r) * ldm + c]
                                               : p[static_cast<size_t>(c) * ldm + r];
  }
}

template <class T>
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, T>& f, const T* p, unsigned ldm,
                             layout_t layout, detail::Loc loc = detail::Loc::current()) {
  detail::gather_uniform(
      "wmma::load_matrix_sync", loc,
      {p, ldm, loc.file_name(), loc.line(), detail::type_tag<accumulator, T, void>(),
       static_cast<uint32_t>(layout), 0u});
  detail::check_memory("wmma::load_matrix_sync", loc, p, ldm, sizeof(T), false);
  for (int i = 0; i < f.num_elements; ++i) {
    const int r = detail::elem_row(i), c = detail::elem_col(i);
    f.x[i] = layout == mem_row_major ? p[static_cast<size_t>(r) * ldm + c]
                                     : p[static_cast<size_t>(c) * ldm + r];
  }
}

template <class T>
inline void store_matrix_sync(T* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm,
                              layout_t layout, detail::Loc loc = detail::Loc::current()) {
  detail::gather_uniform(
      "wmma::store_matrix_sync", loc,
      {p, ldm, loc.file_name(), loc.line(), detail::type_tag<accumulator, T, void>(),
       static_cast<uint32_t>(layout), 0u});
  detail::check_memory("wmma::store_matrix_sync", loc, p, ldm, sizeof(T), true);
  for (int i = 0; i < f.num_elements; ++i) {
    const int r = detail::elem_row(i), c = detail::elem_col(i);
    (layout == mem_row_major ? p[static_cast<size_t>(r) * ldm + c]
                             : p[static_cast<size_t>(c) * ldm + r]) = f.x[i];
  }
}

// d = a b + c. Two collectives: the first gathers the warp and every lane copies the whole of A and
// B out of the other lanes' fragments; the second waits until all have copied, so no lane can
// overwrite its a or b (or its d, when d is c) while another still reads them.
template <class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, T, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, T, LB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c,
                     detail::Loc loc = detail::Loc::current()) {
  struct Ptrs {
    const T* a;
    const T* b;
    const char* file;
    uint32_t line;
    uint32_t tag;
  };
  static_assert(sizeof(Ptrs) <= ::cudasim::detail::kMaxExchangeBytes);
  const Ptrs mine{a.x, b.x, loc.file_name(), loc.line(),
                  detail::type_tag<matrix_a, T, LA>() | detail::type_tag<matrix_b, T, LB>() << 8};
  Ptrs all[32];
  const ::cudasim::Loc l{loc.file_name(), static_cast<int>(loc.line())};
  ::cudasim::detail::warp_exchange(l, "wmma::mma_sync", &mine, sizeof(Ptrs), all);
  for (unsigned k = 1; k < 32; ++k)
    if (all[k].line != all[0].line || all[k].file != all[0].file || all[k].tag != all[0].tag)
      ::cudasim::detail::kernel_fail(
          "wmma::mma_sync at " + detail::where(loc) + ": lane " + std::to_string(k) + " is at " +
          all[k].file + ":" + std::to_string(all[k].line) + " while lane 0 is at " + all[0].file +
          ":" + std::to_string(all[0].line) + " (all 32 lanes must make the same call)");
  float A[16][16], B[16][16];
  for (int e = 0; e < 256; ++e) {
    A[e / 16][e % 16] = detail::to_float(all[e % 32].a[e / 32]);
    B[e / 16][e % 16] = detail::to_float(all[e % 32].b[e / 32]);
  }
  ::cudasim::detail::warp_exchange(l, "wmma::mma_sync (operands copied)", nullptr, 0, nullptr);
  for (int i = 0; i < d.num_elements; ++i) {
    const int r = detail::elem_row(i), col = detail::elem_col(i);
    float acc = c.x[i];
    for (int k = 0; k < 16; ++k) acc = fmaf(A[r][k], B[k][col], acc);
    d.x[i] = acc;
  }
}

}  // namespace nvcuda::wmma

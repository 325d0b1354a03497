// The 16-bit memory-bound CPU loops (batchnorm, activations, the residual add, convert) compiled a
// second time for AVX-512, chosen per call where the CPU has it (issue 15).
//
// minidl is built for the baseline x86-64 ISA (SSE2), so a loop over bfloat16 runs 4 float lanes
// at best, and the rounding of core/half.h (integer add, shift and a NaN select per element) is
// what such a loop spends its time on. run_simd16<T>(body) runs body() from a copy compiled with
// AVX-512 (F, BW, VL, DQ: 16 float lanes, 16-bit packs) when T is bfloat16 or float16 and the CPU
// has those features, else body() as built. The body is the same source either way: the compiler
// vectorises the same scalar code of core/half.h (RNE by integer ops, NaN -> 0x7FFF, subnormals
// kept), so the 16-bit results are bit-identical to core/half.h element by element; no hardware
// conversion instruction (VCVTNEPS2BF16 flushes denormal inputs to zero) is used. GCC's AVX-512
// brings FMA, and C++ lets it contract a * b + c into one rounding; the copy is compiled with
// fp-contract=off, so its float math rounds operation by operation as on the baseline ISA, which
// has no FMA: both copies give the same bits (the reductions keep 16 lanes on both, batchnorm.cpp).
//
// How: an OpenMP region is outlined into its own function when the enclosing function is
// compiled, with that function's target, so the AVX-512 copy must sit inside the parallel region:
// call run_simd16 per channel or per chunk, not around a `#pragma omp parallel`. The copy is a
// [[gnu::flatten]] function with the AVX-512 target, which inlines body() and everything it calls
// (all of it default-target code, which GCC may inline into a superset target).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/half.h"

namespace minidl::cpu {

// Whether this CPU has AVX-512 F, BW, VL and DQ (checked once).
bool cpu_has_avx512();
// Whether run_simd16 takes the AVX-512 copy: the CPU has it and allow_avx512_copy(false) has not
// been called. Tests switch it off to compare the two copies bit for bit (cpu_simd_test.cpp).
bool use_avx512_copy();
void allow_avx512_copy(bool allowed);

template <typename T>
inline constexpr bool is_16bit_storage_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define MINIDL_HAVE_AVX512_CLONE 1
template <typename F>
[[gnu::target("avx512f,avx512bw,avx512vl,avx512dq"), gnu::flatten,
  gnu::optimize("fp-contract=off")]] void
run_avx512(F& body) {
  body();
}
#else
#define MINIDL_HAVE_AVX512_CLONE 0
#endif

template <typename T, typename F>
inline void run_simd16(F&& body) {
#if MINIDL_HAVE_AVX512_CLONE
  if constexpr (is_16bit_storage_v<T>) {
    if (use_avx512_copy()) return run_avx512(body);
  }
#endif
  body();
}

// body(begin, end) over [0, n) in chunks of 16384 elements (a multiple of 16 lanes), threads over
// the chunks when n > 65536 (as the loops it replaces), each chunk through run_simd16<T>.
template <typename T, typename F>
void parallel_chunks(int64_t n, F&& body) {
  constexpr int64_t kChunk = 16384;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t begin = k * kChunk, end = std::min(n, begin + kChunk);
    run_simd16<T>([&] { body(begin, end); });
  }
}

}  // namespace minidl::cpu

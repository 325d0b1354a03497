// Seeded random numbers that are the same on the CPU and on a GPU.
//
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) is a
// counter-based generator: the n-th random word is a pure function of (seed, n). A CUDA kernel can
// therefore give element i the word philox(seed, offset + i) with no shared state, and a CPU loop
// computing the same function gets the same numbers: a dropout mask drawn on the GPU equals the one
// drawn on the CPU with the same seed. `Generator` hands out disjoint counter ranges so that
// successive draws never overlap.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MINIDL_HD __host__ __device__ __forceinline__
#else
#define MINIDL_HD inline
#endif

namespace minidl {

struct Philox4 {
  uint32_t v[4];
};

// Philox4x32-10 of counter `ctr` under key `seed`: four independent uniform 32-bit words.
MINIDL_HD Philox4 philox4x32(uint64_t seed, uint64_t ctr) {
  uint32_t c0 = static_cast<uint32_t>(ctr), c1 = static_cast<uint32_t>(ctr >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// The i-th 32-bit word of the stream (seed, offset): word i lives in counter offset + i/4.
MINIDL_HD uint32_t philox_word(uint64_t seed, uint64_t index) {
  return philox4x32(seed, index >> 2).v[index & 3];
}

// A uniform float in [0, 1) from a 32-bit word (24 significant bits, exactly representable).
MINIDL_HD float uniform_from_word(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}

  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
    block_ctr_ = ~uint64_t(0);
    has_spare_normal_ = false;
  }

  // Reserve `n` words for a parallel draw (word i is philox_word(seed(), start + i)); returns start.
  uint64_t reserve(uint64_t n) {
    const uint64_t start = (offset_ + 3) / 4 * 4;  // start on a whole counter
    offset_ = start + n;
    return start;
  }

  // Word offset_ of the stream; the 4-word Philox block is computed once and reused for its words.
  uint32_t next_u32() {
    const uint64_t ctr = offset_ >> 2;
    if (ctr != block_ctr_) {
      block_ = philox4x32(seed_, ctr);
      block_ctr_ = ctr;
    }
    return block_.v[offset_++ & 3];
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() {
    const uint64_t hi = next_u32() >> 5, lo = next_u32() >> 6;
    return (static_cast<double>(hi) * 67108864.0 + static_cast<double>(lo)) * (1.0 / 9007199254740992.0);
  }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Integer uniform in [0, n).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>(uniform() * static_cast<double>(n)); }
  // Standard normal by Box-Muller; each pair of uniforms gives two normals (the second is kept
  // for the next call).
  double normal() {
    if (has_spare_normal_) {
      has_spare_normal_ = false;
      return spare_normal_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_normal_ = r * std::sin(6.283185307179586 * u2);
    has_spare_normal_ = true;
    return r * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
  uint64_t block_ctr_ = ~uint64_t(0);  // counter of the cached block
  Philox4 block_{};
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

}  // namespace minidl

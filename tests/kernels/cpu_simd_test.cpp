// The AVX-512 copies of the 16-bit memory-bound loops (kernels/cpu_simd.h) give, element by
// element, the bits of the scalar formulas of core/half.h: every bfloat16 and float16 pattern,
// float32 values at every rounding boundary of every bfloat16 pattern, and the ReLU and add maps,
// at lengths that leave a tail after the 16-lane vectors and after the 16384-element chunks, and
// above the 65536 elements where the loops split across threads.
// The AVX-512 copy also gives the same bits as the baseline build of the same loops, for every
// op it serves, float32 statistics and gradients included (no FMA contraction, the same
// reduction order). On a CPU without AVX-512 the checks run the baseline build twice.
#include "kernels/cpu_simd.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "../support/test_util.h"
#include "core/half.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"

using namespace minidl;
using namespace minidl::test;

namespace {

const Backend kRef = Backend::CpuReference;

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Lengths: one lane's worth and less, a vector plus a tail, a chunk plus a tail, several chunks
// split over threads with a tail.
const int64_t kLengths[] = {1, 15, 16, 17, 16384 + 3, 4 * 16384 + 16 * 7 + 5};

}  // namespace

TEST_CASE("cpu_simd: convert gives core/half.h's bits for every 16-bit pattern and rounding case",
          "[kernels][simd][convert][half]") {
  INFO("AVX-512 copy in use: " << (cpu::cpu_has_avx512() ? "yes" : "no (baseline loops)"));
  // Every 16-bit pattern, then 37 more so the length is not a multiple of 16 (a vector tail) and
  // exceeds 65536 (the threaded chunks).
  std::vector<uint16_t> all(65536 + 37);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i * 40503u);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  const Shape s16{static_cast<int64_t>(all.size())};
  for (DType t : {DType::BF16, DType::F16}) {
    INFO(dtype_name(t) << " -> float32");
    Tensor h = Tensor::empty(s16, t);
    std::memcpy(h.raw_data(), all.data(), all.size() * 2);
    Tensor f = Tensor::empty(s16, DType::F32);
    poison(f);
    convert(kRef, f, h);
    const uint32_t* got = static_cast<const uint32_t*>(f.raw_data());
    int64_t bad = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      const float want = t == DType::BF16 ? bf16_bits_to_float(all[i]) : f16_bits_to_float(all[i]);
      uint32_t w;
      std::memcpy(&w, &want, 4);
      bad += got[i] != w;
    }
    CHECK(bad == 0);
  }
  // float32 -> 16 bits: for every high half (every bfloat16 pattern: NaNs, infinities, subnormals,
  // the largest finite value), the low halves at bfloat16's rounding boundaries (exact, just
  // below/at/above the tie, the top), plus a few float16 boundaries; 7 * 65536 + 5 values.
  std::vector<uint32_t> fb;
  for (uint32_t hi = 0; hi < 65536; ++hi)
    for (uint32_t lo : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xC000u, 0xFFFFu})
      fb.push_back(hi << 16 | lo);
  for (float v : {65504.0f, 65519.996f, 65520.0f, 0x1p-24f, 0x1p-25f}) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    fb.push_back(u);
  }
  const Shape s32{static_cast<int64_t>(fb.size())};
  Tensor f = Tensor::empty(s32, DType::F32);
  std::memcpy(f.raw_data(), fb.data(), fb.size() * 4);
  for (DType t : {DType::BF16, DType::F16}) {
    INFO("float32 -> " << dtype_name(t));
    Tensor h = Tensor::empty(s32, t);
    poison(h);
    convert(kRef, h, f);
    const uint16_t* got = static_cast<const uint16_t*>(h.raw_data());
    int64_t bad = 0;
    for (size_t i = 0; i < fb.size(); ++i) {
      const float v = bits_float(fb[i]);
      bad += got[i] != (t == DType::BF16 ? float_to_bf16_bits(v) : float_to_f16_bits(v));
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("cpu_simd: ReLU and add on bfloat16 give the scalar formula's bits",
          "[kernels][simd][activation][elementwise][half]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed << ", AVX-512 copy in use: " << (cpu::cpu_has_avx512() ? "yes" : "no"));
  Generator g(seed);
  for (const int64_t n : kLengths) {
    INFO("length " << n);
    const Shape s{n};
    // Values around 0 (ReLU's branch), some of them subnormal in float32 (rounding keeps them).
    const Tensor a = cast(uniform_tensor(s, g, -3, 3, DType::F32), DType::BF16);
    const Tensor b = cast(uniform_tensor(s, g, -3, 3, DType::F32), DType::BF16);
    const bf16* pa = a.data<bf16>();
    const bf16* pb = b.data<bf16>();
    auto expect_bits = [&](const char* what, const Tensor& out, auto formula) {
      INFO(what);
      const bf16* po = out.data<bf16>();
      int64_t bad = 0;
      for (int64_t i = 0; i < n; ++i) bad += po[i].bits != narrow<bf16>(formula(i)).bits;
      CHECK(bad == 0);
    };
    Tensor y = Tensor::empty(s, DType::BF16);
    poison(y);
    activation_forward(kRef, y, a, Activation::ReLU, 0.0);
    expect_bits("relu forward", y, [&](int64_t i) { return std::max(widen(pa[i]), 0.0f); });
    Tensor dx = Tensor::empty(s, DType::BF16);
    poison(dx);
    activation_backward(kRef, dx, b, a, y, Activation::ReLU, 0.0);
    expect_bits("relu backward", dx,
                [&](int64_t i) { return widen(pa[i]) > 0.0f ? widen(pb[i]) : 0.0f; });
    Tensor out = Tensor::empty(s, DType::BF16);
    poison(out);
    add_scaled(kRef, out, a, b, -0.75);
    expect_bits("a - 0.75 b", out, [&](int64_t i) { return widen(pa[i]) + -0.75f * widen(pb[i]); });
  }
}

namespace {

// Switches the AVX-512 copy off for its scope (back on at the end, also on a failed check).
struct BaselineOnly {
  BaselineOnly() { cpu::allow_avx512_copy(false); }
  ~BaselineOnly() { cpu::allow_avx512_copy(true); }
};

// run() computes some outputs from fixed inputs; it runs once as the CPU allows (the AVX-512 copy
// where it has it) and once on the baseline build, and every output must have the same bytes.
template <typename Run>
void expect_copies_agree(const char* what, Run run) {
  INFO(what);
  const std::vector<Tensor> fast = run();
  std::vector<Tensor> base;
  {
    BaselineOnly guard;
    base = run();
  }
  REQUIRE(fast.size() == base.size());
  for (size_t k = 0; k < fast.size(); ++k) {
    INFO("output " << k);
    REQUIRE(fast[k].nbytes() == base[k].nbytes());
    CHECK(std::memcmp(fast[k].raw_data(), base[k].raw_data(), fast[k].nbytes()) == 0);
  }
}

}  // namespace

TEST_CASE("cpu_simd: the AVX-512 copy and the baseline build give the same bits",
          "[kernels][simd][batchnorm][activation][elementwise][convert][half]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed << ", AVX-512 copy in use: " << (cpu::cpu_has_avx512() ? "yes" : "no"));
  Generator g(seed);
  // HW = 77 and 16 * 16 + 3 leave a tail after the 16 lanes in every row; the third shape is
  // above 65536 elements, so the loops split over threads.
  for (const Shape& s : {Shape{2, 3, 7, 11}, Shape{3, 5, 1, 259}, Shape{4, 9, 45, 47}}) {
    for (DType t : {DType::BF16, DType::F16}) {
      INFO("shape " << s.str() << ", " << dtype_name(t));
      const Tensor x32 = uniform_tensor(s, g, -3, 3, DType::F32);
      const Tensor x = cast(x32, t), dy = cast(uniform_tensor(s, g, -1, 1, DType::F32), t);
      const Shape cs{s[1]};
      const Tensor gamma = uniform_tensor(cs, g, 0.5, 1.5, DType::F32);
      const Tensor beta = uniform_tensor(cs, g, -1, 1, DType::F32);
      const Tensor mean = uniform_tensor(cs, g, -1, 1, DType::F32);
      const Tensor var = uniform_tensor(cs, g, 0.5, 2, DType::F32);
      const BatchNormParams p{0.1, 1e-5};
      auto fresh = [&](const Shape& shape, DType dtype, Layout layout = Layout::NCHW) {
        Tensor r = Tensor::empty(shape, dtype, Device::cpu(), layout);
        poison(r);
        return r;
      };
      // Batchnorm in both layouts: channels-last has its own loops (batchnorm.cpp, *_nhwc).
      for (Layout L : {Layout::NCHW, Layout::NHWC}) {
        INFO(layout_name(L));
        const Tensor xl = to_layout(x, L), dyl = to_layout(dy, L);
        expect_copies_agree("batchnorm train forward and backward", [&] {
          Tensor y = fresh(s, t, L), sm = fresh(cs, DType::F32), si = fresh(cs, DType::F32);
          Tensor rm = mean.clone(), rv = var.clone();
          batchnorm_forward_train(kRef, y, sm, si, rm, rv, xl, gamma, beta, p);
          Tensor dx = fresh(s, t, L), dg = Tensor::zeros(cs), db = Tensor::zeros(cs);
          batchnorm_backward_train(kRef, dx, dg, db, dyl, xl, gamma, sm, si, p);
          return std::vector<Tensor>{y, sm, si, rm, rv, dx, dg, db};
        });
        expect_copies_agree("batchnorm eval forward and backward", [&] {
          Tensor y = fresh(s, t, L), dx = fresh(s, t, L), dg = Tensor::zeros(cs),
                 db = Tensor::zeros(cs);
          batchnorm_forward_eval(kRef, y, xl, gamma, beta, mean, var, p);
          batchnorm_backward_eval(kRef, dx, dg, db, dyl, xl, gamma, mean, var, p);
          return std::vector<Tensor>{y, dx, dg, db};
        });
      }
      expect_copies_agree("activations, add, convert", [&] {
        std::vector<Tensor> out;
        for (Activation act :
             {Activation::ReLU, Activation::LeakyReLU, Activation::Sigmoid, Activation::Tanh}) {
          Tensor y = fresh(s, t), dx = fresh(s, t);
          activation_forward(kRef, y, x, act, 0.1);
          activation_backward(kRef, dx, dy, x, y, act, 0.1);
          out.insert(out.end(), {y, dx});
        }
        Tensor sum = fresh(s, t), back = fresh(s, t), wide = fresh(s, DType::F32);
        add_scaled(kRef, sum, x, dy, -0.3);
        convert(kRef, back, x32);
        convert(kRef, wide, x);
        out.insert(out.end(), {sum, back, wide});
        return out;
      });
    }
  }
}

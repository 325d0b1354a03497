// augment_batch on the CPU: identity, crop, flip and cutout against values written out by hand or
// computed directly from the definition in augment.h.
#include <catch2/catch.hpp>

#include "kernels/augment.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

Tensor params_of(const std::vector<std::array<int32_t, 5>>& p) {
  std::vector<int32_t> v;
  for (const auto& r : p) v.insert(v.end(), r.begin(), r.end());
  return Tensor::from_vector(v, Shape{static_cast<int64_t>(p.size()), 5});
}

// The definition: normalised pixel (c, y, x) of image `i`, with 0 outside the image.
template <typename T>
T normalised(const Tensor& images, int64_t i, int64_t c, int64_t y, int64_t x,
             const AugmentConfig& cfg) {
  const int64_t H = images.size(2), W = images.size(3);
  const T v = (y >= 0 && y < H && x >= 0 && x < W)
                  ? static_cast<T>(images.data<uint8_t>()[((i * 3 + c) * H + y) * W + x]) / T(255)
                  : T(0);
  return (v - static_cast<T>(cfg.mean[c])) / static_cast<T>(cfg.std[c]);
}

AugmentConfig norm_config(int pad, int cutout = 0) {
  AugmentConfig cfg;
  cfg.pad = pad;
  cfg.cutout = cutout;
  cfg.mean = {0.49f, 0.48f, 0.45f};
  cfg.std = {0.25f, 0.24f, 0.26f};
  return cfg;
}

}  // namespace

TEST_CASE("augment: a crop and a flip by hand", "[augment]") {
  // One 2x3 image; channel 0 holds 10..60, channels 1 and 2 hold 255. mean 0, std 1 on channel 0
  // so outputs are v / 255; channel 1 has mean 0.5, std 0.25, so a padded zero becomes -2.
  std::vector<uint8_t> px{10, 20, 30, 40, 50, 60};
  for (int i = 0; i < 12; ++i) px.push_back(255);
  const Tensor img = Tensor::from_vector(px, Shape{1, 3, 2, 3});
  AugmentConfig cfg;
  cfg.pad = 1;
  cfg.mean = {0.f, 0.5f, 0.f};
  cfg.std = {1.f, 0.25f, 1.f};
  const Tensor idx = Tensor::from_vector<int32_t>({0}, Shape{1});
  Tensor out = Tensor::empty(Shape{1, 3, 2, 3}, DType::F64);

  // dy = 0, dx = 2: the window starts one row above and one column right of the image:
  // row 0 is padding, row 1 is image row 0 shifted left by one with padding entering on the right.
  poison(out);
  augment_batch(out, img, idx, params_of({{0, 2, 0, -1, -1}}), cfg);
  std::vector<double> o = out.to_vector<double>();
  const std::vector<double> ch0{0, 0, 0, 20 / 255., 30 / 255., 0};
  CHECK(std::vector<double>(o.begin(), o.begin() + 6) == ch0);
  CHECK(std::vector<double>(o.begin() + 6, o.begin() + 12) == std::vector<double>{-2, -2, -2, 2, 2, -2});

  // dy = 1, dx = 0, flipped: crop columns (-1, 0, 1) of each row = (0, 10, 20), then mirror.
  poison(out);
  augment_batch(out, img, idx, params_of({{1, 0, 1, -1, -1}}), cfg);
  o = out.to_vector<double>();
  CHECK(std::vector<double>(o.begin(), o.begin() + 6) ==
        std::vector<double>{20 / 255., 10 / 255., 0, 50 / 255., 40 / 255., 0});
}

TEST_CASE("augment: no-augmentation params reproduce the normalised image", "[augment]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor img = random_images(4, 5, 7, g);  // odd, non-square
  const Tensor idx = Tensor::from_vector<int32_t>({2, 0, 3, 2}, Shape{4});
  for (int pad : {0, 4}) {
    const AugmentConfig cfg = norm_config(pad);
    // dy = dx = pad: the crop window sits exactly on the image (what the loader passes without
    // augmentation).
    const Tensor prm = params_of(std::vector<std::array<int32_t, 5>>(4, {pad, pad, 0, -1, -1}));
    Tensor o32 = Tensor::empty(Shape{4, 3, 5, 7}, DType::F32);
    Tensor o64 = Tensor::empty(Shape{4, 3, 5, 7}, DType::F64);
    poison(o32);
    poison(o64);
    augment_batch(o32, img, idx, prm, cfg);
    augment_batch(o64, img, idx, prm, cfg);
    const float* a = o32.data<float>();
    const double* b = o64.data<double>();
    const int32_t* ix = idx.data<int32_t>();
    int64_t bad = 0;
    for (int64_t n = 0, e = 0; n < 4; ++n)
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t h = 0; h < 5; ++h)
          for (int64_t w = 0; w < 7; ++w, ++e)
            // Exact: the same operations in the same type as the definition.
            bad += a[e] != normalised<float>(img, ix[n], c, h, w, cfg) ||
                   b[e] != normalised<double>(img, ix[n], c, h, w, cfg);
    INFO("pad " << pad);
    CHECK(bad == 0);
  }
}

TEST_CASE("augment: crop offsets shift pixels and pad with normalised zeros", "[augment]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const int64_t H = 5, W = 7;
  const Tensor img = random_images(2, H, W, g);
  const AugmentConfig cfg = norm_config(3);
  // Image 0 moves up by 1 and right by 2 (window offset +1 row, -2 columns); image 1 takes the
  // extreme offsets (dy = 0: window 3 rows above; dx = 6: 3 columns right).
  const std::vector<std::array<int32_t, 5>> p{{4, 1, 0, -1, -1}, {0, 6, 0, -1, -1}};
  const Tensor idx = Tensor::from_vector<int32_t>({0, 1}, Shape{2});
  Tensor out = Tensor::empty(Shape{2, 3, H, W}, DType::F64);
  poison(out);
  augment_batch(out, img, idx, params_of(p), cfg);
  const double* o = out.data<double>();
  int64_t bad = 0, border = 0;
  for (int64_t n = 0, e = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w, ++e) {
          const int64_t y = h + p[n][0] - cfg.pad, x = w + p[n][1] - cfg.pad;
          const bool outside = y < 0 || y >= H || x < 0 || x >= W;
          border += outside;
          const double want = outside ? -static_cast<double>(cfg.mean[c]) / cfg.std[c]
                                      : normalised<double>(img, n, c, y, x, cfg);
          bad += o[e] != want;
        }
  CHECK(bad == 0);
  // Image 0: the last row and the first two columns are padding: (7 + 2 * 4) pixels per channel.
  // Image 1: three rows on top and three columns on the right: (3 * 7 + 2 * 3) per channel.
  CHECK(border == 3 * (7 + 2 * 4) + 3 * (3 * 7 + 2 * 3));
}

TEST_CASE("augment: flip reverses every row", "[augment]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor img = random_images(1, 4, 6, g);
  const AugmentConfig cfg = norm_config(4);
  const Tensor idx = Tensor::from_vector<int32_t>({0, 0}, Shape{2});
  Tensor out = Tensor::empty(Shape{2, 3, 4, 6}, DType::F64);
  poison(out);
  augment_batch(out, img, idx, params_of({{4, 4, 0, -1, -1}, {4, 4, 1, -1, -1}}), cfg);
  const std::vector<double> o = out.to_vector<double>();
  const int64_t per = 3 * 4 * 6;
  int64_t bad = 0, moved = 0;
  for (int64_t r = 0; r < 3 * 4; ++r)  // rows of all channels
    for (int64_t w = 0; w < 6; ++w) {
      bad += o[per + r * 6 + w] != o[r * 6 + (5 - w)];
      moved += o[per + r * 6 + w] != o[r * 6 + w];
    }
  CHECK(bad == 0);
  CHECK(moved > 0);  // random rows are not all palindromes, else the check above proves nothing
}

TEST_CASE("augment: cutout zeroes the square, clipped at the borders", "[augment]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const int64_t H = 5, W = 7;
  const Tensor img = random_images(1, H, W, g);
  const Tensor idx = Tensor::from_vector<int32_t>({0}, Shape{1});

  struct Case {
    int size, cy, cx;
    int r0, r1, c0, c1;  // expected zeroed rows [r0, r1) and columns [c0, c1)
  };
  for (const Case k : {Case{4, 0, 6, 0, 2, 4, 7},    // top-right corner: rows -2..1, cols 4..7
                       Case{3, 2, 2, 1, 4, 1, 4},    // odd size, inside: a whole 3x3 square
                       Case{2, 4, 0, 3, 5, 0, 1}}) {  // bottom-left corner
    INFO("cutout " << k.size << " at (" << k.cy << ", " << k.cx << ")");
    const AugmentConfig cut = norm_config(4, k.size), plain = norm_config(4, 0);
    Tensor with = Tensor::empty(Shape{1, 3, H, W}, DType::F64);
    Tensor without = Tensor::empty(Shape{1, 3, H, W}, DType::F64);
    poison(with);
    poison(without);
    augment_batch(with, img, idx, params_of({{4, 4, 0, k.cy, k.cx}}), cut);
    augment_batch(without, img, idx, params_of({{4, 4, 0, -1, -1}}), plain);
    const std::vector<double> a = with.to_vector<double>(), b = without.to_vector<double>();
    int64_t bad = 0, zeroed = 0;
    for (int64_t c = 0, e = 0; c < 3; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w, ++e) {
          const bool in = h >= k.r0 && h < k.r1 && w >= k.c0 && w < k.c1;
          zeroed += in;
          bad += a[e] != (in ? 0.0 : b[e]);
        }
    CHECK(bad == 0);
    CHECK(zeroed == 3 * (k.r1 - k.r0) * (k.c1 - k.c0));
  }
  // A centre of -1 disables cutout even when the config enables it.
  Tensor a = Tensor::empty(Shape{1, 3, H, W}, DType::F64), b = Tensor::empty(Shape{1, 3, H, W}, DType::F64);
  augment_batch(a, img, idx, params_of({{4, 4, 0, -1, -1}}), norm_config(4, 8));
  augment_batch(b, img, idx, params_of({{4, 4, 0, -1, -1}}), norm_config(4, 0));
  CHECK(a.to_vector<double>() == b.to_vector<double>());
}

TEST_CASE("augment: bad arguments name the op and what is wrong", "[augment][errors]") {
  Generator g(1);
  const Tensor img = random_images(3, 4, 4, g);
  const Tensor idx = Tensor::from_vector<int32_t>({0, 2}, Shape{2});
  const Tensor prm = params_of({{4, 4, 0, -1, -1}, {4, 4, 0, -1, -1}});
  Tensor out = Tensor::empty(Shape{2, 3, 4, 4});
  const AugmentConfig cfg = norm_config(4);
  REQUIRE_NOTHROW(augment_batch(out, img, idx, prm, cfg));

  Tensor wrong = Tensor::empty(Shape{2, 3, 4, 5});
  REQUIRE_THROWS_WITH(augment_batch(wrong, img, idx, prm, cfg),
                      Catch::Contains("augment_batch") && Catch::Contains("(2, 3, 4, 5)") &&
                          Catch::Contains("(2, 3, 4, 4)"));
  REQUIRE_THROWS_WITH(augment_batch(out, img, Tensor::from_vector<int32_t>({0, 3}, Shape{2}), prm, cfg),
                      Catch::Contains("augment_batch") && Catch::Contains("index 3") &&
                          Catch::Contains("3 images"));
  REQUIRE_THROWS_WITH(augment_batch(out, img, idx, params_of({{4, 9, 0, -1, -1}, {4, 4, 0, -1, -1}}), cfg),
                      Catch::Contains("augment_batch") && Catch::Contains("(4, 9, 0, -1, -1)") &&
                          Catch::Contains("[0, 8]"));
  REQUIRE_THROWS_WITH(augment_batch(out, img, idx, prm.slice(0, 1), cfg),
                      Catch::Contains("params") && Catch::Contains("(1, 5)") && Catch::Contains("(2, 5)"));
  AugmentConfig zero_std = cfg;
  zero_std.std[1] = 0.f;
  REQUIRE_THROWS_WITH(augment_batch(out, img, idx, prm, zero_std),
                      Catch::Contains("std of channel 1"));
}

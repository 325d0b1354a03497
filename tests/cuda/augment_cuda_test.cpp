// augment_batch on the GPU against the CPU reference, and the CUDA data loader against the CPU one.
//
// Tolerance: none. The kernel performs the same IEEE float32 operations in the same order as the
// CPU reference (a uint8 converted to float, one division by 255, one subtraction, one division
// by std; nothing an FMA could contract), and CUDA's default '/' is correctly rounded, so the
// outputs must be bit-identical. Any difference is an indexing or convention bug.
#include <catch2/catch.hpp>

#include "data/loader.h"
#include "kernels/augment.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

Tensor random_images(int64_t m, int64_t h, int64_t w, Generator& g) {
  std::vector<uint8_t> v(static_cast<size_t>(m * 3 * h * w));
  for (auto& x : v) x = static_cast<uint8_t>(g.below(256));
  return Tensor::from_vector(v, Shape{m, 3, h, w});
}

}  // namespace

TEST_CASE("augment_batch CUDA equals the CPU reference exactly", "[cuda][augment][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Device gpu = Device::cuda(0);
  struct Case {
    int64_t m, h, w, n;
    int pad, cutout;
  };
  // Odd, non-square images with an odd cutout; then CIFAR's shape with a batch one past a
  // multiple of 128 and cutout 16; then no padding at all.
  for (const Case k : {Case{7, 9, 13, 5, 3, 5}, Case{300, 32, 32, 129, 4, 16}, Case{4, 5, 3, 6, 0, 2}}) {
    INFO("M " << k.m << " image " << k.h << "x" << k.w << " N " << k.n << " pad " << k.pad
              << " cutout " << k.cutout);
    const Tensor images = random_images(k.m, k.h, k.w, g);
    std::vector<int32_t> idx(static_cast<size_t>(k.n)), prm;
    for (auto& i : idx) i = static_cast<int32_t>(g.below(static_cast<uint64_t>(k.m)));
    for (int64_t n = 0; n < k.n; ++n) {
      const bool cut = g.below(4) != 0;  // a quarter of the images without cutout
      prm.push_back(static_cast<int32_t>(g.below(2 * k.pad + 1)));
      prm.push_back(static_cast<int32_t>(g.below(2 * k.pad + 1)));
      prm.push_back(static_cast<int32_t>(g.below(2)));
      prm.push_back(cut ? static_cast<int32_t>(g.below(static_cast<uint64_t>(k.h))) : -1);
      prm.push_back(cut ? static_cast<int32_t>(g.below(static_cast<uint64_t>(k.w))) : -1);
    }
    const Tensor indices = Tensor::from_vector(idx, Shape{k.n});
    const Tensor params = Tensor::from_vector(prm, Shape{k.n, 5});
    AugmentConfig cfg;
    cfg.pad = k.pad;
    cfg.cutout = k.cutout;
    cfg.mean = {0.4914f, 0.4822f, 0.4465f};
    cfg.std = {0.2470f, 0.2435f, 0.2616f};

    Tensor ref = Tensor::empty(Shape{k.n, 3, k.h, k.w}, DType::F32);
    poison(ref);
    augment_batch(ref, images, indices, params, cfg);

    Tensor out = Tensor::empty(Shape{k.n, 3, k.h, k.w}, DType::F32, gpu);
    poison(out);
    augment_batch(out, images.to(gpu), indices.to(gpu), params.to(gpu), cfg);
    const Comparison c = compare(out, ref, 0.0, 0.0);
    INFO(c.report);
    CHECK(c.ok);
  }
}

TEST_CASE("DataLoader on CUDA yields the CPU loader's batches", "[cuda][loader]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  Dataset d;
  d.name = "random";
  d.images = random_images(45, 32, 32, g);
  for (int i = 0; i < 45; ++i) d.labels.push_back(static_cast<int32_t>(g.below(10)));
  d.num_classes = 10;

  LoaderConfig c;
  c.batch_size = 16;  // 45 = 16 + 16 + 13: a partial last batch
  c.augment = true;
  c.cutout = 8;
  c.norm.mean = {0.49f, 0.48f, 0.45f};
  c.norm.std = {0.25f, 0.24f, 0.26f};
  c.seed = seed;
  DataLoader cpu(d, c);
  c.device = Device::cuda(0);
  DataLoader gpu(d, c);

  for (int64_t epoch : {0, 3}) {
    INFO("epoch " << epoch);
    cpu.start_epoch(epoch);
    gpu.start_epoch(epoch);
    Batch a, b;
    int64_t batches = 0;
    while (cpu.next(a)) {
      REQUIRE(gpu.next(b));
      CHECK(b.images.is_cuda());
      CHECK(b.labels.is_cuda());
      CHECK(a.indices == b.indices);
      CHECK(a.labels.to_vector<int32_t>() == b.labels.to_vector<int32_t>());
      const Comparison cmp = compare(b.images, a.images, 0.0, 0.0);  // exact: see the file comment
      INFO(cmp.report);
      CHECK(cmp.ok);
      ++batches;
    }
    CHECK(batches == 3);
    CHECK_FALSE(gpu.next(b));
  }
}

// augment_batch on every backend of the op (cpu-reference in the CPU suite, cuda-handwritten in the
// CUDA suite) against the float64 cpu-reference, and bit for bit against the float32
// cpu-reference. The reference's semantics (crop, flip, cutout, normalisation) are checked by hand
// in tests/kernels/augment_test.cpp; the CUDA data loader is checked in
// tests/cuda/model_cuda_test.cpp.
//
// Bit for bit: a float32 backend performs the same IEEE float32 operations in the same order as the
// float32 cpu-reference (a uint8 converted to float, one division by 255, one subtraction, one
// division by std; nothing an FMA could contract), and CUDA's default '/' is correctly rounded, so
// the outputs must be identical. Any difference is an indexing or convention bug.
#include "kernels/augment.h"

#include <catch2/catch.hpp>

#include "../support/backends.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

}  // namespace

TEST_CASE("augment_batch: every backend matches the reference", "[ops][augment][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  struct Case {
    int64_t m, h, w, n;
    int pad, cutout;
  };
  // Odd, non-square images with an odd cutout; then CIFAR's shape with a batch one past a
  // multiple of 128 and cutout 16; then no padding at all.
  for (const Case k :
       {Case{7, 9, 13, 5, 3, 5}, Case{300, 32, 32, 129, 4, 16}, Case{4, 5, 3, 6, 0, 2}}) {
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
    const Shape os{k.n, 3, k.h, k.w};

    Tensor ref = Tensor::empty(os, DType::F64), ref32 = Tensor::empty(os, DType::F32);
    poison(ref);
    poison(ref32);
    augment_batch(Backend::CpuReference, ref, images, indices, params, cfg);
    augment_batch(Backend::CpuReference, ref32, images, indices, params, cfg);

    for (const BackendCase& c : backend_cases(augment_op())) {
      INFO("M " << k.m << " image " << k.h << "x" << k.w << " N " << k.n << " pad " << k.pad
                << " cutout " << k.cutout << ", " << c.name());
      Tensor out = poisoned(c, os);
      augment_batch(c.backend, out, images.to(c.device), indices.to(c.device), params.to(c.device),
                    cfg);
      // float32 rounds v / 255 and the subtraction (each under 3e-8 absolute, values <= 1), the
      // division by std ~0.25 multiplies those by 4 and rounds once more (2.4e-7 at |out| <= 4):
      // under 5e-7 in all. (A float32 bound: every case computes in float32.)
      const Comparison c64 = compare(out, ref, 1e-6, 0.0);
      INFO("against float64: " << c64.report);
      CHECK(c64.ok);
      if (c.dtype == DType::F32) {
        const Comparison c32 = compare(out, ref32, 0.0, 0.0);  // exact: see the file comment
        INFO("against the float32 cpu-reference: " << c32.report);
        CHECK(c32.ok);
      }
    }
  }
}

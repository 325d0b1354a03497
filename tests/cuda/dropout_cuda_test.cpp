// CUDA dropout against the CPU reference. The mask is a pure function of (seed, offset + i) on
// both sides, so masks are compared exactly; so are the float32 outputs, because both sides
// compute x * (1 / (1 - p)) with the same single-precision scale. Dropout has one CUDA
// implementation, used on every KernelPath (kernels/kernel_path.h: "our kernels for what cuDNN
// lacks (... dropout ...)").
#include <catch2/catch.hpp>

#include "kernels/dropout.h"
#include "layers/basic.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

const Device kGpu = Device::cuda(0);

struct DropOut {
  Tensor y, mask;
};

DropOut drop(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  DropOut o{Tensor::empty(x.shape(), x.dtype(), x.device()),
            Tensor::empty(x.shape(), DType::U8, x.device())};
  poison(o.y);
  poison(o.mask);
  dropout_forward(o.y, o.mask, x, p, seed, offset);
  return o;
}

}  // namespace

TEST_CASE("cuda dropout: masks and outputs equal the CPU's bit for bit", "[cuda][dropout][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Sizes and offsets that start and end inside a Philox counter (the kernel's partial first and
  // last counters), a large count, and an offset beyond 2^32 (64-bit counters).
  for (int64_t n : {1, 3, 4, 5, 1000, (1 << 20) + 3}) {
    for (uint64_t offset : {uint64_t(0), uint64_t(1), uint64_t(2), uint64_t(3), uint64_t(4099),
                            (uint64_t(1) << 33) + 5}) {
      for (double p : {0.0, 0.1, 0.5, 0.9}) {
        INFO("n " << n << " offset " << offset << " p " << p);
        const Tensor x = uniform_tensor(Shape{n}, g, -1, 1, DType::F32);
        const DropOut ref = drop(x, p, seed, offset);
        const DropOut out = drop(x.to(kGpu), p, seed, offset);
        REQUIRE(out.mask.to_vector<uint8_t>() == ref.mask.to_vector<uint8_t>());
        REQUIRE(out.y.to_vector<float>() == ref.y.to_vector<float>());

        const Tensor dy = uniform_tensor(Shape{n}, g, -1, 1, DType::F32);
        Tensor dx_ref = Tensor::empty(Shape{n}, DType::F32);
        Tensor dx = Tensor::empty(Shape{n}, DType::F32, kGpu);
        poison(dx);
        dropout_backward(dx_ref, dy, ref.mask, p);
        dropout_backward(dx, dy.to(kGpu), out.mask, p);
        REQUIRE(dx.to_vector<float>() == dx_ref.to_vector<float>());
      }
    }
  }
}

TEST_CASE("cuda dropout: values against the float64 reference", "[cuda][dropout]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor x = uniform_tensor(Shape{7, 3, 5, 5}, g, -1, 1, DType::F32);
  const DropOut ref = drop(cast(x, DType::F64), 0.3, seed, 17);
  const DropOut out = drop(x.to(kGpu), 0.3, seed, 17);
  CHECK(out.mask.to_vector<uint8_t>() == ref.mask.to_vector<uint8_t>());
  // float32 rounds p (changing 1 / (1 - p) by 1.7e-8 relative at p = 0.3), then 1 - p (4.3e-8),
  // the quotient (6e-8) and the product (6e-8): at most 1.8e-7 relative in all.
  Comparison c = compare(out.y, ref.y, 0.0, 2.5e-7);
  INFO(c.report);
  CHECK(c.ok);
}

TEST_CASE("cuda Dropout layer draws the CPU layer's masks", "[cuda][dropout]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor x = uniform_tensor(Shape{3, 37}, g, -1, 1, DType::F32);
  Dropout cpu_layer(0.5, seed), gpu_layer(0.5, seed);
  // Two steps: the second forward must advance both generators identically.
  for (int step = 0; step < 2; ++step) {
    INFO("step " << step);
    const auto ref = cpu_layer.forward(x, Mode::Train).to_vector<float>();
    CHECK(gpu_layer.forward(x.to(kGpu), Mode::Train).to_vector<float>() == ref);
    const Tensor dy = uniform_tensor(x.shape(), g, -1, 1, DType::F32);
    CHECK(gpu_layer.backward(dy.to(kGpu)).to_vector<float>() ==
          cpu_layer.backward(dy).to_vector<float>());
  }
}

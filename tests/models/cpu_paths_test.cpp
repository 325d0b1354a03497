// Whole networks in float32 under each CPU kernel setting (handwritten: cpu-reference; onednn:
// cpu-fast convolutions, when built in) against the same network in float64 (the reference):
// logits and every parameter gradient of one training step. This runs every layer's CPU kernel in
// the combinations a model uses (oneDNN primitives for several shapes in one run, the cache, 1x1
// shortcuts, max-pool, BN in train mode); each op alone is compared with float64 on every backend
// in tests/ops.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "kernels/conv2d.h"
#include "models/models.h"
#include "../support/backends.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// A fixed seed unless MINIDL_TEST_SEED asks for another: for some inputs a pre-activation lies
// within float32 rounding of 0, the float32 network puts it on the other side of a ReLU than the
// float64 one, and in networks this small that one unit moves every gradient below it by ~10%
// (seed 5337208651141862029: logits equal to 2e-7, gradients 8-13% apart, on the handwritten
// path). That is float32 versus float64, not a kernel error; the per-op tests in tests/kernels
// draw fresh random inputs every run.
uint64_t model_seed() { return std::getenv("MINIDL_TEST_SEED") ? test_seed() : 20261201; }

// The float32 network runs under the settings that select `c.backend` for its convolutions.
void check_model(ResNetConfig cfg, const Shape& xs, const BackendCase& c) {
  const uint64_t seed = model_seed();
  INFO("seed " << seed << ", convolutions on " << c.name());
  Generator g(seed);
  cfg.seed = seed;
  cfg.dtype = DType::F64;
  auto m64 = make_resnet(cfg);
  cfg.dtype = DType::F32;
  auto m32 = make_resnet(cfg);
  // The same parameters in both (rounded to float32 first so that both start from equal values).
  auto p64 = m64->named_parameters(), p32 = m32->named_parameters();
  REQUIRE(p64.size() == p32.size());
  for (size_t i = 0; i < p64.size(); ++i) {
    p32[i].param->value.copy_(cast(p64[i].param->value, DType::F32));
    p64[i].param->value.copy_(cast(p32[i].param->value, DType::F64));
  }
  const Tensor x = uniform_tensor(xs, g);
  m64->zero_grad();
  const Tensor y64 = m64->forward(cast(cast(x, DType::F32), DType::F64), Mode::Train);
  const Tensor dy = uniform_tensor(y64.shape(), g);
  m64->backward(dy);

  ScopedDeviceSettings settings(settings_selecting(c.backend));
  m32->zero_grad();
  const Tensor y32 = m32->forward(cast(x, DType::F32), Mode::Train);
  m32->backward(cast(dy, DType::F32));

  // float32 rounding through ~10 layers with train-mode batchnorm (which divides by a batch
  // standard deviation and so amplifies relative errors a little): measured relative L2 errors are
  // around 1e-6 (logits) to 1e-5 (gradients); 1e-4 and 1e-3 leave margin while a wrong kernel
  // (errors of order 1) fails.
  const Comparison cl = compare(cast(y32, DType::F64), y64, 1e-4, 1e-4);
  INFO("logits: " << cl.report);
  CHECK(cl.rel_l2_error < 1e-4);
  for (size_t i = 0; i < p64.size(); ++i) {
    const Comparison c = compare(cast(p32[i].param->grad, DType::F64), p64[i].param->grad, 0, 0);
    INFO(p64[i].name << " gradient: relative L2 error " << c.rel_l2_error);
    CHECK(c.rel_l2_error < 1e-3);
  }
}

}  // namespace

TEST_CASE("models: float32 ResNets on every CPU path match float64", "[models][cpu_paths]") {
  // One case per CPU kernel setting: conv2d has both CPU backends (backend_cases WARNs when
  // cpu-fast is not built in).
  for (const BackendCase& c : backend_cases(conv2d_op())) {
    SECTION(str("BasicBlock, CIFAR stem, ", c.name())) {
      check_model({BlockType::Basic, {1, 1, 1}, {8, 16, 24}, 10, false, false, 0, DType::F32},
                  Shape{4, 3, 12, 12}, c);
    }
    SECTION(str("Bottleneck, ImageNet stem, ", c.name())) {
      check_model({BlockType::Bottleneck, {1, 1}, {4, 8}, 7, true, false, 0, DType::F32},
                  Shape{3, 3, 23, 23}, c);
    }
  }
}

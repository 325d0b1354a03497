// conv2d on every backend of the op (tests/support/backends.h: cpu-reference and cpu-fast in the
// CPU suite, cuda-handwritten, cuda-cublas and cuda-vendor in the CUDA suite) against the float64
// cpu-reference on the same float32 inputs: forward with and without bias, backward data
// (overwritten), backward weight and bias (accumulated onto non-zero gradients), on the layer
// shapes of the models and on awkward ones, with the batch split into chunks, and through the
// Conv2d layer. Every kernel case runs in both activation layouts (NCHW and NHWC, conv_cases.h),
// NHWC outputs poisoned in NHWC. The float64 cpu-reference itself is checked against the direct
// sums and finite differences in tests/kernels/conv2d_test.cpp and tests/layers/conv2d_test.cpp.
#include "kernels/conv2d.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "conv_cases.h"
#include "layers/conv2d.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// Every output is a float32 sum of at most 4608 products (C*R*S for forward, K*R*S for backward
// data, N*P*Q for backward weight and bias): float32 rounding grows like sqrt(terms) 2^-24 relative
// (~4e-6 at 4608 terms), so the relative L2 error must stay below 1e-5. Elementwise, atol is
// 1e-4 of the output's RMS (outputs that cancel to near zero keep the absolute error of the sum,
// ~4e-6 RMS) and rtol 1e-4. These are float32 bounds: every case computes in float32 (the
// float64 cpu-reference is the reference).
void expect_close(const char* what, const Tensor& out, const Tensor& ref) {
  test::expect_close(what, out, ref, 1e-4 * rms(ref), 1e-4, 1e-5);
}

// The test body: every function of the op on backend c.backend, with activations in `layout`,
// against the float64 reference (NCHW).
void check_case(const ConvCase& k, const BackendCase& c, Layout layout, Generator& g) {
  INFO(k.name << " on " << c.name() << " " << layout_name(layout) << ": x (" << k.N << ", " << k.C
              << ", " << k.H << ", " << k.W << "), w (" << k.K << ", " << k.C << ", " << k.R << ", "
              << k.R << "), stride " << k.stride << ", pad " << k.pad);
  const ConvProblem p = draw_conv_problem(k, g);
  const Conv2dParams& prm = p.prm;
  const Shape &xs = p.xs, &ys = p.ys;
  const Tensor &x = p.x, &w = p.w, &b = p.b, &dy = p.dy, &dw0 = p.dw0, &db0 = p.db0;

  // float64 reference from the same float32 values (and the forward without bias).
  const ConvReference r = conv_reference(p);
  Tensor y_nb_ref = Tensor::empty(ys, DType::F64);
  conv2d_forward(Backend::CpuReference, y_nb_ref, cast(x, DType::F64), cast(w, DType::F64), nullptr,
                 prm);

  const Tensor xd = to_case(c, x, layout), wd = to_case(c, w), bd = to_case(c, b);
  const Tensor dyd = to_case(c, dy, layout);
  Tensor y = poisoned(c, ys, c.dtype, layout), y_nb = poisoned(c, ys, c.dtype, layout);
  Tensor dx = poisoned(c, xs, c.dtype, layout);
  Tensor dw = to_case(c, dw0), db = to_case(c, db0);
  // Twice: the second call runs on what the first cached (oneDNN primitive, cuDNN plan).
  for (int rep = 0; rep < 2; ++rep) conv2d_forward(c.backend, y, xd, wd, &bd, prm);
  conv2d_forward(c.backend, y_nb, xd, wd, nullptr, prm);
  conv2d_backward_data(c.backend, dx, dyd, wd, prm);
  conv2d_backward_weight(c.backend, dw, dyd, xd, prm);
  conv2d_backward_bias(db, dyd);
  expect_close("forward with bias", y, r.y);
  expect_close("forward without bias", y_nb, y_nb_ref);
  expect_close("backward data", dx, r.dx);
  expect_close("backward weight (accumulated)", dw, r.dw);
  expect_close("backward bias (accumulated)", db, r.db);
  CHECK(y.layout() == layout);
  CHECK(dx.layout() == layout);
}

const std::vector<ConvCase>& model_cases() {
  static const std::vector<ConvCase> cases = {
      // ResNet-18/50 on CIFAR (small batch, layer shapes as in the models)
      {"resnet 3x3 64->64", 2, 64, 32, 32, 64, 3, 1, 1},
      {"resnet 3x3 stride 2 128->256", 2, 128, 16, 16, 256, 3, 2, 1},
      {"resnet 3x3 512->512 (C*R*S = 4608)", 2, 512, 4, 4, 512, 3, 1, 1},
      {"resnet-50 1x1 256->64", 2, 256, 8, 8, 64, 1, 1, 0},
      {"resnet-50 1x1 64->256", 3, 64, 8, 8, 256, 1, 1, 0},
      {"resnet-50 1x1 stride 2 downsample 256->512", 2, 256, 8, 8, 512, 1, 2, 0},
      {"resnet stem 7x7 stride 2 pad 3", 2, 3, 32, 32, 64, 7, 2, 3},
      {"resnet CIFAR stem 3x3 3->64", 2, 3, 32, 32, 64, 3, 1, 1},
      // AlexNet for CIFAR
      {"alexnet conv1 3->64 k3 s2", 2, 3, 32, 32, 64, 3, 2, 1},
      {"alexnet conv2 64->192 k3", 2, 64, 8, 8, 192, 3, 1, 1},
      {"alexnet conv3 192->384 k3", 3, 192, 4, 4, 384, 3, 1, 1},
      {"alexnet conv 5x5", 2, 3, 32, 32, 64, 5, 1, 2},
  };
  return cases;
}

const std::vector<ConvCase>& awkward_cases() {
  static const std::vector<ConvCase> cases = {
      {"batch 1, odd sizes", 1, 3, 13, 11, 5, 3, 1, 1},
      {"7x7 stride 2 pad 3, odd input", 3, 2, 9, 9, 7, 7, 2, 3},
      {"K not a multiple of the tile", 1, 5, 7, 5, 130, 3, 1, 0},
      {"1x1 stride 2 on odd input", 3, 3, 5, 7, 4, 1, 2, 0},
      {"pad larger than needed", 1, 2, 5, 7, 3, 3, 1, 3},
      {"kernel as large as the padded input", 2, 3, 5, 5, 2, 7, 1, 1},
      {"stride 3 > kernel 2: some pixels get no gradient", 3, 4, 10, 8, 6, 2, 3, 1},
      {"odd channels, stride 2 not dividing the input", 3, 5, 9, 7, 7, 3, 2, 1},
      // cpu-reference runs a 1x1 stride-1 convolution as one product per image, without im2col
      {"1x1 stride 1, odd channels", 2, 17, 8, 8, 19, 1, 1, 0},
      {"1x1 stride 2: a ResNet downsampling shortcut, odd input", 3, 16, 9, 9, 32, 1, 2, 0},
      {"5x5 stride 2 pad 2", 2, 4, 11, 13, 6, 5, 2, 2},
      {"7x7 stride 3 pad 3", 1, 3, 10, 10, 5, 7, 3, 3},
      {"padding wider than the kernel's half: output larger than input", 2, 32, 4, 4, 24, 3, 1, 2},
  };
  return cases;
}

}  // namespace

TEST_CASE("conv2d: every backend matches the float64 reference on model layer shapes",
          "[ops][conv2d]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (const BackendCase& c : backend_cases(conv2d_op())) {
    INFO(c.name());
    for (Layout layout : kConvLayouts)
      for (const ConvCase& k : model_cases()) check_case(k, c, layout, g);
  }
}

TEST_CASE("conv2d: every backend matches the float64 reference on awkward shapes",
          "[ops][conv2d][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (const BackendCase& c : backend_cases(conv2d_op())) {
    INFO(c.name());
    for (Layout layout : kConvLayouts)
      for (const ConvCase& k : awkward_cases()) check_case(k, c, layout, g);
  }
}

TEST_CASE("conv2d: the im2col backends with the batch split into chunks", "[ops][conv2d]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // 5 images; a budget of one or two images' column buffers gives 5 chunks, or 3 with a partial
  // last one. The budget also applies to the float64 reference, which tests/kernels/conv2d_test.cpp
  // checks in chunks against the direct sums.
  const ConvCase k{"chunked", 5, 3, 9, 7, 4, 3, 2, 1};
  const int64_t col_image_bytes = sizeof(float) * 3 * 9 * 5 * 4;  // C*R*S x P*Q of float32
  for (const BackendCase& c : backend_cases(conv2d_op())) {
    // oneDNN and cuDNN take the whole batch; chunking is the im2col algorithm's.
    if (c.backend == Backend::CpuFast || c.backend == Backend::CudaVendor) continue;
    INFO(c.name());
    for (int images : {1, 2}) {
      INFO(images << " image(s) per chunk");
      DeviceSettings s = device_settings(c.device);
      s.conv_col_budget = images * col_image_bytes;
      ScopedDeviceSettings budget(s);
      for (Layout layout : kConvLayouts) check_case(k, c, layout, g);
    }
  }
}

TEST_CASE("Conv2d layer on every backend matches the float64 layer", "[ops][conv2d][layers]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  Conv2dConfig cfg;
  cfg.in_channels = 3;
  cfg.out_channels = 8;
  cfg.kernel = 3;
  cfg.stride = 2;
  cfg.pad = 1;
  for (const BackendCase& c : backend_cases(conv2d_op())) {
    INFO(c.name());
    cfg.dtype = c.dtype;
    Generator init(seed);
    Conv2d layer(cfg, init);
    cfg.dtype = DType::F64;
    Generator init64(seed);
    Conv2d ref(cfg, init64);
    const Tensor x = uniform_tensor(Shape{3, 3, 11, 9}, g, -1, 1, DType::F32);
    const Tensor dy = uniform_tensor(ref.output_shape(x.shape()), g, -1, 1, DType::F32);
    // Sums of at most 27 (forward), 72 (backward data) or 3*6*5 = 90 (weight) terms of size <= 1 in
    // float32: they differ from float64 by ~sqrt(90) 2^-24 |sum| ~ 1e-6 typically, so 1e-4 leaves
    // a wide margin while a wrong index gives errors of order 1.
    check_layer_against_float64(c, layer, ref, x, dy, 1e-4);
  }
}

TEST_CASE("conv2d: each backend refuses other dtypes and tensors on two devices",
          "[ops][conv2d][errors]") {
  for (const BackendCase& c : backend_cases(conv2d_op())) {
    INFO(c.name());
    const Shape xs{1, 2, 5, 5}, ws{3, 2, 3, 3}, ys{1, 3, 3, 3};
    const DType other = c.dtype == DType::F32 ? DType::F64 : DType::F32;
    const Tensor x = Tensor::zeros(xs, c.dtype, c.device);
    Tensor y = Tensor::zeros(ys, c.dtype, c.device);
    // A weight in the other float dtype: named, whichever the backend.
    const Tensor w_other = Tensor::zeros(ws, other, c.device);
    CHECK_THROWS_WITH(conv2d_forward(c.backend, y, x, w_other, nullptr, {1, 0}),
                      Catch::Contains("conv2d_forward") && Catch::Contains(dtype_name(other)));
    // float64 on a backend that computes in float32 only; on a GPU the selecting form refuses
    // it too (there is no float64 CUDA backend to select).
    const std::vector<DType> dtypes = conv2d_op().dtypes(c.backend);
    if (std::find(dtypes.begin(), dtypes.end(), DType::F64) == dtypes.end()) {
      const Tensor x64 = Tensor::zeros(xs, DType::F64, c.device);
      const Tensor w64 = Tensor::zeros(ws, DType::F64, c.device);
      Tensor y64 = Tensor::zeros(ys, DType::F64, c.device);
      CHECK_THROWS_WITH(conv2d_forward(c.backend, y64, x64, w64, nullptr, {1, 0}),
                        Catch::Contains("conv2d_forward") && Catch::Contains("float32"));
      if (c.device.is_cuda())
        CHECK_THROWS_WITH(conv2d_forward(y64, x64, w64, nullptr, {1, 0}),
                          Catch::Contains("conv2d_forward") && Catch::Contains("float32"));
    }
    // A weight left on the CPU while the input is on the GPU.
    if (c.device.is_cuda()) {
      const Tensor w_cpu = Tensor::zeros(ws, c.dtype);
      CHECK_THROWS_WITH(
          conv2d_forward(c.backend, y, x, w_cpu, nullptr, {1, 0}),
          Catch::Contains("conv2d_forward") && Catch::Contains("cpu") && Catch::Contains("cuda:0"));
    }
  }
}

TEST_CASE("conv2d: mixed activation layouts and a channels-last weight are errors naming both",
          "[ops][conv2d][errors][layout]") {
  for (const BackendCase& c : backend_cases(conv2d_op())) {
    INFO(c.name());
    const Shape xs{1, 2, 5, 5}, ws{3, 2, 3, 3}, ys{1, 3, 3, 3};
    const auto make = [&](const Shape& s, Layout l) {
      return Tensor::zeros(s, c.dtype, c.device, l);
    };
    const Tensor x = make(xs, Layout::NCHW), x_cl = make(xs, Layout::NHWC);
    const Tensor w = make(ws, Layout::NCHW), w_cl = make(ws, Layout::NHWC);
    const Tensor dy = make(ys, Layout::NCHW), dy_cl = make(ys, Layout::NHWC);
    Tensor y = make(ys, Layout::NCHW), y_cl = make(ys, Layout::NHWC);
    Tensor dx = make(xs, Layout::NCHW), dx_cl = make(xs, Layout::NHWC);
    Tensor dw = Tensor::zeros(ws, is_low_precision(c.dtype) ? DType::F32 : c.dtype, c.device);
    // A macro, not a function: Catch's combined matchers refer to their parts, which must live
    // until the check has run.
#define both(op, a, b)                                               \
  Catch::Contains(op) && Catch::Contains(a) && Catch::Contains(b) && \
      Catch::Contains("channels_last") && Catch::Contains("share one layout")
    // x NCHW with y NHWC, and the other way round.
    CHECK_THROWS_WITH(conv2d_forward(c.backend, y_cl, x, w, nullptr, {1, 0}),
                      both("conv2d_forward", "input", "output"));
    CHECK_THROWS_WITH(conv2d_forward(c.backend, y, x_cl, w, nullptr, {1, 0}),
                      both("conv2d_forward", "input", "output"));
    CHECK_THROWS_WITH(conv2d_backward_data(c.backend, dx, dy_cl, w, {1, 0}),
                      both("conv2d_backward_data", "output gradient", "input gradient"));
    CHECK_THROWS_WITH(conv2d_backward_weight(c.backend, dw, dy_cl, x, {1, 0}),
                      both("conv2d_backward_weight", "output gradient", "input"));
    // The weight stays (K, C, R, S) in NCHW in both modes.
    CHECK_THROWS_WITH(conv2d_forward(c.backend, y_cl, x_cl, w_cl, nullptr, {1, 0}),
                      Catch::Contains("conv2d_forward") && Catch::Contains("weight") &&
                          Catch::Contains("channels_last") && Catch::Contains("OIHW"));
    CHECK_THROWS_WITH(conv2d_backward_data(c.backend, dx_cl, dy_cl, w_cl, {1, 0}),
                      Catch::Contains("conv2d_backward_data") && Catch::Contains("weight"));
    Tensor dw_cl = Tensor::zeros(ws, dw.dtype(), c.device, Layout::NHWC);
    CHECK_THROWS_WITH(
        conv2d_backward_weight(c.backend, dw_cl, dy_cl, x_cl, {1, 0}),
        Catch::Contains("conv2d_backward_weight") && Catch::Contains("weight gradient"));
#undef both
    // The same call with every activation channels-last runs.
    CHECK_NOTHROW(conv2d_forward(c.backend, y_cl, x_cl, w, nullptr, {1, 0}));
  }
}

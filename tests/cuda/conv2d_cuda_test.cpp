// CUDA convolution on every kernel path against the CPU float64 convolution of the same float32
// inputs (the CPU ops are checked against direct sums and finite differences in tests/kernels and
// tests/layers).
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "../support/cuda_paths.h"
#include "../support/test_util.h"
#include "kernels/conv2d.h"
#include "layers/conv2d.h"

using namespace minidl;
using namespace minidl::test;

namespace {

const Device kGpu = Device::cuda(0);

struct ConvCase {
  const char* name;
  int64_t N, C, H, W, K;
  int R, stride, pad;
};

// Root mean square of a tensor's values (the scale of the elementwise tolerance below).
double rms(const Tensor& t) {
  double s = 0;
  const auto v = to_doubles(t);
  for (double x : v) s += x * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// Every output is a float32 sum of at most 4608 products (C*R*S for forward, K*R*S for backward
// data, N*P*Q for backward weight and bias): float32 rounding grows like sqrt(terms) 2^-24 relative
// (~4e-6 at 4608 terms), so the relative L2 error must stay below 1e-5. Elementwise, atol is
// 1e-4 of the output's RMS (outputs that cancel to near zero keep the absolute error of the sum,
// ~4e-6 RMS) and rtol 1e-4.
void expect_close(const char* what, const Tensor& out, const Tensor& ref) {
  const Comparison cmp = compare(out, ref, 1e-4 * rms(ref), 1e-4);
  INFO(what << ": " << cmp.report);
  CHECK(cmp.ok);
  CHECK(cmp.rel_l2_error < 1e-5);
}

void check_case(const ConvCase& c, KernelPath path, Generator& g) {
  INFO(c.name << " on the " << kernel_path_name(path) << " path: x (" << c.N << ", " << c.C << ", "
              << c.H << ", " << c.W << "), w (" << c.K << ", " << c.C << ", " << c.R << ", " << c.R
              << "), stride " << c.stride << ", pad " << c.pad);
  const Conv2dParams prm{c.stride, c.pad};
  const Shape xs{c.N, c.C, c.H, c.W}, ws{c.K, c.C, c.R, c.R};
  const ConvGeometry geo = ConvGeometry::make(xs, ws, prm, "test");
  const Shape ys{c.N, c.K, geo.P, geo.Q};
  const Tensor x = uniform_tensor(xs, g, -1, 1, DType::F32);
  const Tensor w = uniform_tensor(ws, g, -1, 1, DType::F32);
  const Tensor b = uniform_tensor(Shape{c.K}, g, -1, 1, DType::F32);
  const Tensor dy = uniform_tensor(ys, g, -1, 1, DType::F32);
  const Tensor dw0 = uniform_tensor(ws, g, -1, 1, DType::F32);  // accumulation starts from here
  const Tensor db0 = uniform_tensor(Shape{c.K}, g, -1, 1, DType::F32);

  // CPU float64 reference from the same float32 values.
  const Tensor x64 = cast(x, DType::F64), w64 = cast(w, DType::F64), b64 = cast(b, DType::F64);
  const Tensor dy64 = cast(dy, DType::F64);
  Tensor y_ref = Tensor::empty(ys, DType::F64), y_nb_ref = Tensor::empty(ys, DType::F64);
  Tensor dx_ref = Tensor::empty(xs, DType::F64);
  Tensor dw_ref = cast(dw0, DType::F64), db_ref = cast(db0, DType::F64);
  conv2d_forward(y_ref, x64, w64, &b64, prm);
  conv2d_forward(y_nb_ref, x64, w64, nullptr, prm);
  conv2d_backward_data(dx_ref, dy64, w64, prm);
  conv2d_backward_weight(dw_ref, dy64, x64, prm);
  conv2d_backward_bias(db_ref, dy64);

  const Tensor xd = x.to(kGpu), wd = w.to(kGpu), bd = b.to(kGpu), dyd = dy.to(kGpu);
  Tensor y = Tensor::empty(ys, DType::F32, kGpu), y_nb = Tensor::empty(ys, DType::F32, kGpu);
  Tensor dx = Tensor::empty(xs, DType::F32, kGpu);
  poison(y);
  poison(y_nb);
  poison(dx);
  Tensor dw = dw0.to(kGpu), db = db0.to(kGpu);
  conv2d_forward(y, xd, wd, &bd, prm, path);
  conv2d_forward(y_nb, xd, wd, nullptr, prm, path);
  conv2d_backward_data(dx, dyd, wd, prm, path);
  conv2d_backward_weight(dw, dyd, xd, prm, path);
  conv2d_backward_bias(db, dyd, path);
  expect_close("forward with bias", y, y_ref);
  expect_close("forward without bias", y_nb, y_nb_ref);
  expect_close("backward data", dx, dx_ref);
  expect_close("backward weight (accumulated)", dw, dw_ref);
  expect_close("backward bias (accumulated)", db, db_ref);
}

// Sets the column-buffer budget for one scope and restores the default, also when a check throws.
struct ColBudget {
  explicit ColBudget(size_t bytes) { detail::conv2d_set_col_budget(bytes); }
  ~ColBudget() { detail::conv2d_set_col_budget(0); }
};

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
  };
  return cases;
}

}  // namespace

TEST_CASE("CUDA conv2d matches the CPU on model layer shapes", "[cuda][conv2d]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (KernelPath path : cuda_paths())
    for (const ConvCase& c : model_cases()) check_case(c, path, g);
}

TEST_CASE("CUDA conv2d matches the CPU on awkward shapes", "[cuda][conv2d][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (KernelPath path : cuda_paths())
    for (const ConvCase& c : awkward_cases()) check_case(c, path, g);
}

TEST_CASE("CUDA conv2d with the batch split into chunks", "[cuda][conv2d]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // 5 images; a budget of one or two images' column buffers gives 5 chunks, or 3 with a partial
  // last one. The budget also applies to the CPU reference, which is checked separately.
  const ConvCase c{"chunked", 5, 3, 9, 7, 4, 3, 2, 1};
  const int64_t col_image_bytes = sizeof(float) * 3 * 9 * 5 * 4;  // C*R*S x P*Q of float32
  for (int images : {1, 2}) {
    INFO(images << " image(s) per chunk");
    ColBudget budget(images * col_image_bytes);
    for (KernelPath path : {KernelPath::Handwritten, KernelPath::Cublas}) check_case(c, path, g);
  }
}

TEST_CASE("CUDA Conv2d layer matches the CPU layer", "[cuda][conv2d]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  Conv2dConfig cfg;
  cfg.in_channels = 3;
  cfg.out_channels = 8;
  cfg.kernel = 3;
  cfg.stride = 2;
  cfg.pad = 1;
  for (KernelPath path : cuda_paths()) {
    INFO(kernel_path_name(path));
    Generator init(seed);
    Conv2d cpu(cfg, init);
    Generator init2(seed);
    Conv2d gpu(cfg, init2);  // same initial weights
    gpu.to(kGpu);
    gpu.set_kernel_path(path);
    const Tensor x = uniform_tensor(Shape{3, 3, 11, 9}, g, -1, 1, DType::F32);
    const Tensor dy = uniform_tensor(cpu.output_shape(x.shape()), g, -1, 1, DType::F32);
    cpu.zero_grad();
    gpu.zero_grad();
    const Tensor y_cpu = cpu.forward(x, Mode::Train);
    const Tensor y_gpu = gpu.forward(x.to(kGpu), Mode::Train);
    const Tensor dx_cpu = cpu.backward(dy);
    const Tensor dx_gpu = gpu.backward(dy.to(kGpu));
    // float32 on both sides, sums of at most 27 (forward), 72 (backward data) or 3*6*5 = 90
    // (weight) terms of size <= 1, added in different orders: they differ by ~sqrt(90) 2^-24 |sum|
    // ~ 1e-6 typically, so 1e-4 leaves a wide margin while a wrong index gives errors of order 1.
    for (auto [name, a, b] : {std::tuple{"y", y_gpu, y_cpu}, std::tuple{"dx", dx_gpu, dx_cpu},
                              std::tuple{"dw", gpu.weight().grad, cpu.weight().grad},
                              std::tuple{"db", gpu.bias()->grad, cpu.bias()->grad}}) {
      const Comparison cmp = compare(a, b, 1e-4, 1e-4);
      INFO(name << ": " << cmp.report);
      CHECK(cmp.ok);
    }
  }
}

TEST_CASE("CUDA conv2d errors: float64 and mixed devices", "[cuda][conv2d][errors]") {
  const Tensor x = Tensor::zeros(Shape{1, 2, 5, 5}, DType::F64, kGpu);
  const Tensor w = Tensor::zeros(Shape{3, 2, 3, 3}, DType::F64, kGpu);
  Tensor y = Tensor::zeros(Shape{1, 3, 3, 3}, DType::F64, kGpu);
  REQUIRE_THROWS_WITH(conv2d_forward(y, x, w, nullptr, {1, 0}),
                      Catch::Contains("conv2d_forward") && Catch::Contains("float32"));
  const Tensor x32 = Tensor::zeros(Shape{1, 2, 5, 5}, DType::F32, kGpu);
  const Tensor w_cpu = Tensor::zeros(Shape{3, 2, 3, 3}, DType::F32);
  Tensor y32 = Tensor::zeros(Shape{1, 3, 3, 3}, DType::F32, kGpu);
  REQUIRE_THROWS_WITH(
      conv2d_forward(y32, x32, w_cpu, nullptr, {1, 0}),
      Catch::Contains("conv2d_forward") && Catch::Contains("cpu") && Catch::Contains("cuda:0"));
}

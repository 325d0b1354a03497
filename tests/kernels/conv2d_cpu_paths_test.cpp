// Every float32 CPU path of the convolution (handwritten: im2col or the 1x1 GEMM; oneDNN) against
// the float64 reference (the handwritten algorithm in double, itself checked against the direct
// sums in conv2d_test.cpp), on awkward shapes: odd channel counts, strides that do not divide the
// input, padding wider than the kernel's half, 1x1, 5x5 and 7x7 kernels, one image and an odd batch.
#include <catch2/catch.hpp>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/cpu_kernels.h"
#include "../support/cpu_paths.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct Case {
  int64_t N, C, H, W, K, R;
  int stride, pad;
};

const std::vector<Case> kCases = {
    {1, 3, 32, 32, 16, 3, 1, 1},  // a ResNet stem: 3 input channels
    {3, 5, 9, 7, 7, 3, 2, 1},     // odd everything, stride 2 not dividing the input
    {2, 17, 8, 8, 19, 1, 1, 0},   // 1x1, stride 1: handwritten takes the GEMM without im2col
    {3, 16, 9, 9, 32, 1, 2, 0},   // 1x1, stride 2: a ResNet downsampling shortcut, odd input
    {2, 4, 11, 13, 6, 5, 2, 2},   // 5x5
    {1, 3, 10, 10, 5, 7, 3, 3},   // 7x7, stride 3, padding 3
    {2, 32, 4, 4, 24, 3, 1, 2},   // padding wider than the kernel's half: output larger than input
};

void check_close(const Tensor& out32, const Tensor& ref64, double atol, double rtol,
                 const char* what) {
  const Comparison cmp = compare(cast(out32, DType::F64), ref64, atol, rtol);
  INFO(what << ": " << cmp.report);
  CHECK(cmp.ok);
}

void check_path(CpuKernels path) {
  const uint64_t seed = test_seed();
  INFO("seed " << seed << ", cpu kernels " << cpu_kernels_name(path));
  Generator gen(seed);
  for (const Case& c : kCases) {
    INFO("x (" << c.N << ", " << c.C << ", " << c.H << ", " << c.W << "), w (" << c.K << ", "
               << c.C << ", " << c.R << ", " << c.R << "), stride " << c.stride << ", pad "
               << c.pad);
    const Conv2dParams prm{c.stride, c.pad};
    const Shape xs{c.N, c.C, c.H, c.W}, ws{c.K, c.C, c.R, c.R};
    const ConvGeometry g = ConvGeometry::make(xs, ws, prm, "test");
    const Shape ys{g.N, g.K, g.P, g.Q};
    const Tensor x = uniform_tensor(xs, gen), w = uniform_tensor(ws, gen),
                 b = uniform_tensor(Shape{c.K}, gen), dy = uniform_tensor(ys, gen),
                 dw0 = uniform_tensor(ws, gen);

    // float64 reference (always the handwritten algorithm).
    Tensor y64 = Tensor::empty(ys, DType::F64), dx64 = Tensor::empty(xs, DType::F64);
    Tensor dw64 = dw0.clone();
    conv2d_forward(y64, x, w, &b, prm);
    conv2d_backward_data(dx64, dy, w, prm);
    conv2d_backward_weight(dw64, dy, x, prm);

    // float32 on the path under test; dx poisoned (must be overwritten), dw pre-filled (must
    // accumulate). The second forward call has no bias and reuses the cached primitive's shape.
    CpuKernelsGuard guard(path);
    const Tensor x32 = cast(x, DType::F32), w32 = cast(w, DType::F32), b32 = cast(b, DType::F32),
                 dy32 = cast(dy, DType::F32);
    Tensor y32 = Tensor::empty(ys), y32_nobias = Tensor::empty(ys), dx32 = Tensor::empty(xs);
    Tensor dw32 = cast(dw0, DType::F32);
    poison(y32);
    poison(dx32);
    for (int rep = 0; rep < 2; ++rep) conv2d_forward(y32, x32, w32, &b32, prm);
    conv2d_forward(y32_nobias, x32, w32, nullptr, prm);
    conv2d_backward_data(dx32, dy32, w32, prm);
    conv2d_backward_weight(dw32, dy32, x32, prm);

    // float32 sums of C*R*S (forward), K*R*S (backward data) or N*P*Q (weight) products of
    // values in [-1, 1): rounding grows like sqrt(terms) * 6e-8 * |terms|; up to ~1,000 terms here
    // gives ~2e-6 relative to the largest partial sums, so 1e-4 absolute and relative is a wide
    // margin that still catches any wrong index (errors of order 1).
    const double tol = 1e-4;
    check_close(y32, y64, tol, tol, "forward");
    Tensor y64_nobias = Tensor::empty(ys, DType::F64);
    conv2d_forward(y64_nobias, x, w, nullptr, prm);
    check_close(y32_nobias, y64_nobias, tol, tol, "forward without bias");
    check_close(dx32, dx64, tol, tol, "backward data");
    check_close(dw32, dw64, tol * 10, tol, "backward weight (accumulated onto dw)");
  }
}

}  // namespace

TEST_CASE("conv2d float32 handwritten CPU path matches the float64 reference", "[conv2d][cpu_paths]") {
  check_path(CpuKernels::Handwritten);
}

TEST_CASE("conv2d float32 oneDNN path matches the float64 reference", "[conv2d][cpu_paths][onednn]") {
  if (!onednn_available()) {
    WARN("SKIPPED: minidl was built without oneDNN (install libdnnl-dev and reconfigure)");
    return;
  }
  check_path(CpuKernels::Onednn);
}

// The names and their parsing are tested with the other choices (tests/engine/choices_test.cpp).
TEST_CASE("cpu kernel setting: the default is the fastest built in", "[cpu_paths]") {
  CHECK(DeviceSettings{}.cpu_kernels ==
        (onednn_available() ? CpuKernels::Onednn : CpuKernels::Handwritten));
  CHECK(cpu_kernels_name(DeviceSettings{}.cpu_kernels) == cpu_kernel_paths().names().front());
  if (!onednn_available()) {
    DeviceSettings s;
    s.cpu_kernels = CpuKernels::Onednn;
    CHECK_THROWS_WITH(set_run_settings(s), Catch::Contains("libdnnl-dev"));
  }
}

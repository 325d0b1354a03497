// Pooling on every backend of each pooling op (maxpool2d and avgpool2d: cpu-reference in the CPU
// suite, cuda-handwritten and cuda-vendor in the CUDA suite; global_avgpool: cpu-reference,
// cuda-handwritten) against the float64 cpu-reference on the same float32 inputs: AlexNet's
// overlapping 3x3 stride-2 max pool on an odd plane, disjoint 2x2 pools, padded 3x3 stride-1 and
// stride-2 windows, floor-mode leftovers (7x9 planes), global average pooling on ResNet's last
// stage and on odd and 1x1 planes. The float64 cpu-reference is checked by hand in
// tests/kernels/pooling_test.cpp.
//
// Layouts: every case runs in NCHW and NHWC (channels-last: the input converted, the outputs
// poisoned in NHWC) against the same NCHW float64 reference; to_doubles compares element (n, c, h,
// w) with (n, c, h, w) whatever the layout. The arithmetic per output is the same in both layouts
// (same terms, same order: pooling.cpp, pooling.cu), so the bounds below hold unchanged, and
// argmax has the same meaning (the pixel h*W + w in its plane) in both. The largest cases,
// (4, 64, 31, 31) and (8, 64, 32, 32), run each CUDA thread's grid-stride loop many times under
// the tests' 4-block cap, in both layouts.
//
// Max-pool inputs are a random permutation of distinct values (k / 1024, exact in float32), so no
// window has a tie: cuDNN may break ties differently from our first-maximum rule, and a tie would
// make the gradient's destination ambiguous. Every case computes in float32: the tolerances below
// are float32 bounds.
#include "kernels/pooling.h"

#include <catch2/catch.hpp>
#include <limits>
#include <numeric>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "kernels/convert.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct Case {
  Shape x;
  Pool2dParams p;
};
const Case kCases[] = {
    {Shape{4, 64, 31, 31}, {3, 2, 0}},  // AlexNet-style overlapping windows
    {Shape{8, 64, 32, 32}, {2, 2, 0}},  // disjoint windows
    {Shape{3, 5, 7, 9}, {2, 2, 0}},     // floor mode drops the last row and column
    {Shape{2, 16, 8, 8}, {3, 1, 1}},    // padded, heavily overlapping
    {Shape{3, 5, 7, 9}, {3, 2, 1}},     // padded, overlapping, odd sizes
};

Tensor distinct_f32(const Shape& s, Generator& g) {
  const int64_t n = s.numel();
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[g.below(i + 1)]);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(perm[i] - n / 2) / 1024.f;
  return Tensor::from_vector(v, s);
}

}  // namespace

TEST_CASE("maxpool2d: every backend matches the float64 reference", "[ops][pooling][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Backend ref = Backend::CpuReference;
  for (const Case& k : kCases) {
    for (const BackendCase& c : backend_cases(maxpool2d_op())) {
      const Shape ys = pool2d_output_shape(k.x, k.p, "test");
      const Tensor x = distinct_f32(k.x, g);
      const Tensor dy = uniform_tensor(ys, g, -1, 1, DType::F32);

      const Tensor x64 = cast(x, DType::F64);
      Tensor ry = Tensor::empty(ys, DType::F64), rarg = Tensor::empty(ys, DType::I32);
      maxpool2d_forward(ref, ry, rarg, x64, k.p);
      Tensor rdx = Tensor::empty(k.x, DType::F64);
      maxpool2d_backward(ref, rdx, cast(dy, DType::F64), x64, ry, rarg, k.p);

      for (Layout L : {Layout::NCHW, Layout::NHWC}) {
        INFO("x " << k.x << " " << layout_name(L) << ", k=" << k.p.kernel << " s=" << k.p.stride
                  << " p=" << k.p.pad << ", " << c.name());
        const Tensor gx = to_case(c, to_layout(x, L));
        Tensor gy = poisoned(c, ys, c.dtype, L), garg = poisoned(c, ys, DType::I32, L);
        maxpool2d_forward(c.backend, gy, garg, gx, k.p);
        // The maximum of the same float32 values is that value exactly.
        expect_close("y", gy, ry, 0, 0);
        if (c.backend == Backend::CudaVendor) {
          // cuDNN does not produce argmax and its backward must not need it: keep it poisoned.
          poison(garg);
        } else {
          expect_close("argmax", garg, rarg, 0, 0);
        }
        Tensor gdx = poisoned(c, k.x, c.dtype, L);
        maxpool2d_backward(c.backend, gdx, to_case(c, to_layout(dy, L)), gx, gy, garg, k.p);
        // Each dx is a sum of at most ceil(k/s)^2 = 4 (9 for stride 1) float32 values of |dy| < 1:
        // a few float32 roundings, ~1e-7.
        expect_close("dx", gdx, rdx, 1e-6, 1e-6);
      }
    }
  }
}

TEST_CASE("maxpool2d: ties and NaN on every backend as the reference", "[ops][pooling][sanitize]") {
  // Values from {0, -0, 1}: almost every window holds a tie, at every position of the window. The
  // reference routes dy to the first maximum (row-major in the window), and a NaN wins and stays
  // (the first NaN of the window). Our backends must choose the same element (argmax and dx,
  // exactly: dx sums the same dy values in the same order of windows); cuDNN chooses its own
  // winner on ties, so only its y (which does not depend on the choice but for the sign of a zero)
  // is compared.
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Backend ref = Backend::CpuReference;
  for (const Case& k : kCases) {
    for (double nan_fraction : {0.0, 0.05}) {
      const Shape ys = pool2d_output_shape(k.x, k.p, "test");
      std::vector<float> v(static_cast<size_t>(k.x.numel()));
      const float values[3] = {0.f, -0.f, 1.f};
      for (float& e : v)
        e = g.uniform() < nan_fraction ? std::numeric_limits<float>::quiet_NaN()
                                       : values[g.below(3)];
      const Tensor x = Tensor::from_vector(v, k.x);
      // dy with few bits (multiples of 1/8 in [-2, 2)): the sums in dx are exact in float32.
      std::vector<float> dyv(static_cast<size_t>(ys.numel()));
      for (float& e : dyv) e = static_cast<float>(static_cast<int>(g.below(32)) - 16) / 8.f;
      const Tensor dy = Tensor::from_vector(dyv, ys);

      const Tensor x64 = cast(x, DType::F64);
      Tensor ry = Tensor::empty(ys, DType::F64), rarg = Tensor::empty(ys, DType::I32);
      maxpool2d_forward(ref, ry, rarg, x64, k.p);
      Tensor rdx = Tensor::empty(k.x, DType::F64);
      maxpool2d_backward(ref, rdx, cast(dy, DType::F64), x64, ry, rarg, k.p);
      for (const BackendCase& c : backend_cases(maxpool2d_op()))
        for (Layout L : {Layout::NCHW, Layout::NHWC}) {
          INFO("x " << k.x << " " << layout_name(L) << ", k=" << k.p.kernel << " s=" << k.p.stride
                    << " p=" << k.p.pad << ", NaN fraction " << nan_fraction << ", " << c.name());
          const Tensor gx = to_case(c, to_layout(x, L));
          Tensor gy = poisoned(c, ys, c.dtype, L), garg = poisoned(c, ys, DType::I32, L);
          maxpool2d_forward(c.backend, gy, garg, gx, k.p);
          // y is the first maximum's value: a +0/-0 tie keeps the first one's sign.
          expect_same("y", gy, ry, c.backend != Backend::CudaVendor);
          if (c.backend == Backend::CudaVendor) continue;
          expect_same("argmax", garg, rarg);
          Tensor gdx = poisoned(c, k.x, c.dtype, L);
          maxpool2d_backward(c.backend, gdx, to_case(c, to_layout(dy, L)), gx, gy, garg, k.p);
          expect_same("dx", gdx, rdx, false);
        }
    }
  }
}

TEST_CASE("avgpool2d: every backend matches the float64 reference", "[ops][pooling]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Backend ref = Backend::CpuReference;
  for (const Case& k : kCases) {
    for (const BackendCase& c : backend_cases(avgpool2d_op())) {
      const Shape ys = pool2d_output_shape(k.x, k.p, "test");
      const Tensor x = uniform_tensor(k.x, g, -1, 1, DType::F32);
      const Tensor dy = uniform_tensor(ys, g, -1, 1, DType::F32);

      Tensor ry = Tensor::empty(ys, DType::F64), rdx = Tensor::empty(k.x, DType::F64);
      avgpool2d_forward(ref, ry, cast(x, DType::F64), k.p);
      avgpool2d_backward(ref, rdx, cast(dy, DType::F64), k.p);

      for (Layout L : {Layout::NCHW, Layout::NHWC}) {
        INFO("x " << k.x << " " << layout_name(L) << ", k=" << k.p.kernel << " s=" << k.p.stride
                  << " p=" << k.p.pad << ", " << c.name());
        Tensor gy = poisoned(c, ys, c.dtype, L), gdx = poisoned(c, k.x, c.dtype, L);
        avgpool2d_forward(c.backend, gy, to_case(c, to_layout(x, L)), k.p);
        avgpool2d_backward(c.backend, gdx, to_case(c, to_layout(dy, L)), k.p);
        // Sums of at most 9 float32 values of size < 1 divided by k^2: a few roundings, ~1e-7.
        expect_close("y", gy, ry, 1e-6, 1e-6);
        expect_close("dx", gdx, rdx, 1e-6, 1e-6);
      }
    }
  }
}

TEST_CASE("global_avgpool: every backend matches the float64 reference", "[ops][pooling]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Backend ref = Backend::CpuReference;
  for (Shape s :
       {Shape{4, 512, 4, 4}, Shape{2, 64, 32, 32}, Shape{3, 5, 7, 9}, Shape{2, 3, 1, 1}}) {
    const Shape ys{s[0], s[1], 1, 1};
    const Tensor x = uniform_tensor(s, g, -1, 1, DType::F32);
    const Tensor dy = uniform_tensor(ys, g, -1, 1, DType::F32);
    Tensor ry = Tensor::empty(ys, DType::F64), rdx = Tensor::empty(s, DType::F64);
    global_avgpool_forward(ref, ry, cast(x, DType::F64));
    global_avgpool_backward(ref, rdx, cast(dy, DType::F64));
    for (const BackendCase& c : backend_cases(global_avgpool_op()))
      for (Layout L : {Layout::NCHW, Layout::NHWC}) {
        INFO("x " << s << " " << layout_name(L) << ", " << c.name());
        // A channels-last model labels y and dy (N, C, 1, 1) NHWC (their memory is the same).
        Tensor gy = poisoned(c, ys, c.dtype, L), gdx = poisoned(c, s, c.dtype, L);
        global_avgpool_forward(c.backend, gy, to_case(c, to_layout(x, L)));
        global_avgpool_backward(c.backend, gdx, to_case(c, dy.relabel(L)));
        // A float32 mean of up to 1024 values in [-1, 1): rounding ~1e-7 (the sum's error divided
        // by HW; NHWC sums a plane in one thread in order, NCHW over a warp's lanes: the same
        // bound); dx is one float32 product, 1 ulp.
        expect_close("y", gy, ry, 1e-6, 1e-5);
        expect_close("dx", gdx, rdx, 1e-7, 1e-6);
      }
  }
}

TEST_CASE("pooling refuses operands of mixed layouts", "[ops][pooling]") {
  // Every pooling op pairs elements by their place in the layout of x (or dx): an operand in the
  // other layout would be read in the wrong order, so it is an error naming the op and the operand.
  const Shape s{2, 3, 4, 4}, ys{2, 3, 2, 2};
  const Pool2dParams p{2, 2, 0};
  const Tensor x = Tensor::zeros(s, DType::F32, Device::cpu(), Layout::NHWC);
  Tensor y_nchw = Tensor::empty(ys), arg_nchw = Tensor::empty(ys, DType::I32);
  Tensor y = Tensor::empty(ys, DType::F32, Device::cpu(), Layout::NHWC);
  Tensor arg = Tensor::empty(ys, DType::I32, Device::cpu(), Layout::NHWC);
  CHECK_THROWS_WITH(maxpool2d_forward(y_nchw, arg, x, p),
                    Catch::Contains("maxpool2d_forward") && Catch::Contains("output") &&
                        Catch::Contains("expected layout NHWC"));
  CHECK_THROWS_WITH(maxpool2d_forward(y, arg_nchw, x, p),
                    Catch::Contains("argmax") && Catch::Contains("expected layout NHWC"));
  maxpool2d_forward(y, arg, x, p);
  Tensor dx_nchw = Tensor::empty(s);
  CHECK_THROWS_WITH(maxpool2d_backward(dx_nchw, y, x, y, arg, p),
                    Catch::Contains("maxpool2d_backward") && Catch::Contains("layouts differ"));
  CHECK_THROWS_WITH(avgpool2d_forward(y_nchw, x, p),
                    Catch::Contains("avgpool2d_forward") && Catch::Contains("expected layout"));
  Tensor dx = Tensor::empty(s, DType::F32, Device::cpu(), Layout::NHWC);
  CHECK_THROWS_WITH(avgpool2d_backward(dx, y_nchw, p),
                    Catch::Contains("avgpool2d_backward") && Catch::Contains("expected layout"));
}

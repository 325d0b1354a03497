#include "kernels/conv2d.h"

#include <catch2/catch.hpp>
#include <tuple>
#include <vector>

#include "../support/test_util.h"
#include "core/device_settings.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// Settings with a column-buffer budget of `bytes` (0: the default), for a ScopedDeviceSettings
// that restores the previous ones when the test ends, even when a check throws.
DeviceSettings with_col_budget(size_t bytes) {
  DeviceSettings s = device_settings(Device::cpu());
  s.conv_col_budget = bytes;
  return s;
}

// The three convolution sums straight from their definitions (conv2d.h), in double: the reference
// the im2col algorithm is compared with. No im2col, no GEMM.
struct DirectConv {
  ConvGeometry g;
  int64_t h_of(int64_t p, int64_t r) const { return p * g.stride - g.pad + r; }
  int64_t w_of(int64_t q, int64_t s) const { return q * g.stride - g.pad + s; }
  bool inside(int64_t h, int64_t w) const { return h >= 0 && h < g.H && w >= 0 && w < g.W; }
  int64_t xi(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return ((n * g.C + c) * g.H + h) * g.W + w;
  }
  int64_t wi(int64_t k, int64_t c, int64_t r, int64_t s) const {
    return ((k * g.C + c) * g.R + r) * g.S + s;
  }
  int64_t yi(int64_t n, int64_t k, int64_t p, int64_t q) const {
    return ((n * g.K + k) * g.P + p) * g.Q + q;
  }

  // Calls f(n, k, p, q, c, r, s, h, w) for every term of the sum that reads a real pixel.
  template <typename F>
  void each_term(F f) const {
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t k = 0; k < g.K; ++k)
        for (int64_t p = 0; p < g.P; ++p)
          for (int64_t q = 0; q < g.Q; ++q)
            for (int64_t c = 0; c < g.C; ++c)
              for (int64_t r = 0; r < g.R; ++r)
                for (int64_t s = 0; s < g.S; ++s)
                  if (inside(h_of(p, r), w_of(q, s)))
                    f(n, k, p, q, c, r, s, h_of(p, r), w_of(q, s));
  }
  std::vector<double> forward(const std::vector<double>& x, const std::vector<double>& w,
                              const std::vector<double>& b) const {
    std::vector<double> y(g.N * g.K * g.P * g.Q, 0.0);
    for (int64_t i = 0; i < static_cast<int64_t>(y.size()); ++i) y[i] = b[(i / (g.P * g.Q)) % g.K];
    each_term([&](auto n, auto k, auto p, auto q, auto c, auto r, auto s, auto h, auto ww) {
      y[yi(n, k, p, q)] += w[wi(k, c, r, s)] * x[xi(n, c, h, ww)];
    });
    return y;
  }
  std::vector<double> backward_data(const std::vector<double>& dy,
                                    const std::vector<double>& w) const {
    std::vector<double> dx(g.N * g.C * g.H * g.W, 0.0);
    each_term([&](auto n, auto k, auto p, auto q, auto c, auto r, auto s, auto h, auto ww) {
      dx[xi(n, c, h, ww)] += w[wi(k, c, r, s)] * dy[yi(n, k, p, q)];
    });
    return dx;
  }
  std::vector<double> backward_weight(const std::vector<double>& dy,
                                      const std::vector<double>& x) const {
    std::vector<double> dw(g.K * g.C * g.R * g.S, 0.0);
    each_term([&](auto n, auto k, auto p, auto q, auto c, auto r, auto s, auto h, auto ww) {
      dw[wi(k, c, r, s)] += x[xi(n, c, h, ww)] * dy[yi(n, k, p, q)];
    });
    return dw;
  }
};

Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s); }

}  // namespace

TEST_CASE("conv2d forward by hand: 3x3 input, 2x2 kernel, stride 2, pad 1", "[conv2d]") {
  // x = [[1 2 3] [4 5 6] [7 8 9]], w = [[1 2] [3 4]]. Padded to 5x5, the windows start at rows and
  // columns -1 and 1:
  //   y[0,0] = 4*1                    = 4     (only x[0,0] is inside, under w[1,1])
  //   y[0,1] = 3*2 + 4*3              = 18
  //   y[1,0] = 2*4 + 4*7              = 36
  //   y[1,1] = 1*5 + 2*6 + 3*8 + 4*9  = 77
  const Tensor x = f64({1, 2, 3, 4, 5, 6, 7, 8, 9}, Shape{1, 1, 3, 3});
  const Tensor w = f64({1, 2, 3, 4}, Shape{1, 1, 2, 2});
  const Tensor b = f64({0.5}, Shape{1});
  Tensor y = Tensor::empty(Shape{1, 1, 2, 2}, DType::F64);
  poison(y);
  conv2d_forward(y, x, w, nullptr, {2, 1});
  CHECK(y.to_vector<double>() == std::vector<double>{4, 18, 36, 77});
  conv2d_forward(y, x, w, &b, {2, 1});
  CHECK(y.to_vector<double>() == std::vector<double>{4.5, 18.5, 36.5, 77.5});

  // Backward data with dy = 1: the 2x2 windows at stride 2 do not overlap, so every pixel gets the
  // single weight it was multiplied by: rows 0 and 2 sit under w row 1, row 1 under w row 0.
  const Tensor dy = f64({1, 1, 1, 1}, Shape{1, 1, 2, 2});
  Tensor dx = Tensor::empty(Shape{1, 1, 3, 3}, DType::F64);
  poison(dx);
  conv2d_backward_data(dx, dy, w, {2, 1});
  CHECK(dx.to_vector<double>() == std::vector<double>{4, 3, 4, 2, 1, 2, 4, 3, 4});
}

TEST_CASE("conv2d backward by hand: overlapping windows add up", "[conv2d]") {
  // 3x3 input, 2x2 kernel, stride 1, no padding: 2x2 output, each inner pixel is in several
  // windows.
  const Tensor x = f64({1, 2, 3, 4, 5, 6, 7, 8, 9}, Shape{1, 1, 3, 3});
  const Tensor w = f64({1, 1, 1, 1}, Shape{1, 1, 2, 2});
  const Tensor dy = f64({1, 1, 1, 1}, Shape{1, 1, 2, 2});
  // dx counts the windows that cover each pixel (col2im must add, not assign).
  Tensor dx = Tensor::empty(Shape{1, 1, 3, 3}, DType::F64);
  poison(dx);
  conv2d_backward_data(dx, dy, w, {1, 0});
  CHECK(dx.to_vector<double>() == std::vector<double>{1, 2, 1, 2, 4, 2, 1, 2, 1});
  // dw[r,s] = sum of the 2x2 block of x at offset (r, s); dw starts at 1 to check accumulation:
  //   1 + (1+2+4+5), 1 + (2+3+5+6), 1 + (4+5+7+8), 1 + (5+6+8+9)
  Tensor dw = Tensor::full(Shape{1, 1, 2, 2}, 1.0, DType::F64);
  conv2d_backward_weight(dw, dy, x, {1, 0});
  CHECK(dw.to_vector<double>() == std::vector<double>{13, 17, 25, 29});
  // db accumulates the sum of dy over (n, p, q): 10 + 4.
  Tensor db = Tensor::full(Shape{1}, 10.0, DType::F64);
  conv2d_backward_bias(db, dy);
  CHECK(db.to_vector<double>() == std::vector<double>{14});
}

TEST_CASE("conv2d im2col algorithm matches the direct sums, in one chunk and in several",
          "[conv2d]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  struct Case {
    int64_t N, C, H, W, K, R;
    int stride, pad;
  };
  const std::vector<Case> cases = {{1, 3, 5, 7, 4, 3, 1, 1},
                                   {3, 2, 9, 9, 3, 7, 2, 3},
                                   {5, 3, 5, 7, 2, 1, 2, 0},
                                   {4, 2, 6, 5, 3, 3, 2, 1},
                                   {2, 1, 4, 4, 2, 4, 3, 2},
                                   // 1x1, stride 1, no padding: the CPU's GEMM without im2col
                                   {3, 5, 6, 7, 4, 1, 1, 0}};
  // Budgets: default (one chunk); one image's column buffer (N chunks of 1); two images' worth (a
  // partial last chunk when N is odd).
  for (const Case& c : cases)
    for (int images : {0, 1, 2}) {
      const Conv2dParams prm{c.stride, c.pad};
      const Shape xs{c.N, c.C, c.H, c.W}, ws{c.K, c.C, c.R, c.R};
      const ConvGeometry g = ConvGeometry::make(xs, ws, prm, "test");
      const size_t col_image_bytes = sizeof(double) * g.C * g.R * g.S * g.P * g.Q;
      ScopedDeviceSettings budget(with_col_budget(images * col_image_bytes));
      INFO("x " << xs << " w " << ws << " stride " << c.stride << " pad " << c.pad
                << " images per chunk " << (images ? images : c.N));
      const DirectConv ref{g};
      const Tensor x = uniform_tensor(xs, gen), w = uniform_tensor(ws, gen);
      const Tensor b = uniform_tensor(Shape{c.K}, gen);
      const Tensor dy = uniform_tensor(Shape{g.N, g.K, g.P, g.Q}, gen);

      Tensor y = Tensor::empty(dy.shape(), DType::F64), dx = Tensor::empty(xs, DType::F64);
      poison(y);
      poison(dx);
      Tensor dw = uniform_tensor(ws, gen), db = uniform_tensor(Shape{c.K}, gen);
      const std::vector<double> dw0 = dw.to_vector<double>(), db0 = db.to_vector<double>();
      conv2d_forward(y, x, w, &b, prm);
      conv2d_backward_data(dx, dy, w, prm);
      conv2d_backward_weight(dw, dy, x, prm);
      conv2d_backward_bias(db, dy);

      std::vector<double> dw_ref =
          ref.backward_weight(dy.to_vector<double>(), x.to_vector<double>());
      for (size_t i = 0; i < dw_ref.size(); ++i) dw_ref[i] += dw0[i];  // accumulated
      std::vector<double> db_ref = db0;
      const auto dyv = dy.to_vector<double>();
      for (int64_t i = 0; i < dy.numel(); ++i) db_ref[(i / (g.P * g.Q)) % g.K] += dyv[i];
      // float64 sums of at most C*R*S = 98 (or N*P*Q = 125) terms of size <= 1 in a different order
      // than the reference: round-off ~1e-14 at most.
      const double tol = 1e-12;
      for (auto [name, out, expect] :
           {std::tuple{"forward", y,
                       f64(ref.forward(x.to_vector<double>(), w.to_vector<double>(),
                                       b.to_vector<double>()),
                           y.shape())},
            std::tuple{"backward_data", dx,
                       f64(ref.backward_data(dy.to_vector<double>(), w.to_vector<double>()), xs)},
            std::tuple{"backward_weight", dw, f64(dw_ref, ws)},
            std::tuple{"backward_bias", db, f64(db_ref, Shape{c.K})}}) {
        const Comparison cmp = compare(out, expect, tol, tol);
        INFO(name << ": " << cmp.report);
        CHECK(cmp.ok);
      }
    }
}

TEST_CASE("col2im is the adjoint of im2col, in both layouts", "[conv2d][layout]") {
  // <im2col(x), c> == <x, col2im(c)> for all x and c is what makes backward_data the gradient of
  // forward (docs/backprop/conv2d.md). The inner products run over memory, so the identity holds
  // for the NHWC arrangement (x channels-last, col one row per output pixel) as it is.
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  for (Layout layout : {Layout::NCHW, Layout::NHWC}) {
    INFO(layout_name(layout));
    const ConvGeometry g =
        ConvGeometry::make(Shape{2, 3, 7, 6}, Shape{1, 3, 3, 3}, {2, 1}, "test", layout);
    const int64_t rows = g.C * g.R * g.S, cols = g.N * g.P * g.Q;
    const Tensor x = uniform_tensor(Shape{g.N, g.C, g.H, g.W}, gen);
    const Tensor c = uniform_tensor(Shape{rows, cols}, gen);
    Tensor col = Tensor::empty(Shape{rows, cols}, DType::F64),
           dx = Tensor::empty(x.shape(), DType::F64);
    poison(col);
    poison(dx);
    im2col<double>(Device::cpu(), col.data<double>(), x.data<double>(), g.N, g);
    col2im<double>(Device::cpu(), dx.data<double>(), c.data<double>(), g.N, g);
    double lhs = 0, rhs = 0;
    const auto colv = col.to_vector<double>(), cv = c.to_vector<double>();
    const auto xv = x.to_vector<double>(), dxv = dx.to_vector<double>();
    for (size_t i = 0; i < colv.size(); ++i) lhs += colv[i] * cv[i];
    for (size_t i = 0; i < xv.size(); ++i) rhs += xv[i] * dxv[i];
    // Two float64 sums of ~1000 products of size <= 1: round-off ~1e-13.
    CHECK(lhs == Approx(rhs).epsilon(1e-12));
  }
}

TEST_CASE("conv2d rearrangements and channel sum", "[conv2d]") {
  // in (nb=2, K=3, L=2) = 0..11; (k, n, l) order: out[k, n, l] = in[n, k, l]
  std::vector<double> in(12), out(12), back(12);
  for (int i = 0; i < 12; ++i) in[i] = i;
  nkl_to_knl<double>(Device::cpu(), out.data(), in.data(), 2, 3, 2);
  CHECK(out == std::vector<double>{0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11});
  const std::vector<double> bias = {100, 200, 300};
  knl_to_nkl<double>(Device::cpu(), back.data(), out.data(), bias.data(), 2, 3, 2);
  CHECK(back == std::vector<double>{100, 101, 202, 203, 304, 305, 106, 107, 208, 209, 310, 311});
  std::vector<double> db = {1, 1, 1};
  channel_sum_accumulate<double>(Device::cpu(), db.data(), in.data(), 2, 3, 2);
  // k=0: 0+1+6+7, k=1: 2+3+8+9, k=2: 4+5+10+11, each plus the 1 already there
  CHECK(db == std::vector<double>{15, 23, 31});
}

TEST_CASE("conv2d errors name the op and both shapes", "[conv2d][errors]") {
  const Tensor x = Tensor::zeros(Shape{2, 3, 8, 8}, DType::F64);
  const Tensor w = Tensor::zeros(Shape{4, 5, 3, 3}, DType::F64);
  Tensor y = Tensor::zeros(Shape{2, 4, 8, 8}, DType::F64);
  REQUIRE_THROWS_WITH(conv2d_forward(y, x, w, nullptr, {1, 1}),
                      Catch::Contains("conv2d_forward") && Catch::Contains("(2, 3, 8, 8)") &&
                          Catch::Contains("(4, 5, 3, 3)"));
  const Tensor w3 = Tensor::zeros(Shape{4, 3, 3, 3}, DType::F64);
  Tensor y_bad = Tensor::zeros(Shape{2, 4, 7, 7}, DType::F64);
  REQUIRE_THROWS_WITH(conv2d_forward(y_bad, x, w3, nullptr, {1, 1}),
                      Catch::Contains("conv2d_forward") && Catch::Contains("(2, 4, 7, 7)") &&
                          Catch::Contains("(2, 4, 8, 8)"));
  const Tensor w_big = Tensor::zeros(Shape{4, 3, 11, 11}, DType::F64);
  REQUIRE_THROWS_WITH(ConvGeometry::make(x.shape(), w_big.shape(), {1, 1}, "my_conv"),
                      Catch::Contains("my_conv") && Catch::Contains("(2, 3, 8, 8)") &&
                          Catch::Contains("(4, 3, 11, 11)") && Catch::Contains("empty"));
  REQUIRE_THROWS_WITH(
      ConvGeometry::make(Shape{3, 8, 8}, w3.shape(), {1, 1}, "my_conv"),
      Catch::Contains("my_conv") && Catch::Contains("4-D") && Catch::Contains("(3, 8, 8)"));
  const Tensor b = Tensor::zeros(Shape{5}, DType::F64);
  REQUIRE_THROWS_WITH(conv2d_forward(y, x, w3, &b, {1, 1}), Catch::Contains("bias") &&
                                                                Catch::Contains("(5,)") &&
                                                                Catch::Contains("(4,)"));
  const Tensor x32 = Tensor::zeros(Shape{2, 3, 8, 8}, DType::F32);
  REQUIRE_THROWS_WITH(conv2d_forward(y, x32, w3, nullptr, {1, 1}),
                      Catch::Contains("conv2d_forward") && Catch::Contains("float64"));
}

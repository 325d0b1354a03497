// bfloat16 and float16 on every backend that computes them (the op table's dtype column,
// tests/support/backends.h: low_precision_cases), against float64.
//
// The bounds come from the unit roundoff u of the 16-bit type (bfloat16: 8 significant bits,
// u = 2^-8; float16: 11 bits, u = 2^-11) and are derived beside each check. Two kinds of reference:
//
// * Products (conv2d, linear, matmul): the float64 reference runs on the original float32 inputs,
//   so the check sees what mixed precision costs a user. Rounding an input to 16 bits multiplies it
//   by (1 + d), |d| <= u; modelled as independent and uniform, d has mean 0 and variance u^2/3. A
//   sum of K products a_k b_k then errs by sum_k a_k b_k (d_k + e_k) (+ O(u^2)), a sum of K
//   independent zero-mean terms with standard deviation
//       sigma = sqrt(K) rms(a) rms(b) u sqrt(2/3),
//   and a sum of K single inputs (a bias gradient) by sigma = sqrt(K) rms(a) u / sqrt(3). Bound:
//   6 sigma (a 6-sigma excursion has probability ~2e-9 per element), plus u |ref| for rounding a
//   16-bit output once (float32 outputs: none), plus float32 accumulation, at most
//   sqrt(K) 2^-24 rms(a) rms(b) * 6 as well, which is 2^-16 of the first term and ignored.
// * Memory-bound ops (batchnorm, activations, pooling, add): the reference runs on the 16-bit
//   inputs converted exactly to float64, so only the op's own arithmetic is checked: float32 math
//   (a few 2^-24 of the terms, the float32 bounds of the other tests/ops files) and one rounding of
//   each 16-bit output (u |ref|).
//
// Outputs are poisoned (NaN) first, shapes are awkward (odd channels and sizes) as well as the
// models' own.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "conv_cases.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/dropout.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "kernels/pooling.h"

using namespace minidl;
using namespace minidl::test;

namespace {

double unit_roundoff(DType t) { return t == DType::BF16 ? 0x1p-8 : 0x1p-11; }
// Rounding to a 16-bit result errs by at most u |x| for a normal x, but by half the subnormal
// spacing below the smallest normal, whatever x: float16's subnormals are 2^-24 apart, so 2^-25
// (seed 13430773418075943890: a dropout dx of -1.94e-5 rounded by 1.7e-8, rtol alone 9.5e-9);
// bfloat16's are 2^-133 apart, 2^-134.
double subnormal_atol(DType t) { return t == DType::BF16 ? 0x1p-134 : 0x1p-25; }

// 6 sigma of a K-term sum of products whose two factors were rounded (derivation above).
double product_atol(double K, double rms_a, double rms_b, double u) {
  return 6.0 * std::sqrt(K) * rms_a * rms_b * u * std::sqrt(2.0 / 3.0);
}
// 6 sigma of a K-term sum of single rounded values.
double sum_atol(double K, double rms_a, double u) {
  return 6.0 * std::sqrt(K) * rms_a * u / std::sqrt(3.0);
}

// The emulator (cudasim) runs the CUDA tensor-core product a lane at a time, ~0.2 s of CPU per
// 10^7 multiply-adds (measured: the four conv2d shapes above 4e6 took 26 of the case's 30 CPU
// seconds), so there the products above kEmulatedMacs per direction are left to the GPU run
// (scripts/gpu-check.sh runs this file on every shape); the smaller shapes still cover partial and
// multiple tiles, transposes, strides, padding and batching.
constexpr double kEmulatedMacs = 4e6;
bool too_slow_to_emulate(const BackendCase& c, double macs) {
  return MINIDL_CUDA_SIM && c.device.is_cuda() && macs > kEmulatedMacs;
}

// The 16-bit values of a float32 tensor, exactly, as float64 (the memory-bound ops' reference).
Tensor rounded64(const Tensor& t, DType dtype) { return cast(cast(t, dtype), DType::F64); }
// A float32 tensor on the case's device (the master weights' side: bias, weight gradients).
Tensor f32_on(const BackendCase& c, const Tensor& t) { return cast(t, DType::F32).to(c.device); }

const ConvCase kConvCases[] = {
    {"resnet 3x3 64->64", 2, 64, 16, 16, 64, 3, 1, 1},
    {"resnet 3x3 stride 2 128->256", 2, 128, 8, 8, 256, 3, 2, 1},
    {"resnet 3x3 512->512 (C*R*S = 4608)", 2, 512, 4, 4, 512, 3, 1, 1},
    {"1x1 stride 2 downsample", 3, 16, 9, 9, 32, 1, 2, 0},
    {"stem 3->64", 2, 3, 32, 32, 64, 3, 1, 1},
    {"batch 1, odd sizes", 1, 3, 13, 11, 5, 3, 1, 1},
    {"7x7 stride 2 pad 3, odd input", 3, 2, 9, 9, 7, 7, 2, 3},
    {"1x1 stride 1, odd channels", 2, 17, 8, 8, 19, 1, 1, 0},
    {"stride 3 > kernel 2", 3, 4, 10, 8, 6, 2, 3, 1},
};

}  // namespace

TEST_CASE("conv2d in bfloat16/float16: every backend within the unit-roundoff bounds of float64",
          "[ops][conv2d][half]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const std::vector<BackendCase> cases = low_precision_cases(conv2d_op());
  // Both activation layouts (conv_cases.h): the NHWC arrangement computes the same sums in another
  // order, so the bounds below apply unchanged.
  for (const BackendCase& c : cases)
    for (Layout layout : kConvLayouts) {
      const double u = unit_roundoff(c.dtype);
      for (const ConvCase& k : kConvCases) {
        INFO(k.name << " on " << c.name() << " " << layout_name(layout));
        const ConvProblem p = draw_conv_problem(k, g);
        if (too_slow_to_emulate(c, double(p.ys.numel()) * double(k.C * k.R * k.R))) continue;
        const Conv2dParams& prm = p.prm;
        const Shape &xs = p.xs, &ys = p.ys;
        const Tensor &x = p.x, &w = p.w, &b = p.b, &dy = p.dy, &dw0 = p.dw0, &db0 = p.db0;
        const ConvReference r = conv_reference(p);

        const Tensor xd = to_case(c, x, layout), wd = to_case(c, w), dyd = to_case(c, dy, layout);
        const Tensor bd = f32_on(c, b);
        Tensor y = poisoned(c, ys, c.dtype, layout), dx = poisoned(c, xs, c.dtype, layout);
        Tensor dw = f32_on(c, dw0), db = f32_on(c, db0);
        for (int rep = 0; rep < 2; ++rep) conv2d_forward(c.backend, y, xd, wd, &bd, prm);
        conv2d_backward_data(c.backend, dx, dyd, wd, prm);
        conv2d_backward_weight(c.backend, dw, dyd, xd, prm);
        conv2d_backward_bias(db, dyd);
        REQUIRE(y.dtype() == c.dtype);
        REQUIRE(y.layout() == layout);
        REQUIRE(dw.dtype() == DType::F32);

        const double rx = rms(x), rw = rms(w), rdy = rms(dy);
        const double crs = static_cast<double>(k.C * k.R * k.R), krs = double(k.K * k.R * k.R);
        const double npq = static_cast<double>(ys[0] * ys[2] * ys[3]);
        // forward: K = C*R*S products of x and w, rounded output (u |ref|).
        expect_close("forward", y, r.y, product_atol(crs, rx, rw, u), u);
        // backward data: at most K*R*S products of dy and w per input pixel, rounded output.
        expect_close("backward data", dx, r.dx, product_atol(krs, rdy, rw, u), u);
        // backward weight: N*P*Q products of dy and x, accumulated into float32 (no output
        // rounding; rtol 1e-6 covers float32's own rounding of the sum with dw0).
        expect_close("backward weight", dw, r.dw, product_atol(npq, rdy, rx, u), 1e-6);
        // bias: N*P*Q rounded dy values summed in float32.
        expect_close("backward bias", db, r.db, sum_atol(npq, rdy, u), 1e-6);
      }
    }
}

TEST_CASE("linear and matmul in bfloat16/float16: within the unit-roundoff bounds of float64",
          "[ops][linear][gemm][half]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  struct Sizes {
    int64_t N, in, out;
  };
  for (const Sizes z : {Sizes{32, 512, 10}, Sizes{7, 37, 13}, Sizes{1, 5, 3}, Sizes{129, 9216, 17}}) {
    for (const BackendCase& c : low_precision_cases(linear_op())) {
      if (too_slow_to_emulate(c, double(z.N * z.in * z.out))) continue;
      INFO("linear N " << z.N << " in " << z.in << " out " << z.out << " on " << c.name());
      const double u = unit_roundoff(c.dtype);
      const Tensor x = uniform_tensor(Shape{z.N, z.in}, g, -1, 1, DType::F32);
      const Tensor w = uniform_tensor(Shape{z.out, z.in}, g, -1, 1, DType::F32);
      const Tensor b = uniform_tensor(Shape{z.out}, g, -1, 1, DType::F32);
      const Tensor dy = uniform_tensor(Shape{z.N, z.out}, g, -1, 1, DType::F32);
      const Tensor dw0 = uniform_tensor(Shape{z.out, z.in}, g, -1, 1, DType::F32);
      const Tensor db0 = uniform_tensor(Shape{z.out}, g, -1, 1, DType::F32);
      const Tensor x64 = cast(x, DType::F64), w64 = cast(w, DType::F64), b64 = cast(b, DType::F64);
      Tensor y_ref = Tensor::empty(Shape{z.N, z.out}, DType::F64);
      Tensor dx_ref = Tensor::empty(x.shape(), DType::F64);
      Tensor dw_ref = cast(dw0, DType::F64), db_ref = cast(db0, DType::F64);
      linear_forward(Backend::CpuReference, y_ref, x64, w64, &b64);
      linear_backward(Backend::CpuReference, &dx_ref, dw_ref, &db_ref, cast(dy, DType::F64), x64,
                      w64);

      const Tensor bd = f32_on(c, b);
      Tensor y = poisoned(c, Shape{z.N, z.out}), dx = poisoned(c, x.shape());
      Tensor dw = f32_on(c, dw0), db = f32_on(c, db0);
      linear_forward(c.backend, y, to_case(c, x), to_case(c, w), &bd);
      linear_backward(c.backend, &dx, dw, &db, to_case(c, dy), to_case(c, x), to_case(c, w));
      const double rx = rms(x), rw = rms(w), rdy = rms(dy);
      // forward: in products, rounded output; dx: out products, rounded; dw: N products into
      // float32; db: N rounded values into float32 (derivations at the top of the file).
      expect_close("forward", y, y_ref, product_atol(double(z.in), rx, rw, u), u);
      expect_close("backward input", dx, dx_ref, product_atol(double(z.out), rdy, rw, u), u);
      expect_close("backward weight", dw, dw_ref, product_atol(double(z.N), rdy, rx, u), 1e-6);
      expect_close("backward bias", db, db_ref, sum_atol(double(z.N), rdy, u), 1e-6);
    }
    for (const BackendCase& c : low_precision_cases(gemm_op())) {
      if (too_slow_to_emulate(c, double(z.N * z.in * z.out))) continue;
      INFO("matmul (" << z.N << " x " << z.in << ") (" << z.in << " x " << z.out << ") on "
                      << c.name());
      const double u = unit_roundoff(c.dtype);
      // Every transpose combination (stored shapes follow), each from fresh operands.
      for (const int trans : {0, 1, 2, 3}) {
        const bool ta = trans & 1, tb = trans & 2;
        INFO("trans_a " << ta << " trans_b " << tb);
        const Tensor A = uniform_tensor(ta ? Shape{z.in, z.N} : Shape{z.N, z.in}, g, -1, 1,
                                        DType::F32);
        const Tensor B = uniform_tensor(tb ? Shape{z.out, z.in} : Shape{z.in, z.out}, g, -1, 1,
                                        DType::F32);
        Tensor C_ref = Tensor::empty(Shape{z.N, z.out}, DType::F64);
        matmul(Backend::CpuReference, C_ref, cast(A, DType::F64), cast(B, DType::F64), ta, tb);
        // A 16-bit C (rounded once) and a float32 C (not rounded).
        Tensor C = poisoned(c, Shape{z.N, z.out});
        Tensor C32 = poisoned(c, Shape{z.N, z.out}, DType::F32);
        matmul(c.backend, C, to_case(c, A), to_case(c, B), ta, tb);
        matmul(c.backend, C32, to_case(c, A), to_case(c, B), ta, tb);
        const double atol = product_atol(double(z.in), rms(A), rms(B), u);
        expect_close("16-bit C", C, C_ref, atol, u);
        expect_close("float32 C", C32, C_ref, atol, 1e-6);
      }
    }
  }
}

TEST_CASE("batchnorm in bfloat16/float16: float32 statistics and parameters, 16-bit activations",
          "[ops][batchnorm][half]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const BatchNormParams p{};
  const Backend ref = Backend::CpuReference;
  // HW = 256: 16-byte vectors on CUDA (8 16-bit values; 8,192 units, 8 passes of the tests'
  // 4-block grid); HW = 36 (a multiple of 4 but not of 8): float32 would vectorise, 16 bits must
  // not; HW = 63 and 1: scalar. NHWC: (4,64,16,16) and (2,3,6,6) (216 elements) take 16-byte units
  // whose 8 channels wrap around C (every 3 for C = 3); (3,5,7,9) is scalar.
  for (const Shape s :
       {Shape{4, 64, 16, 16}, Shape{3, 5, 7, 9}, Shape{16, 3, 1, 1}, Shape{2, 3, 6, 6}}) {
    for (const BackendCase& c : low_precision_cases(batchnorm_op())) {
      INFO("shape " << s << " on " << c.name());
      const double u = unit_roundoff(c.dtype);
      const int64_t C = s[1];
      const double M = static_cast<double>(s.numel() / C);
      const Shape cs{C};
      const Tensor x = normal_tensor(s, g, 2.0, DType::F32), dy = normal_tensor(s, g, 1.0, DType::F32);
      const Tensor gamma = uniform_tensor(cs, g, 0.5, 1.5, DType::F32);
      const Tensor beta = uniform_tensor(cs, g, -1, 1, DType::F32);
      const Tensor rm0 = uniform_tensor(cs, g, -0.5, 0.5, DType::F32);
      const Tensor rv0 = uniform_tensor(cs, g, 0.5, 2.0, DType::F32);
      const Tensor dg0 = uniform_tensor(cs, g, -1, 1, DType::F32);
      const Tensor dbt0 = uniform_tensor(cs, g, -1, 1, DType::F32);

      // Reference: float64 on the 16-bit values of x and dy.
      const Tensor x64 = rounded64(x, c.dtype), dy64 = rounded64(dy, c.dtype);
      Tensor y_ref = Tensor::empty(s, DType::F64), dx_ref = Tensor::empty(s, DType::F64);
      Tensor sm_ref = Tensor::empty(cs, DType::F64), si_ref = Tensor::empty(cs, DType::F64);
      Tensor rm_ref = cast(rm0, DType::F64), rv_ref = cast(rv0, DType::F64);
      Tensor dg_ref = cast(dg0, DType::F64), dbt_ref = cast(dbt0, DType::F64);
      const Tensor g64 = cast(gamma, DType::F64), b64 = cast(beta, DType::F64);
      batchnorm_forward_train(ref, y_ref, sm_ref, si_ref, rm_ref, rv_ref, x64, g64, b64, p);
      batchnorm_backward_train(ref, dx_ref, dg_ref, dbt_ref, dy64, x64, g64, sm_ref, si_ref, p);

      // Both layouts (channels-last: the same values converted, outputs poisoned in NHWC), the
      // same bounds (batchnorm_test.cpp: only the order of the float32 partial sums differs).
      for (Layout L : {Layout::NCHW, Layout::NHWC}) {
        INFO(layout_name(L));
        Tensor y = poisoned(c, s, c.dtype, L), dx = poisoned(c, s, c.dtype, L);
        Tensor sm = poisoned(c, cs, DType::F32), si = poisoned(c, cs, DType::F32);
        Tensor rm = f32_on(c, rm0), rv = f32_on(c, rv0), dg = f32_on(c, dg0), dbt = f32_on(c, dbt0);
        const Tensor gd = f32_on(c, gamma), bd = f32_on(c, beta);
        const Tensor xd = to_case(c, to_layout(x, L)), dyd = to_case(c, to_layout(dy, L));
        batchnorm_forward_train(c.backend, y, sm, si, rm, rv, xd, gd, bd, p);
        batchnorm_backward_train(c.backend, dx, dg, dbt, dyd, xd, gd, sm, si, p);
        // y and dx: one rounding of a float32 result (u |ref|); the float32 arithmetic before it
        // errs by a few 2^-24 of |y| <= ~8, the 1e-5 of the float32 batchnorm test.
        expect_close("y", y, y_ref, 1e-5, u);
        expect_close("dx", dx, dx_ref, 1e-5, u);
        // Statistics, running statistics and parameter gradients are float32 computed from the
        // same 16-bit values: the float32 bounds of tests/ops/batchnorm_test.cpp (1e-5, and
        // 1e-5 sqrt(M) for the per-channel sums over M elements).
        expect_close("save_mean", sm, sm_ref, 1e-5, 1e-5);
        expect_close("save_invstd", si, si_ref, 1e-5, 1e-5);
        expect_close("running_mean", rm, rm_ref, 1e-5, 1e-5);
        expect_close("running_var", rv, rv_ref, 1e-5, 1e-5);
        expect_close("dgamma", dg, dg_ref, 1e-5 * std::sqrt(M), 1e-5);
        expect_close("dbeta", dbt, dbt_ref, 1e-5 * std::sqrt(M), 1e-5);
      }
    }
  }
}

TEST_CASE("activations, pooling and add in bfloat16/float16: float32 math, one rounding",
          "[ops][activation][pooling][elementwise][half]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Backend ref = Backend::CpuReference;
  const Shape s{3, 5, 11, 13};
  const Tensor x = uniform_tensor(s, g, -3, 3, DType::F32), dy = uniform_tensor(s, g, -1, 1, DType::F32);
  for (const BackendCase& c : low_precision_cases(activation_op())) {
    const double u = unit_roundoff(c.dtype);
    const Tensor x64 = rounded64(x, c.dtype), dy64 = rounded64(dy, c.dtype);
    for (Activation act :
         {Activation::ReLU, Activation::LeakyReLU, Activation::Sigmoid, Activation::Tanh}) {
      INFO(activation_name(act) << " on " << c.name());
      Tensor y_ref = Tensor::empty(s, DType::F64), dx_ref = Tensor::empty(s, DType::F64);
      activation_forward(ref, y_ref, x64, act, 0.1);
      activation_backward(ref, dx_ref, dy64, x64, y_ref, act, 0.1);
      Tensor y = poisoned(c, s), dx = poisoned(c, s);
      const Tensor xd = to_case(c, x);
      activation_forward(c.backend, y, xd, act, 0.1);
      activation_backward(c.backend, dx, to_case(c, dy), xd, y, act, 0.1);
      // forward: float32 exp/tanh err by a few ulps (<= 4 2^-24 ~ 2.4e-7 for |y| <= 3, atol
      // 1e-6), then one rounding (u |ref|).
      expect_close("forward", y, y_ref, 1e-6, u);
      // backward: ReLU-like ones pass dy or slope dy (one rounding). Sigmoid and tanh read the
      // 16-bit y the forward stored where the reference reads its float64 y: y (1 + d), |d| <= u,
      // moves dx = dy y (1 - y) by |dy| |1 - 2y| |y| u <= u |dy| and dx = dy (1 - y^2) by
      // 2 |dy| y^2 u <= 2u |dy| (|dy| <= 1 here): atol 2u on top of the output rounding.
      const bool reads_y = act == Activation::Sigmoid || act == Activation::Tanh;
      expect_close("backward", dx, dx_ref, reads_y ? 2 * u : 1e-6, u);
    }
  }
  const Pool2dParams pool{3, 2, 1};
  const Shape ps = pool2d_output_shape(s, pool, "test");
  const Tensor dyp = uniform_tensor(ps, g, -1, 1, DType::F32);
  // Pooling in both layouts (channels-last: the same values converted, outputs poisoned in NHWC;
  // the same arithmetic per output, so the same bounds).
  for (const BackendCase& c : low_precision_cases(maxpool2d_op()))
    for (Layout L : {Layout::NCHW, Layout::NHWC}) {
      INFO("maxpool2d on " << c.name() << ", " << layout_name(L));
      const double u = unit_roundoff(c.dtype);
      const Tensor x64 = rounded64(x, c.dtype), dy64 = rounded64(dyp, c.dtype);
      Tensor y_ref = Tensor::empty(ps, DType::F64), dx_ref = Tensor::empty(s, DType::F64);
      Tensor am_ref = Tensor::empty(ps, DType::I32);
      maxpool2d_forward(ref, y_ref, am_ref, x64, pool);
      maxpool2d_backward(ref, dx_ref, dy64, x64, y_ref, am_ref, pool);
      Tensor y = poisoned(c, ps, c.dtype, L), dx = poisoned(c, s, c.dtype, L);
      Tensor am = poisoned(c, ps, DType::I32, L);
      const Tensor xd = to_case(c, to_layout(x, L));
      maxpool2d_forward(c.backend, y, am, xd, pool);
      maxpool2d_backward(c.backend, dx, to_case(c, to_layout(dyp, L)), xd, y, am, pool);
      // The maximum is one of the 16-bit inputs: exact. A pixel's gradient is a float32 sum of at
      // most 4 16-bit values (3x3 windows, stride 2), rounded once: u |ref| + 4 2^-24.
      expect_close("forward", y, y_ref, 0, 0);
      expect_same("argmax", am, am_ref);
      expect_close("backward", dx, dx_ref, 1e-6, u);
    }
  for (const BackendCase& c : low_precision_cases(avgpool2d_op()))
    for (Layout L : {Layout::NCHW, Layout::NHWC}) {
      INFO("avgpool2d on " << c.name() << ", " << layout_name(L));
      const double u = unit_roundoff(c.dtype);
      const Tensor x64 = rounded64(x, c.dtype), dy64 = rounded64(dyp, c.dtype);
      Tensor y_ref = Tensor::empty(ps, DType::F64), dx_ref = Tensor::empty(s, DType::F64);
      avgpool2d_forward(ref, y_ref, x64, pool);
      avgpool2d_backward(ref, dx_ref, dy64, pool);
      Tensor y = poisoned(c, ps, c.dtype, L), dx = poisoned(c, s, c.dtype, L);
      avgpool2d_forward(c.backend, y, to_case(c, to_layout(x, L)), pool);
      avgpool2d_backward(c.backend, dx, to_case(c, to_layout(dyp, L)), pool);
      // A 9-term sum (in float64 / float32), divided, rounded once: u |ref| + a few 2^-24.
      expect_close("forward", y, y_ref, 1e-6, u);
      expect_close("backward", dx, dx_ref, 1e-6, u);
    }
  for (const BackendCase& c : low_precision_cases(global_avgpool_op()))
    for (Layout L : {Layout::NCHW, Layout::NHWC}) {
      INFO("global_avgpool on " << c.name() << ", " << layout_name(L));
      const double u = unit_roundoff(c.dtype);
      const Shape gs{s[0], s[1], 1, 1};
      const Tensor dyg = uniform_tensor(gs, g, -1, 1, DType::F32);
      const Tensor x64 = rounded64(x, c.dtype), dy64 = rounded64(dyg, c.dtype);
      Tensor y_ref = Tensor::empty(gs, DType::F64), dx_ref = Tensor::empty(s, DType::F64);
      global_avgpool_forward(ref, y_ref, x64);
      global_avgpool_backward(ref, dx_ref, dy64);
      Tensor y = poisoned(c, gs, c.dtype, L), dx = poisoned(c, s, c.dtype, L);
      global_avgpool_forward(c.backend, y, to_case(c, to_layout(x, L)));
      global_avgpool_backward(c.backend, dx, to_case(c, dyg.relabel(L)));
      // The mean of 143 values summed in float64 (CPU) or float32 (CUDA), rounded once (u |ref|);
      // |mean| can cancel to ~0, where the sum leaves nothing but its rounding: atol 1e-7.
      expect_close("forward", y, y_ref, 1e-7, u);
      expect_close("backward", dx, dx_ref, 1e-7, u);
    }
  for (const BackendCase& c : low_precision_cases(dropout_op())) {
    INFO("dropout on " << c.name());
    const double u = unit_roundoff(c.dtype);
    Tensor y_ref = Tensor::empty(s, DType::F64), dx_ref = Tensor::empty(s, DType::F64);
    Tensor m_ref = Tensor::empty(s, DType::U8);
    dropout_forward(ref, y_ref, m_ref, rounded64(x, c.dtype), 0.3, 99, 5);
    dropout_backward(ref, dx_ref, rounded64(dy, c.dtype), m_ref, 0.3);
    Tensor y = poisoned(c, s), dx = poisoned(c, s), m = poisoned(c, s, DType::U8);
    dropout_forward(c.backend, y, m, to_case(c, x), 0.3, 99, 5);
    dropout_backward(c.backend, dx, to_case(c, dy), m, 0.3);
    // The same Philox masks; kept values times 1/0.7 in float32 (one float32 rounding, 2^-24),
    // then one 16-bit rounding (u |ref|).
    CHECK(m.to_vector<uint8_t>() == m_ref.to_vector<uint8_t>());
    expect_close("forward", y, y_ref, subnormal_atol(c.dtype), u + 0x1p-23);
    expect_close("backward", dx, dx_ref, subnormal_atol(c.dtype), u + 0x1p-23);
  }
  for (const BackendCase& c : low_precision_cases(elementwise_op())) {
    INFO("add_scaled on " << c.name());
    const double u = unit_roundoff(c.dtype);
    Tensor out_ref = Tensor::empty(s, DType::F64);
    add_scaled(ref, out_ref, rounded64(x, c.dtype), rounded64(dy, c.dtype), -0.75);
    Tensor out = poisoned(c, s);
    add_scaled(c.backend, out, to_case(c, x), to_case(c, dy), -0.75);
    // a + alpha b in float32 (errs by 2^-24 (|a| + 2 |alpha b|) <= 2^-24 * 4.5 < 3e-7), rounded
    // once: u |ref|.
    expect_close("a - 0.75 b", out, out_ref, 3e-7, u);
  }
}

// The CUDA rows read and write 16-bit tensors in 16-byte vectors of 8 elements (kernels/vec16.cuh):
// a scalar head up to the first 16-byte boundary, the vectors, a scalar tail; all scalar when the
// tensors sit at different offsets within 16 bytes (views can). Each map runs here on views at
// element offsets 0 (aligned), 3 in every tensor (a 5-element head) and 1/2/3 (mixed: all scalar),
// over lengths around the vector and block sizes: 1, 7, 8, 9, 8 * 4 * 256 + 3 (one element past
// the vectors of one full pass of the tests' 4-block grid) and 20,003 (three passes). Outputs are
// views into a poisoned buffer 8 elements longer, so a write outside the view (a vector past the
// tail, a head or tail index off by one) shows as a non-NaN poison element.
TEST_CASE("memory-bound ops in bfloat16/float16: vectors, misaligned views, heads and tails",
          "[ops][activation][elementwise][dropout][half][vec16]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Backend ref = Backend::CpuReference;
  struct Offsets {
    int64_t out, a, b;
  };
  const Offsets offsets[] = {{0, 0, 0}, {3, 3, 3}, {1, 2, 3}};
  const int64_t lengths[] = {1, 7, 8, 9, 8 * 4 * 256 + 3, 20003};
  // The poisoned output buffer around the view: only [off, off + n) may change.
  auto check_outside = [](const Tensor& full, int64_t off, int64_t n) {
    const std::vector<double> v = to_doubles(full);
    int64_t written = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(v.size()); ++i)
      if ((i < off || i >= off + n) && !std::isnan(v[i])) ++written;
    CHECK(written == 0);
  };
  const std::vector<BackendCase> acts = low_precision_cases(activation_op());
  const std::vector<BackendCase> adds = low_precision_cases(elementwise_op());
  const std::vector<BackendCase> drops = low_precision_cases(dropout_op());
  for (const int64_t n : lengths) {
    const Shape full{n + 8};
    const Tensor a = uniform_tensor(full, g, -3, 3, DType::F32);
    const Tensor b = uniform_tensor(full, g, -1, 1, DType::F32);
    std::vector<uint8_t> keep(static_cast<size_t>(n + 8));
    for (uint8_t& k : keep) k = g.below(10) < 7;
    const Tensor mask_cpu = Tensor::from_vector(keep, full);
    for (const Offsets o : offsets) {
      auto run = [&](const std::vector<BackendCase>& cases, const char* what, auto&& body) {
        for (const BackendCase& c : cases) {
          INFO(what << " on " << c.name() << ", n " << n << ", offsets out " << o.out << " a "
                    << o.a << " b " << o.b);
          const Tensor a64 = rounded64(a, c.dtype).slice(o.a, o.a + n);
          const Tensor b64 = rounded64(b, c.dtype).slice(o.b, o.b + n);
          const Tensor ad = to_case(c, a).slice(o.a, o.a + n);
          const Tensor bd = to_case(c, b).slice(o.b, o.b + n);
          Tensor out_full = poisoned(c, full);
          Tensor out = out_full.slice(o.out, o.out + n);
          Tensor out_ref = Tensor::empty(Shape{n}, DType::F64);
          body(c, out, out_ref, ad, bd, a64, b64, unit_roundoff(c.dtype));
          check_outside(out_full, o.out, n);
        }
      };
      run(adds, "add_scaled",
          [&](const BackendCase& c, Tensor& out, Tensor& out_ref, const Tensor& ad,
              const Tensor& bd, const Tensor& a64, const Tensor& b64, double u) {
            add_scaled(ref, out_ref, a64, b64, -0.75);
            add_scaled(c.backend, out, ad, bd, -0.75);
            // float32 a + alpha b (< 3e-7, as above), rounded once (u |ref|).
            expect_close("a - 0.75 b", out, out_ref, 3e-7, u);
          });
      for (Activation act : {Activation::ReLU, Activation::Sigmoid}) {
        run(acts, activation_name(act),
            [&](const BackendCase& c, Tensor& out, Tensor& out_ref, const Tensor& ad, const Tensor&,
                const Tensor& a64, const Tensor&, double u) {
              activation_forward(ref, out_ref, a64, act, 0.1);
              activation_forward(c.backend, out, ad, act, 0.1);
              // float32 exp (a few ulps, < 1e-6 for |y| <= 3), rounded once (derivation above).
              expect_close("forward", out, out_ref, 1e-6, u);
            });
      }
      for (Activation act : {Activation::LeakyReLU, Activation::Tanh}) {
        run(acts, activation_name(act),
            [&](const BackendCase& c, Tensor& out, Tensor& out_ref, const Tensor& ad,
                const Tensor& bd, const Tensor& a64, const Tensor& b64, double u) {
              // dy = b; x = y = a (the backward reads x for LeakyReLU and y for tanh; |a| <= 3).
              activation_backward(ref, out_ref, b64, a64, a64, act, 0.1);
              activation_backward(c.backend, out, bd, ad, ad, act, 0.1);
              // LeakyReLU: dy or 0.1f dy in float32 (2^-24 |ref|, and 0.1f is 0.1 (1 + 1.5e-9)),
              // rounded once: u |ref|, or half a float16 subnormal spacing where 0.1 |dy| < 2^-14
              // (subnormal_atol). tanh: dy (1 - y^2) from the same 16-bit y as the reference: three
              // float32 roundings of terms up to |dy| y^2 <= 9, 9 * 3 * 2^-24 < 2e-6, rounded once.
              expect_close("backward", out, out_ref,
                           act == Activation::Tanh ? 2e-6 : subnormal_atol(c.dtype), u + 0x1p-23);
            });
      }
      run(drops, "dropout_backward",
          [&](const BackendCase& c, Tensor& out, Tensor& out_ref, const Tensor&, const Tensor& bd,
              const Tensor&, const Tensor& b64, double u) {
            // The mask view starts at the output's offset, so the offsets (1, 2, 3) give a mask
            // that is not 8-byte aligned with dy's vectors: all scalar.
            const Tensor m_cpu = mask_cpu.slice(o.out, o.out + n);
            dropout_backward(ref, out_ref, b64, m_cpu, 0.3);
            dropout_backward(c.backend, out, bd, mask_cpu.to(c.device).slice(o.out, o.out + n),
                             0.3);
            // dy / 0.7 in float32 (2^-24), rounded once (u |ref|, and half a float16 subnormal
            // spacing below the normal range, subnormal_atol).
            expect_close("backward", out, out_ref, subnormal_atol(c.dtype), u + 0x1p-23);
          });
    }
  }
}

TEST_CASE("convert: every backend gives core/half.h's bits between all float dtypes",
          "[ops][convert][half]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Values across float16's range, its subnormals, and beyond it (infinity in float16). 3000
  // values: more than the CUDA tests' 4 blocks x 256 threads, so the grid-stride loop runs three
  // passes (a wrong stride shows), and not a multiple of the block.
  std::vector<float> v;
  for (int i = 0; i < 3000; ++i)
    v.push_back(static_cast<float>(g.normal() *
                                   std::ldexp(1.0, static_cast<int>(g.below(60)) - 30)));
  v.insert(v.end(), {0.0f, -0.0f, 65504.0f, 65520.0f, 1e6f, -1e30f, 0x1p-24f, 0x1p-25f, 3.0e38f});
  const Tensor x = Tensor::from_vector(v, Shape{static_cast<int64_t>(v.size())});
  std::vector<BackendCase> cases = low_precision_cases(convert_op());
  for (const BackendCase& c : backend_cases(convert_op(), true)) cases.push_back(c);
  for (const BackendCase& c : cases) {
    for (DType from : convert_op().dtypes(c.backend)) {
      INFO(dtype_name(from) << " -> " << c.name());
      // Source values: x in `from` (made on the CPU), moved to the case's device.
      const Tensor src_host = cast(x, from);
      Tensor out = poisoned(c, x.shape());
      convert(c.backend, out, src_host.to(c.device));
      // Expected: the CPU reference conversion element by element through float (core/half.h).
      const Tensor expect = cast(src_host, c.dtype);
      const Tensor got = out.to(Device::cpu());
      CHECK(std::memcmp(got.raw_data(), expect.raw_data(), got.nbytes()) == 0);
    }
  }
  // Refusals name the op and the dtypes.
  Tensor i32 = Tensor::zeros(Shape{3}, DType::I32);
  CHECK_THROWS_WITH(convert(i32, x.slice(0, 3)), Catch::Contains("convert") && Catch::Contains("int32"));
}

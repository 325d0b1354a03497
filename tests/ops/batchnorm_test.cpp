// Batch normalisation on every backend of the op (cpu-reference in the CPU suite; cuda-handwritten
// and cuda-vendor in the CUDA suite) against the float64 cpu-reference on the same float32 inputs,
// train and eval mode, and the BatchNorm2d layer's running statistics on each backend. The float64
// cpu-reference itself is checked by hand and against finite differences in
// tests/kernels/batchnorm_test.cpp and tests/layers/batchnorm_test.cpp.
//
// Shapes: ResNet's (4,64,32,32), (3,256,8,8), (1,512,4,4) (float4 path, one slice per channel),
// (32,16,32,32) (several slices per channel), awkward (3,5,7,9) and (13,16,31,31) (odd HW: scalar
// path; slices that end inside a plane and a shorter last slice), HW = 42 (even, not a multiple of
// the float4 width) and HW = 1. Inputs have a mean
// offset and a spread != 1, so that a kernel that skipped the centring or the scaling could not
// match; three shapes also run with the mean far from 0 (|mean| = 10 std), where a one-pass
// variance E[x^2] - E[x]^2 in float32 would lose the digits the checks below require.
//
// Layouts: the train and eval cases run each backend on x, dy and the outputs in NCHW and in
// NHWC (channels-last: converted inputs, outputs poisoned in NHWC) against the same NCHW float64
// reference (to_doubles pairs element (n, c, h, w) with (n, c, h, w) in either layout). An NHWC
// tensor is normalised over the same M = N*H*W values per channel; only the grouping of the
// float32 partial sums differs (CPU: 32 rows per float sum instead of a 16-lane split of a row of
// HW; CUDA: row groups per thread instead of plane stretches), each still merged in double, and
// the bounds below do not depend on the order of the terms, so they hold unchanged.
// In NHWC, (32,16,32,32) and (13,16,31,31) split each channel's rows over 128 and 48 blocks (the
// last one shorter), and every tensor above 1024 units runs several grid-stride passes under the
// tests' 4-block cap.
//
// Tolerances: every case computes in float32, the reference in float64 from the same inputs, so
// the differences are float32 rounding: a few ulps per element for y and dx (|y| <= ~8 here, 1 ulp
// = 6e-8 relative), ~1e-6 relative for the statistics (float per-thread partial sums, merged in
// double by our kernels; cuDNN's own order otherwise). atol = rtol = 1e-5 leaves a margin of ~10x
// over that and still catches any formula error (those are O(1e-2) and larger). Per-channel sums
// over M elements (dgamma, dbeta) have size ~sqrt(M) and rounding that grows alike, hence
// atol = 1e-5 sqrt(M) there. Every comparison also requires a relative L2 error below 1e-5.
#include "kernels/batchnorm.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "../support/backends.h"
#include "../support/test_util.h"
#include "kernels/convert.h"
#include "layers/batchnorm.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct BnCase {
  Shape s;
  double mean, std;  // of the input x
};
const BnCase kCases[] = {
    {Shape{4, 64, 32, 32}, 0.5, 2.0}, {Shape{3, 256, 8, 8}, 0.5, 2.0},
    {Shape{1, 512, 4, 4}, 0.5, 2.0},  {Shape{32, 16, 32, 32}, 0.5, 2.0},
    {Shape{3, 5, 7, 9}, 0.5, 2.0},    {Shape{13, 16, 31, 31}, 0.5, 2.0},
    {Shape{16, 3, 1, 1}, 0.5, 2.0},   {Shape{3, 5, 7, 9}, 5.0, 0.5},
    {Shape{16, 3, 1, 1}, 5.0, 0.5},   {Shape{4, 6, 32, 32}, 5.0, 0.5},
    {Shape{5, 3, 6, 7}, 0.5, 2.0},  // HW % 4 == 2: the scalar path, not a partial float4
};

// float32 CPU tensor of N(mean, std^2) values.
Tensor normal_f32(const Shape& s, Generator& g, double mean, double std) {
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& e : v) e = static_cast<float>(mean + std * g.normal());
  return Tensor::from_vector(v, s);
}

// Per-channel inputs shared by the tests: gamma, beta, running stats (non-trivial values).
struct Channels {
  Tensor gamma, beta, running_mean, running_var;
  explicit Channels(int64_t C, Generator& g)
      : gamma(uniform_tensor(Shape{C}, g, 0.5, 1.5, DType::F32)),
        beta(uniform_tensor(Shape{C}, g, -1.0, 1.0, DType::F32)),
        running_mean(uniform_tensor(Shape{C}, g, -0.5, 0.5, DType::F32)),
        running_var(uniform_tensor(Shape{C}, g, 0.5, 2.0, DType::F32)) {}
};

// cuda-vendor (cuDNN): a bound on the relative error of the float32 batch variance of M values
// with the given mean and std, whatever algorithm and summation order cuDNN uses (undocumented).
// The worst of the usual algorithms is the one-pass var = S2/M - (S1/M)^2 with S1 = sum x,
// S2 = sum x^2 in float32, whose cancellation multiplies the sums' errors by E[x^2] / var (101 at
// mean 5, std 0.5); Welford and two-pass forms do better. For a float32 sum of M terms in ANY
// order, the probabilistic bound of Higham and Mary ("A new approach to probabilistic rounding
// error analysis", SIAM J. Sci. Comput. 41(5), 2019, Thm 2.4) gives |error| <= lambda sqrt(M) u
// sum|term| with probability >= 1 - 2M exp(-lambda^2 (1-u)^2 / 2); lambda = 6 makes the failure
// probability <= 1.3e-4 per sum at M = 4096 (1.0e-3 at the largest M here, 32768). With u = 2^-24:
//   |dS1| <= lambda sqrt(M) u sum|x|,  |dS2| <= (lambda sqrt(M) + 1) u sum x^2 (x^2 rounds once),
//   |dvar| <= (lambda sqrt(M) + 1) u E[x^2] + 2 |mean| lambda sqrt(M) u E|x| + 3 u E[x^2]
// (the two divisions, the square and the subtraction), E|x| <= sqrt(E[x^2]), E[x^2] = mean^2 +
// std^2. invstd = rsqrt(var + eps) then has relative error <= |dvar| / (2 var) plus rsqrtf's 2 ulp
// (CUDA Programming Guide, single-precision functions: 2 ulp <= 2^-22 relative). At M = 4096 this
// is 3.5e-3 for mean 5, std 0.5 and 1.8e-5 for mean 0.5, std 2: both above the 1e-5 the
// hand-written kernels meet (their float partial sums are merged in double), so cuda-vendor gets
// this bound.
double cudnn_var_rel_bound(double M, double mean, double std) {
  const double u = std::ldexp(1.0, -24), lambda = 6.0, e2 = mean * mean + std * std;
  const double dvar = (lambda * std::sqrt(M) + 4) * u * e2 +
                      2 * std::abs(mean) * lambda * std::sqrt(M) * u * std::sqrt(e2);
  return dvar / (std * std);
}
double cudnn_invstd_rel_bound(double M, double mean, double std) {
  return cudnn_var_rel_bound(M, mean, std) / 2 + std::ldexp(1.0, -22);
}

// Eval forward and backward of case c against the float64 reference on the same inputs (dgamma
// and dbeta start at dgamma0, dbeta0: backward must add to them), and the running statistics left
// alone. The bounds are the file's, with y, dx and dgamma's absolute ones times `k`, the largest
// invstd over the channels (they are proportional to it, and so is their rounding).
void check_eval(const BackendCase& c, Layout L, const Tensor& x, const Tensor& dy,
                const Channels& ch, const Tensor& dgamma0, const Tensor& dbeta0,
                const BatchNormParams& p, double k) {
  const Backend ref = Backend::CpuReference;
  const Shape& s = x.shape();
  const double M = static_cast<double>(s.numel() / s[1]);
  const Tensor x64 = cast(x, DType::F64), gamma64 = cast(ch.gamma, DType::F64);
  const Tensor rm64 = cast(ch.running_mean, DType::F64), rv64 = cast(ch.running_var, DType::F64);
  Tensor ry = Tensor::empty(s, DType::F64);
  batchnorm_forward_eval(ref, ry, x64, gamma64, cast(ch.beta, DType::F64), rm64, rv64, p);
  Tensor rdx = Tensor::empty(s, DType::F64), rdg = cast(dgamma0, DType::F64),
         rdb = cast(dbeta0, DType::F64);
  batchnorm_backward_eval(ref, rdx, rdg, rdb, cast(dy, DType::F64), x64, gamma64, rm64, rv64, p);

  const Tensor gx = to_case(c, to_layout(x, L)), ggamma = to_case(c, ch.gamma);
  const Tensor grm = to_case(c, ch.running_mean), grv = to_case(c, ch.running_var);
  Tensor gy = poisoned(c, s, c.dtype, L);
  batchnorm_forward_eval(c.backend, gy, gx, ggamma, to_case(c, ch.beta), grm, grv, p);
  Tensor gdx = poisoned(c, s, c.dtype, L), gdg = to_case(c, dgamma0), gdb = to_case(c, dbeta0);
  batchnorm_backward_eval(c.backend, gdx, gdg, gdb, to_case(c, to_layout(dy, L)), gx, ggamma, grm,
                          grv, p);

  expect_close("y", gy, ry, 1e-5 * k, 1e-5, 1e-5);
  expect_close("dx", gdx, rdx, 1e-5 * k, 1e-5, 1e-5);
  expect_close("dgamma", gdg, rdg, 1e-5 * k * std::sqrt(M), 1e-5, 1e-5);
  expect_close("dbeta", gdb, rdb, 1e-5 * std::sqrt(M), 1e-5, 1e-5);
  CHECK(to_doubles(grm) == to_doubles(ch.running_mean));
  CHECK(to_doubles(grv) == to_doubles(ch.running_var));
}

}  // namespace

TEST_CASE("batchnorm train mode on every backend matches float64", "[ops][batchnorm][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const BatchNormParams p{};
  const Backend ref = Backend::CpuReference;
  for (const BackendCase& c : backend_cases(batchnorm_op())) {
    for (const BnCase& k : kCases) {
      const Shape& s = k.s;
      INFO("shape " << s << ", x mean " << k.mean << " std " << k.std << ", " << c.name());
      const int64_t C = s[1];
      const double M = static_cast<double>(s.numel() / C);
      const Shape cs{C};
      const Tensor x = normal_f32(s, g, k.mean, k.std), dy = normal_f32(s, g, 0.0, 1.0);
      const Channels ch(C, g);
      // Gradients start non-zero: backward must add to them.
      const Tensor dgamma0 = uniform_tensor(cs, g, -1, 1, DType::F32);
      const Tensor dbeta0 = uniform_tensor(cs, g, -1, 1, DType::F32);

      // float64 reference
      Tensor ry = Tensor::empty(s, DType::F64), rmean = Tensor::empty(cs, DType::F64),
             rinvstd = Tensor::empty(cs, DType::F64);
      Tensor rrm = cast(ch.running_mean, DType::F64), rrv = cast(ch.running_var, DType::F64);
      const Tensor x64 = cast(x, DType::F64), gamma64 = cast(ch.gamma, DType::F64);
      batchnorm_forward_train(ref, ry, rmean, rinvstd, rrm, rrv, x64, gamma64,
                              cast(ch.beta, DType::F64), p);

      // the backend under test, in both layouts
      for (Layout L : {Layout::NCHW, Layout::NHWC}) {
        INFO(layout_name(L));
        const Tensor gx = to_case(c, to_layout(x, L)), ggamma = to_case(c, ch.gamma);
        Tensor gy = poisoned(c, s, c.dtype, L), gmean = poisoned(c, cs), ginvstd = poisoned(c, cs);
        Tensor grm = to_case(c, ch.running_mean), grv = to_case(c, ch.running_var);
        batchnorm_forward_train(c.backend, gy, gmean, ginvstd, grm, grv, gx, ggamma,
                                to_case(c, ch.beta), p);
        Tensor gdx = poisoned(c, s, c.dtype, L), gdg = to_case(c, dgamma0),
               gdb = to_case(c, dbeta0);
        batchnorm_backward_train(c.backend, gdx, gdg, gdb, to_case(c, to_layout(dy, L)), gx, ggamma,
                                 gmean, ginvstd, p);

        // The float64 backward from the same inputs: dy, x, gamma and the statistics the backend
        // saved (compared with the float64 ones above). Not from the float64 statistics: dgamma =
        // invstd sum dy (x - mean) moves by (mean error) invstd sum dy, and the float32 mean of a
        // channel whose |mean| is 10 std is off by several ulps of |mean| (a float32 sum; 4e-6 at
        // mean 5 on the CPU), which makes that term as large as the bound below.
        Tensor rdx = Tensor::empty(s, DType::F64), rdg = cast(dgamma0, DType::F64),
               rdb = cast(dbeta0, DType::F64);
        batchnorm_backward_train(ref, rdx, rdg, rdb, cast(dy, DType::F64), x64, gamma64,
                                 cast(gmean, DType::F64), cast(ginvstd, DType::F64), p);

        // y = gamma (x - mean) invstd + beta inherits the float32 mean's error (up to ~1e-6 |mean|,
        // see above) times gamma (<= 1.5) invstd: 1.2e-5 at mean 5, std 0.5 (seen, seed 1948087),
        // hence that term, doubled, on top of the rounding bound.
        // cuda-vendor: cuDNN's variance may be off by up to cudnn_var_rel_bound (above); invstd by
        // half that, and y = gamma (x - mean) invstd + beta by that relative error of invstd times
        // |y - beta| <= |y| + 1 (|beta| <= 1). Other backends: 1e-5 (see the top of the file).
        const bool vendor = c.backend == Backend::CudaVendor;
        const double var_rtol =
            vendor ? std::max(1e-5, cudnn_var_rel_bound(M, k.mean, k.std)) : 1e-5;
        const double inv_rtol =
            vendor ? std::max(1e-5, cudnn_invstd_rel_bound(M, k.mean, k.std)) : 1e-5;
        const double y_extra = vendor ? cudnn_invstd_rel_bound(M, k.mean, k.std) : 0.0;
        const double y_atol = 1e-5 + 2 * 1.5e-6 * std::abs(k.mean) / k.std + y_extra;
        expect_close("y", gy, ry, y_atol, 1e-5 + y_extra, 1e-5 + y_extra);
        expect_close("save_mean", gmean, rmean, 1e-6, 1e-5, 1e-5);
        expect_close("save_invstd", ginvstd, rinvstd, 1e-7, inv_rtol, inv_rtol);
        expect_close("running_mean", grm, rrm, 1e-6, 1e-5, 1e-5);
        expect_close("running_var (unbiased)", grv, rrv, 1e-7, var_rtol, var_rtol);
        expect_close("dx", gdx, rdx, 1e-5, 1e-5, 1e-5);
        expect_close("dgamma", gdg, rdg, 1e-5 * std::sqrt(M), 1e-5, 1e-5);
        expect_close("dbeta", gdb, rdb, 1e-5 * std::sqrt(M), 1e-5, 1e-5);
      }
    }
  }
}

TEST_CASE("batchnorm eval mode on every backend matches float64", "[ops][batchnorm][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const BatchNormParams p{};
  for (const BackendCase& c : backend_cases(batchnorm_op())) {
    for (const BnCase& k : kCases) {
      const Shape& s = k.s;
      INFO("shape " << s << ", x mean " << k.mean << " std " << k.std << ", " << c.name());
      const Shape cs{s[1]};
      const Tensor x = normal_f32(s, g, k.mean, k.std), dy = normal_f32(s, g, 0.0, 1.0);
      const Channels ch(s[1], g);
      const Tensor dgamma0 = uniform_tensor(cs, g, -1, 1, DType::F32);
      const Tensor dbeta0 = uniform_tensor(cs, g, -1, 1, DType::F32);
      // running_var >= 0.5, so invstd <= 1.42: the file's bounds as derived (k = 1).
      for (Layout L : {Layout::NCHW, Layout::NHWC}) {
        INFO(layout_name(L));
        check_eval(c, L, x, dy, ch, dgamma0, dbeta0, p, 1.0);
      }
    }
  }
}

TEST_CASE("batchnorm with running_var or batch variance near 0 on every backend matches float64",
          "[ops][batchnorm][sanitize]") {
  // A channel that was constant in training has running_var ~ 0: there eps alone keeps 1/sqrt(var
  // + eps) finite (316 for var = 0, eps = 1e-5), and a kernel that dropped eps or added it twice
  // would be off by a factor ~1.4 or more (inf at var = 0). The other tests' running_var of 0.5 to
  // 2 hide such an error inside the tolerance. The same in train mode, where a constant channel
  // has batch variance 0. Shapes: float4 path and scalar (odd HW) path.
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const BatchNormParams p{};
  const Backend ref = Backend::CpuReference;
  // invstd <= 1/sqrt(eps) = 316 here; y, dx and dgamma are proportional to it, and so is their
  // float32 rounding (float32 eps = 1e-5 is itself within 3e-8 relative of the float64 one).
  const double k = 1 / std::sqrt(p.eps);
  for (const Shape& s : {Shape{3, 6, 8, 8}, Shape{5, 6, 7, 9}}) {
    const int64_t C = s[1];
    const Shape cs{C};
    const Tensor x = normal_f32(s, g, 0.5, 2.0), dy = normal_f32(s, g, 0.0, 1.0);
    Channels ch(C, g);
    ch.running_var = Tensor::from_vector<float>({0.f, 1e-7f, 1e-6f, 5e-6f, 1e-5f, 3e-5f}, cs);
    const Tensor dgamma0 = uniform_tensor(cs, g, -1, 1, DType::F32);
    const Tensor dbeta0 = uniform_tensor(cs, g, -1, 1, DType::F32);
    const Tensor gamma64 = cast(ch.gamma, DType::F64);
    for (const BackendCase& c : backend_cases(batchnorm_op())) {
      INFO("shape " << s << ", " << c.name());
      check_eval(c, Layout::NHWC, x, dy, ch, dgamma0, dbeta0, p, k);
      check_eval(c, Layout::NCHW, x, dy, ch, dgamma0, dbeta0, p, k);

      // Train mode on the same x with channels 0 and 3 constant (0.75, exact): batch variance 0,
      // so invstd = 1/sqrt(eps) in every backend (a constant's float mean is exact), y = beta and
      // dx = gamma invstd (dy - mean dy): the same bounds scaled by k.
      std::vector<float> xc = x.to_vector<float>();
      const int64_t HW = s[2] * s[3];
      for (int64_t n = 0; n < s[0]; ++n)
        for (int64_t c0 : {0, 3}) std::fill_n(xc.begin() + (n * C + c0) * HW, HW, 0.75f);
      const Tensor xt = Tensor::from_vector(xc, s), xt64 = cast(xt, DType::F64);
      Tensor rty = Tensor::empty(s, DType::F64), rtm = Tensor::empty(cs, DType::F64),
             rti = Tensor::empty(cs, DType::F64);
      Tensor rrm = cast(ch.running_mean, DType::F64), rrv = cast(ch.running_var, DType::F64);
      batchnorm_forward_train(ref, rty, rtm, rti, rrm, rrv, xt64, gamma64,
                              cast(ch.beta, DType::F64), p);
      for (Layout L : {Layout::NCHW, Layout::NHWC}) {
        INFO(layout_name(L));
        Tensor ty = poisoned(c, s, c.dtype, L), tm = poisoned(c, cs), ti = poisoned(c, cs);
        Tensor trm = to_case(c, ch.running_mean), trv = to_case(c, ch.running_var);
        const Tensor gxt = to_case(c, to_layout(xt, L)), ggamma = to_case(c, ch.gamma);
        batchnorm_forward_train(c.backend, ty, tm, ti, trm, trv, gxt, ggamma, to_case(c, ch.beta),
                                p);
        Tensor tdx = poisoned(c, s, c.dtype, L), tdg = to_case(c, dgamma0),
               tdb = to_case(c, dbeta0);
        batchnorm_backward_train(c.backend, tdx, tdg, tdb, to_case(c, to_layout(dy, L)), gxt,
                                 ggamma, tm, ti, p);
        Tensor rtdx = Tensor::empty(s, DType::F64), rtdg = cast(dgamma0, DType::F64),
               rtdb = cast(dbeta0, DType::F64);
        batchnorm_backward_train(ref, rtdx, rtdg, rtdb, cast(dy, DType::F64), xt64, gamma64,
                                 cast(tm, DType::F64), cast(ti, DType::F64), p);
        // On the constant channels y = beta comes out of x scale + (beta - mean scale) (the CPU's
        // form) with scale ~ 316: rounded at 237's scale (1.5e-5 absolute) on values ~1, so both
        // the absolute and the relative L2 bound scale with k there (seen: 1.6e-5 relative L2,
        // seed 12358611481226476127).
        expect_close("train y", ty, rty, 1e-5 * k, 1e-5, 1e-5 * k);
        expect_close("train save_invstd", ti, rti, 1e-7, 1e-5, 1e-5);
        expect_close("train dx", tdx, rtdx, 1e-5 * k, 1e-5, 1e-5);
      }
    }
  }
}

TEST_CASE("BatchNorm2d on every backend: running statistics and num_batches_tracked on the device",
          "[ops][batchnorm][layers]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Shape s{3, 5, 7, 9};
  for (const BackendCase& c : backend_cases(batchnorm_op())) {
    INFO(c.name());
    // The layer selects its backend from the device's settings, as in a training run.
    ScopedDeviceSettings settings(settings_selecting(c.backend));
    BatchNorm2d ref(BatchNorm2dConfig{5, 0.1, 1e-5, DType::F64});
    BatchNorm2d layer(BatchNorm2dConfig{5, 0.1, 1e-5, c.dtype});
    layer.to(c.device);
    for (int step = 0; step < 2; ++step) {
      const Tensor x = normal_f32(s, g, 1.0, 3.0);
      ref.forward(cast(x, DType::F64), Mode::Train);
      layer.forward(to_case(c, x), Mode::Train);
    }
    // Two momentum steps from (0, 1): float32 rounding only, as in the op tests.
    expect_close("running_mean", layer.running_mean(), ref.running_mean(), 1e-6, 1e-5, 1e-5);
    expect_close("running_var", layer.running_var(), ref.running_var(), 1e-7, 1e-5, 1e-5);
    int found = 0;
    for (auto& nb : layer.named_buffers())
      if (nb.name == "num_batches_tracked") {
        ++found;
        CHECK(nb.tensor->device() == c.device);
        CHECK(nb.tensor->item<int32_t>() == 2);
      }
    CHECK(found == 1);
    // An eval forward leaves the counter alone.
    layer.forward(to_case(c, normal_f32(s, g, 0, 1)), Mode::Eval);
    for (auto& nb : layer.named_buffers())
      if (nb.name == "num_batches_tracked") CHECK(nb.tensor->item<int32_t>() == 2);
  }
}

TEST_CASE("batchnorm refuses activations of mixed layouts", "[ops][batchnorm]") {
  // x, y, dy and dx are paired element by element in x's layout: an operand in the other layout
  // is an error naming the op and both tensors.
  const Shape s{2, 3, 4, 5}, cs{3};
  const Tensor x = Tensor::zeros(s, DType::F32, Device::cpu(), Layout::NHWC);
  const Tensor gamma = Tensor::full(cs, 1.0), beta = Tensor::zeros(cs);
  Tensor mean = Tensor::zeros(cs), invstd = Tensor::zeros(cs);
  Tensor rm = Tensor::zeros(cs), rv = Tensor::full(cs, 1.0);
  Tensor y_nchw = Tensor::empty(s);
  CHECK_THROWS_WITH(
      batchnorm_forward_train(y_nchw, mean, invstd, rm, rv, x, gamma, beta, BatchNormParams{}),
      Catch::Contains("batchnorm_forward_train") && Catch::Contains("layouts differ") &&
          Catch::Contains("channels_last"));
  CHECK_THROWS_WITH(batchnorm_forward_eval(y_nchw, x, gamma, beta, rm, rv, BatchNormParams{}),
                    Catch::Contains("batchnorm_forward_eval") && Catch::Contains("layouts differ"));
  Tensor dx = Tensor::empty(s, DType::F32, Device::cpu(), Layout::NHWC);
  Tensor dg = Tensor::zeros(cs), db = Tensor::zeros(cs);
  const Tensor dy_nchw = Tensor::zeros(s);
  CHECK_THROWS_WITH(
      batchnorm_backward_train(dx, dg, db, dy_nchw, x, gamma, mean, invstd, BatchNormParams{}),
      Catch::Contains("batchnorm_backward_train") && Catch::Contains("layouts differ"));
  CHECK_THROWS_WITH(
      batchnorm_backward_eval(dx, dg, db, dy_nchw, x, gamma, rm, rv, BatchNormParams{}),
      Catch::Contains("batchnorm_backward_eval") && Catch::Contains("layouts differ"));
}

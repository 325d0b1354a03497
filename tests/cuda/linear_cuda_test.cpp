// CUDA linear layer math on every kernel path against the CPU float64 result of the same float32
// inputs.
#include <catch2/catch.hpp>
#include <cmath>
#include <tuple>
#include <vector>

#include "../support/cuda_paths.h"
#include "../support/test_util.h"
#include "kernels/linear.h"
#include "layers/linear.h"

using namespace minidl;
using namespace minidl::test;

namespace {

const Device kGpu = Device::cuda(0);

double rms(const Tensor& t) {
  double s = 0;
  const auto v = to_doubles(t);
  for (double x : v) s += x * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// Outputs are float32 sums of at most max(in, out, N) <= 4096 products of values in [-1, 1]:
// rounding grows like sqrt(terms) 2^-24 relative (~4e-6), so the relative L2 error stays below
// 1e-5; elementwise, atol 1e-4 of the RMS covers values that cancel to near zero.
void expect_close(const char* what, const Tensor& out, const Tensor& ref) {
  const Comparison cmp = compare(out, ref, 1e-4 * rms(ref), 1e-4);
  INFO(what << ": " << cmp.report);
  CHECK(cmp.ok);
  CHECK(cmp.rel_l2_error < 1e-5);
}

}  // namespace

TEST_CASE("CUDA linear forward and backward match the CPU on every path", "[cuda][linear][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  struct Case {
    int64_t N, in, out;
  };
  // The classifier shapes (512 -> 10, 4096 -> 10 for AlexNet's 256*4*4), one sample, and sizes that
  // are not multiples of the GEMM tile.
  const std::vector<Case> cases = {{3, 512, 10}, {1, 17, 33}, {130, 300, 257}, {64, 4096, 10}};
  for (KernelPath path : cuda_paths())
    for (const Case& c : cases)
      for (bool with_bias : {true, false}) {
        INFO(kernel_path_name(path)
             << " N=" << c.N << " in=" << c.in << " out=" << c.out << " bias=" << with_bias);
        const Tensor x = uniform_tensor(Shape{c.N, c.in}, g, -1, 1, DType::F32);
        const Tensor w = uniform_tensor(Shape{c.out, c.in}, g, -1, 1, DType::F32);
        const Tensor b = uniform_tensor(Shape{c.out}, g, -1, 1, DType::F32);
        const Tensor dy = uniform_tensor(Shape{c.N, c.out}, g, -1, 1, DType::F32);
        const Tensor dw0 = uniform_tensor(w.shape(), g, -1, 1, DType::F32);
        const Tensor db0 = uniform_tensor(b.shape(), g, -1, 1, DType::F32);

        const Tensor x64 = cast(x, DType::F64), w64 = cast(w, DType::F64),
                     b64 = cast(b, DType::F64);
        const Tensor dy64 = cast(dy, DType::F64);
        Tensor y_ref = Tensor::empty(Shape{c.N, c.out}, DType::F64);
        Tensor dx_ref = Tensor::empty(x.shape(), DType::F64);
        Tensor dw_ref = cast(dw0, DType::F64), db_ref = cast(db0, DType::F64);
        linear_forward(y_ref, x64, w64, with_bias ? &b64 : nullptr);
        linear_backward(&dx_ref, dw_ref, with_bias ? &db_ref : nullptr, dy64, x64, w64);

        const Tensor xd = x.to(kGpu), wd = w.to(kGpu), bd = b.to(kGpu), dyd = dy.to(kGpu);
        Tensor y = Tensor::empty(Shape{c.N, c.out}, DType::F32, kGpu);
        Tensor dx = Tensor::empty(x.shape(), DType::F32, kGpu);
        poison(y);
        poison(dx);
        Tensor dw = dw0.to(kGpu), db = db0.to(kGpu);
        linear_forward(y, xd, wd, with_bias ? &bd : nullptr, path);
        linear_backward(&dx, dw, with_bias ? &db : nullptr, dyd, xd, wd, path);
        expect_close("y", y, y_ref);
        expect_close("dx", dx, dx_ref);
        expect_close("dw (accumulated)", dw, dw_ref);
        if (with_bias) expect_close("db (accumulated)", db, db_ref);

        // Without dx only the parameter gradients move: a second accumulation doubles the step.
        linear_backward(nullptr, dw, nullptr, dyd, xd, wd, path);
        Tensor dw_twice = dw_ref.clone();
        linear_backward(nullptr, dw_twice, nullptr, dy64, x64, w64);
        expect_close("dw (accumulated twice, no dx)", dw, dw_twice);
      }
}

TEST_CASE("CUDA Linear layer flattens 4-D input like the CPU layer", "[cuda][linear]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  LinearConfig cfg;
  cfg.in_features = 12;
  cfg.out_features = 5;
  for (KernelPath path : cuda_paths()) {
    INFO(kernel_path_name(path));
    Generator init(seed), init2(seed);
    Linear cpu(cfg, init), gpu(cfg, init2);  // same initial weights
    gpu.to(kGpu);
    gpu.set_kernel_path(path);
    const Tensor x = uniform_tensor(Shape{3, 3, 2, 2}, g, -1, 1, DType::F32);
    const Tensor dy = uniform_tensor(Shape{3, 5}, g, -1, 1, DType::F32);
    cpu.zero_grad();
    gpu.zero_grad();
    const Tensor y_cpu = cpu.forward(x, Mode::Train), y_gpu = gpu.forward(x.to(kGpu), Mode::Train);
    const Tensor dx_cpu = cpu.backward(dy), dx_gpu = gpu.backward(dy.to(kGpu));
    CHECK(dx_gpu.shape() == x.shape());
    // float32 on both sides, sums of at most 12 terms of size <= 1 added in different orders: they
    // differ by ~1e-6 at most, so 1e-4 leaves a wide margin while a wrong index gives errors ~1.
    for (auto [name, a, b] : {std::tuple{"y", y_gpu, y_cpu}, std::tuple{"dx", dx_gpu, dx_cpu},
                              std::tuple{"dw", gpu.weight().grad, cpu.weight().grad},
                              std::tuple{"db", gpu.bias()->grad, cpu.bias()->grad}}) {
      const Comparison cmp = compare(a, b, 1e-4, 1e-4);
      INFO(name << ": " << cmp.report);
      CHECK(cmp.ok);
    }
  }
}

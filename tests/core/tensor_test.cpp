#include <catch2/catch.hpp>

#include "core/allocator.h"
#include "core/init.h"
#include "core/tensor.h"
#include "../support/test_util.h"

using namespace minidl;

TEST_CASE("tensor: shape, dtype, views and copies", "[tensor]") {
  Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  CHECK(t.numel() == 6);
  CHECK(t.dim() == 2);
  CHECK(t.size(1) == 3);
  CHECK(t.dtype() == DType::F32);
  CHECK(t.device() == Device::cpu());
  CHECK(t.describe() == "float32 cpu (2, 3)");

  Tensor v = t.view(Shape{3, 2});
  v.data<float>()[0] = 10;  // views share memory
  CHECK(t.data<float>()[0] == 10);

  Tensor row = t.slice(1, 2);
  CHECK(row.shape() == Shape{1, 3});
  CHECK(row.to_vector<float>() == std::vector<float>{4, 5, 6});

  Tensor c = t.clone();
  c.data<float>()[1] = -1;  // clones do not
  CHECK(t.data<float>()[1] == 2);

  Tensor z = Tensor::zeros(Shape{4}, DType::I32);
  CHECK(z.to_vector<int32_t>() == std::vector<int32_t>{0, 0, 0, 0});
  Tensor f = Tensor::full(Shape{2}, 2.5, DType::F64);
  CHECK(f.to_vector<double>() == std::vector<double>{2.5, 2.5});
}

TEST_CASE("tensor: misuse is reported with the shapes and dtypes", "[tensor][errors]") {
  Tensor t = Tensor::zeros(Shape{2, 3});
  REQUIRE_THROWS_WITH(t.view(Shape{4, 2}), Catch::Contains("(2, 3)") && Catch::Contains("(4, 2)"));
  REQUIRE_THROWS_WITH(t.data<double>(), Catch::Contains("float32") && Catch::Contains("float64"));
  REQUIRE_THROWS_WITH(t.slice(1, 3), Catch::Contains("out of range"));
  REQUIRE_THROWS_AS(Shape({1, 2, 3, 4, 5}), Error);
  REQUIRE_THROWS_WITH(Device::parse("gpu"), Catch::Contains("expected cpu, cuda or cuda:N"));
}

TEST_CASE("device: a CUDA device on a machine without one gives a clear message", "[device]") {
  if (cuda_available()) {
    WARN("a CUDA device is present; the no-device message is not exercised here");
    return;
  }
  REQUIRE_THROWS_WITH(Tensor::empty(Shape{2}, DType::F32, Device::cuda(0)),
                      Catch::StartsWith("no CUDA device"));
  CHECK(cuda_device_summary().rfind("no CUDA device", 0) == 0);
}

TEST_CASE("allocator: statistics follow allocations", "[allocator]") {
  const MemoryStats before = memory_stats(Device::cpu());
  {
    Tensor t = Tensor::empty(Shape{1024}, DType::F64);
    const MemoryStats during = memory_stats(Device::cpu());
    CHECK(during.in_use >= before.in_use + 8192);
    CHECK(during.peak_in_use >= during.in_use);
  }
  CHECK(memory_stats(Device::cpu()).in_use == before.in_use);
  CHECK(memory_report(Device::cpu()).find("peak") != std::string::npos);
}

TEST_CASE("rng: same seed gives the same numbers and parallel draws match sequential ones", "[rng]") {
  Generator a(42), b(42), c(43);
  for (int i = 0; i < 10; ++i) {
    const uint32_t x = a.next_u32();
    CHECK(x == b.next_u32());
  }
  CHECK(Generator(42).next_u32() != c.next_u32());
  // Word i of a reserved range is philox_word(seed, start + i), as a CUDA kernel computes it.
  Generator d(7);
  d.next_u32();
  const uint64_t start = d.reserve(10);
  CHECK(start % 4 == 0);
  Generator e(7);
  e.set_state(7, start);
  for (uint64_t i = 0; i < 10; ++i) CHECK(e.next_u32() == philox_word(7, start + i));
  // Uniform draws are in [0, 1) with mean near 1/2.
  double sum = 0;
  for (int i = 0; i < 20000; ++i) {
    const double u = a.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
  }
  CHECK(sum / 20000 == Approx(0.5).margin(0.01));
}

TEST_CASE("init: PyTorch's bounds and standard deviations", "[init]") {
  Generator g(1);
  // nn.Conv2d(16, 32, 3) default: U(-1/sqrt(144), 1/sqrt(144)).
  Tensor w = Tensor::empty(Shape{32, 16, 3, 3});
  Tensor b = Tensor::empty(Shape{32});
  init::pytorch_default(w, &b, g);
  const double bound = 1.0 / 12.0;
  double maxabs = 0;
  for (float v : w.to_vector<float>()) maxabs = std::max(maxabs, std::fabs(double(v)));
  CHECK(maxabs <= bound);
  CHECK(maxabs > 0.95 * bound);
  // kaiming_normal(fan_out, relu): std = sqrt(2 / (32 * 9)).
  Tensor w2 = Tensor::empty(Shape{64, 32, 3, 3}, DType::F64);
  init::kaiming_normal(w2, g, 0.0, init::FanMode::FanOut, "relu");
  double s2 = 0;
  for (double v : w2.to_vector<double>()) s2 += v * v;
  CHECK(std::sqrt(s2 / w2.numel()) == Approx(std::sqrt(2.0 / (64 * 9))).epsilon(0.03));
  CHECK(init::calculate_gain("leaky_relu", std::sqrt(5.0)) == Approx(std::sqrt(1.0 / 3.0)));
  REQUIRE_THROWS_WITH(init::calculate_gain("swish"), Catch::Contains("swish"));
}

TEST_CASE("tensor layouts: NHWC is a 4-D label that views, copies and elementwise checks respect",
          "[core][layout]") {
  const Shape s{2, 3, 4, 5};
  Tensor x = Tensor::zeros(s, DType::F32, Device::cpu(), Layout::NHWC);
  CHECK(x.layout() == Layout::NHWC);
  CHECK(x.describe() == "float32 cpu (2, 3, 4, 5) channels_last");
  CHECK(x.clone().layout() == Layout::NHWC);
  CHECK(x.slice(1, 2).layout() == Layout::NHWC);  // the batch is outermost in both layouts
  // Only 4-D tensors have a channels-last form.
  CHECK_THROWS_WITH(Tensor::empty(Shape{6, 5}, DType::F32, Device::cpu(), Layout::NHWC),
                    Catch::Contains("needs a 4-D"));
  // A reshape would read channels-last memory as NCHW: refused, naming the fix.
  CHECK_THROWS_WITH(x.view(Shape{2, 60}), Catch::Contains("channels-last") &&
                                               Catch::Contains("convert it to NCHW"));
  // ... unless the memory orders coincide: (N, C, 1, 1) as a global pool leaves it.
  Tensor pooled = Tensor::zeros(Shape{2, 3, 1, 1}, DType::F32, Device::cpu(), Layout::NHWC);
  CHECK(pooled.view(Shape{2, 3}).layout() == Layout::NCHW);
  CHECK(pooled.relabel(Layout::NCHW).layout() == Layout::NCHW);
  CHECK_THROWS_WITH(x.relabel(Layout::NCHW), Catch::Contains("memory order differs"));
  // copy_ and the elementwise checks refuse mixed layouts (they pair elements by offset).
  Tensor y = Tensor::zeros(s, DType::F32);
  CHECK_THROWS_WITH(y.copy_(x), Catch::Contains("different layouts"));
  CHECK_THROWS_WITH(check_same_shape(x, y, "add"),
                    Catch::Contains("add: layouts differ") && Catch::Contains("channels_last"));
  CHECK_NOTHROW(check_same_shape(pooled, Tensor::zeros(Shape{2, 3, 1, 1}), "add"));
  // ensure_tensor reallocates when only the layout differs.
  Tensor z = Tensor::zeros(s);
  CHECK(ensure_tensor(z, s, DType::F32, Device::cpu(), Layout::NHWC));
  CHECK(z.layout() == Layout::NHWC);
  CHECK_FALSE(ensure_tensor(z, s, DType::F32, Device::cpu(), Layout::NHWC));
}

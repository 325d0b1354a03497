// Core CUDA plumbing: copies in every direction, views on the device, zero/fill, the caching
// allocator (no cudaMalloc once warm), per-device contexts, and clear errors.
#include <catch2/catch.hpp>

#include "core/allocator.h"
#include "core/cuda_context.h"
#include "core/tensor.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("cuda tensor: host-device round trips are exact", "[cuda][tensor][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor h = uniform_tensor(Shape{3, 5, 7, 9}, g, -1, 1, DType::F32);
  const Tensor d = h.to(Device::cuda(0));
  CHECK(d.device() == Device::cuda(0));
  const Tensor d2 = d.clone();  // device -> device
  const Tensor back = d2.to(Device::cpu());
  CHECK(back.to_vector<float>() == h.to_vector<float>());

  // Views and slices share device memory.
  Tensor rows = d.slice(1, 2);
  CHECK(rows.to_vector<float>() == h.slice(1, 2).to_vector<float>());
  Tensor z = Tensor::empty(Shape{1000003}, DType::F32, Device::cuda(0));
  poison(z);
  z.zero_();
  for (float v : z.to_vector<float>()) REQUIRE(v == 0.0f);
  z.fill_(2.5);
  for (float v : z.to_vector<float>()) REQUIRE(v == 2.5f);
  Tensor i = Tensor::full(Shape{17}, 7, DType::I32, Device::cuda(0));
  CHECK(i.to_vector<int32_t>() == std::vector<int32_t>(17, 7));
}

TEST_CASE("cuda allocator: a warm loop makes no system allocations", "[cuda][allocator]") {
  const Device d = Device::cuda(0);
  auto step = [&] {
    Tensor a = Tensor::empty(Shape{128, 64, 32, 32}, DType::F32, d);
    Tensor b = Tensor::empty(Shape{1000}, DType::F32, d);
    Tensor c = Tensor::empty(Shape{3, 3}, DType::I32, d);
  };
  step();
  const MemoryStats warm = memory_stats(d);
  for (int i = 0; i < 10; ++i) step();
  const MemoryStats after = memory_stats(d);
  CHECK(after.system_allocations == warm.system_allocations);
  CHECK(after.allocations == warm.allocations + 30);
  CHECK(after.peak_in_use >= size_t(128) * 64 * 32 * 32 * 4);
  INFO(memory_report(d));
  CHECK(memory_report(d).find("cuda:0") != std::string::npos);
}

TEST_CASE("cuda: contexts are per device and errors name the device", "[cuda][device]") {
  CudaContext& c = cuda_context(0);
  CHECK(c.stream != nullptr);
  CHECK(c.cublas != nullptr);
  CHECK(c.cudnn != nullptr);
  CHECK(&cuda_context(0) == &c);
  const int n = cuda_device_count();
  REQUIRE_THROWS_WITH(Tensor::empty(Shape{1}, DType::F32, Device::cuda(n)),
                      Catch::Contains("cuda:" + std::to_string(n)));
  CHECK(cuda_device_summary().find("cuDNN") != std::string::npos);
}

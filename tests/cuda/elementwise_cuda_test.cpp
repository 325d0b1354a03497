// CUDA add / add_scaled against the float64 CPU reference on the same float32 inputs. One CUDA
// implementation serves every KernelPath (there is no cuDNN/cuBLAS variant of these ops).
#include <catch2/catch.hpp>

#include "kernels/elementwise.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {
const Device kGpu = Device::cuda(0);
}  // namespace

TEST_CASE("cuda add_scaled matches the float64 reference", "[cuda][elementwise][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  for (int64_t n : {1, 7, 1000003}) {
    for (double alpha : {1.0, -0.5, 3.7}) {
      INFO("n " << n << " alpha " << alpha);
      const Tensor a = uniform_tensor(Shape{n}, g, -1, 1, DType::F32);
      const Tensor b = uniform_tensor(Shape{n}, g, -1, 1, DType::F32);
      Tensor ref = Tensor::empty(Shape{n}, DType::F64);
      add_scaled(ref, cast(a, DType::F64), cast(b, DType::F64), alpha);
      Tensor out = Tensor::empty(Shape{n}, DType::F32, kGpu);
      poison(out);
      add_scaled(out, a.to(kGpu), b.to(kGpu), alpha);
      // float32 rounds alpha, alpha * b and the sum (or the fused a + alpha b once): each error
      // is at most half an ulp of a value below |a| + |alpha b| <= 4.7, i.e. under 3e-7 each.
      // 1e-6 absolute covers them; a relative bound would fail where a + alpha b cancels.
      Comparison c = compare(out, ref, 1e-6, 0.0);
      INFO(c.report);
      CHECK(c.ok);
    }
  }
}

TEST_CASE("cuda add: out may alias an input", "[cuda][elementwise]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor a = uniform_tensor(Shape{3, 4, 5}, g, -1, 1, DType::F32);
  const Tensor b = uniform_tensor(Shape{3, 4, 5}, g, -1, 1, DType::F32);
  Tensor ref = Tensor::empty(a.shape(), DType::F32);
  add(ref, a, b);
  // a + b is one correctly rounded float32 addition on both sides: equal bit for bit.
  Tensor da = a.to(kGpu), db = b.to(kGpu);
  add(da, da, db);  // a += b
  CHECK(da.to_vector<float>() == ref.to_vector<float>());
  Tensor db2 = b.to(kGpu);
  add(db2, a.to(kGpu), db2);  // b = a + b
  CHECK(db2.to_vector<float>() == ref.to_vector<float>());
}

#include <catch2/catch.hpp>

#include "kernels/elementwise.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("add and add_scaled by hand", "[elementwise]") {
  for (DType dt : {DType::F64, DType::F32}) {
    INFO(dtype_name(dt));
    const Tensor a = cast(Tensor::from_vector<double>({1, -2, 0.5, 4}, Shape{2, 2}), dt);
    const Tensor b = cast(Tensor::from_vector<double>({3, 2, -0.25, 0}, Shape{2, 2}), dt);
    Tensor out = Tensor::empty(a.shape(), dt);
    poison(out);
    add(out, a, b);
    // Every value here is a small dyadic rational: the sums are exact in float32 and float64.
    CHECK(to_doubles(out) == std::vector<double>{4, 0, 0.25, 4});
    poison(out);
    add_scaled(out, a, b, -0.5);
    CHECK(to_doubles(out) == std::vector<double>{-0.5, -3, 0.625, 4});
  }
}

TEST_CASE("add: out may alias an input", "[elementwise]") {
  const Tensor b = Tensor::from_vector<double>({1, 2, 3}, Shape{3});
  Tensor a = Tensor::from_vector<double>({10, 20, 30}, Shape{3});
  add(a, a, b);  // a += b
  CHECK(a.to_vector<double>() == std::vector<double>{11, 22, 33});
  Tensor c = Tensor::from_vector<double>({1, 1, 1}, Shape{3});
  add_scaled(c, a, c, 2.0);  // c = a + 2 c
  CHECK(c.to_vector<double>() == std::vector<double>{13, 24, 35});
}

TEST_CASE("add: mismatched inputs name the op and the shapes", "[elementwise][errors]") {
  Tensor out = Tensor::empty(Shape{2, 3}, DType::F64);
  const Tensor a = Tensor::zeros(Shape{2, 3}, DType::F64);
  REQUIRE_THROWS_WITH(add(out, a, Tensor::zeros(Shape{3, 2}, DType::F64)),
                      Catch::Contains("add_scaled") && Catch::Contains("(2, 3)") &&
                          Catch::Contains("(3, 2)"));
  REQUIRE_THROWS_WITH(add(out, a, Tensor::zeros(Shape{2, 3}, DType::F32)),
                      Catch::Contains("add_scaled") && Catch::Contains("float32") &&
                          Catch::Contains("float64"));
  Tensor small = Tensor::empty(Shape{6}, DType::F64);
  REQUIRE_THROWS_WITH(add(small, a, a), Catch::Contains("(6,)") && Catch::Contains("(2, 3)"));
}

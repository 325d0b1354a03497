// Pooling ops on the CPU: output shapes, forward values, argmax and backward computed by hand,
// and the argument checks. (Gradients against finite differences: tests/layers/pooling_test.cpp.)
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "kernels/pooling.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("pool2d output shape: floor mode", "[pooling]") {
  CHECK(pool2d_output_shape(Shape{2, 3, 32, 32}, {3, 2, 0}, "t") == Shape{2, 3, 15, 15});
  CHECK(pool2d_output_shape(Shape{2, 3, 32, 32}, {2, 2, 0}, "t") == Shape{2, 3, 16, 16});
  CHECK(pool2d_output_shape(Shape{1, 1, 7, 9}, {3, 2, 1}, "t") == Shape{1, 1, 4, 5});
  CHECK(pool2d_output_shape(Shape{1, 1, 5, 5}, {3, 1, 1}, "t") == Shape{1, 1, 5, 5});
  CHECK(pool2d_output_shape(Shape{1, 1, 3, 3}, {3, 2, 0}, "t") == Shape{1, 1, 1, 1});
}

TEST_CASE("pool2d output shape: errors name who and the shapes", "[pooling][errors]") {
  REQUIRE_THROWS_WITH(pool2d_output_shape(Shape{1, 3, 2, 2}, {3, 2, 0}, "MaxPool2d 'pool1'"),
                      Catch::Contains("MaxPool2d 'pool1'") && Catch::Contains("(1, 3, 2, 2)") &&
                          Catch::Contains("3x3"));
  REQUIRE_THROWS_WITH(pool2d_output_shape(Shape{1, 3, 8}, {2, 2, 0}, "AvgPool2d"),
                      Catch::Contains("AvgPool2d") && Catch::Contains("4-D") &&
                          Catch::Contains("(1, 3, 8)"));
  REQUIRE_THROWS_WITH(pool2d_output_shape(Shape{1, 3, 8, 8}, {2, 2, 2}, "AvgPool2d"),
                      Catch::Contains("padding 2") && Catch::Contains("half"));
  REQUIRE_THROWS_WITH(pool2d_output_shape(Shape{1, 3, 8, 8}, {2, 0, 0}, "MaxPool2d"),
                      Catch::Contains("s=0"));
}

TEST_CASE("maxpool forward and backward by hand: ties take the first maximum", "[pooling]") {
  // 3x3 plane, k=2 s=1: every window holds a tie of 5s.
  //   1 5 5
  //   5 2 0
  //   3 5 4
  const Tensor x = Tensor::from_vector<double>({1, 5, 5, 5, 2, 0, 3, 5, 4}, Shape{1, 1, 3, 3});
  Tensor y = Tensor::empty(Shape{1, 1, 2, 2}, DType::F64);
  Tensor argmax = Tensor::empty(Shape{1, 1, 2, 2}, DType::I32);
  poison(y);
  poison(argmax);
  maxpool2d_forward(y, argmax, x, {2, 1, 0});
  CHECK(y.to_vector<double>() == std::vector<double>{5, 5, 5, 5});
  // Windows in row-major order, first maximum: (0,1), (0,1), (1,0), (2,1).
  CHECK(argmax.to_vector<int32_t>() == std::vector<int32_t>{1, 1, 3, 7});

  // Overlapping windows: pixel 1 is the winner of two windows and receives both gradients.
  const Tensor dy = Tensor::from_vector<double>({1, 10, 100, 1000}, Shape{1, 1, 2, 2});
  Tensor dx = Tensor::empty(x.shape(), DType::F64);
  poison(dx);
  maxpool2d_backward(dx, dy, x, y, argmax, {2, 1, 0});
  CHECK(dx.to_vector<double>() == std::vector<double>{0, 11, 0, 100, 0, 0, 0, 1000, 0});
}

TEST_CASE("maxpool by hand: a NaN wins its window and stays", "[pooling]") {
  // 2x3 plane, k=2 s=1: the NaN at (0,1) comes after the window's first element and before a
  // larger value, so each rule order (NaN checked first, ties, a later larger value) is exercised.
  //   1 NaN 9
  //   2  3  4
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = Tensor::from_vector<double>({1, nan, 9, 2, 3, 4}, Shape{1, 1, 2, 3});
  Tensor y = Tensor::empty(Shape{1, 1, 1, 2}, DType::F64);
  Tensor argmax = Tensor::empty(Shape{1, 1, 1, 2}, DType::I32);
  poison(y);
  poison(argmax);
  maxpool2d_forward(y, argmax, x, {2, 1, 0});
  // Both windows hold the NaN: both outputs are NaN, both argmaxes point at it.
  CHECK(std::isnan(y.to_vector<double>()[0]));
  CHECK(std::isnan(y.to_vector<double>()[1]));
  CHECK(argmax.to_vector<int32_t>() == std::vector<int32_t>{1, 1});
}

TEST_CASE("maxpool forward by hand: padding is never selected", "[pooling]") {
  // All values negative, so a padded zero would win if padding were a candidate.
  const Tensor x =
      Tensor::from_vector<double>({-9, -8, -7, -6, -5, -4, -3, -2, -1}, Shape{1, 1, 3, 3});
  Tensor y = Tensor::empty(Shape{1, 1, 2, 2}, DType::F64);
  Tensor argmax = Tensor::empty(Shape{1, 1, 2, 2}, DType::I32);
  poison(y);
  maxpool2d_forward(y, argmax, x, {3, 2, 1});
  CHECK(y.to_vector<double>() == std::vector<double>{-5, -4, -2, -1});
  CHECK(argmax.to_vector<int32_t>() == std::vector<int32_t>{4, 5, 7, 8});
}

TEST_CASE("avgpool forward and backward by hand: padding counts (count_include_pad)", "[pooling]") {
  //   1 2 3
  //   4 5 6     k=3 s=2 p=1: four windows, each holding 4 real pixels and 5 padded zeros,
  //   7 8 9     and each divided by 9.
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9}, Shape{1, 1, 3, 3});
  Tensor y = Tensor::empty(Shape{1, 1, 2, 2}, DType::F64);
  poison(y);
  avgpool2d_forward(y, x, {3, 2, 1});
  const auto out = y.to_vector<double>();
  CHECK(out[0] == Approx(12.0 / 9));
  CHECK(out[1] == Approx(16.0 / 9));
  CHECK(out[2] == Approx(24.0 / 9));
  CHECK(out[3] == Approx(28.0 / 9));

  // dy = 1 everywhere: each pixel gets (number of windows covering it) / 9.
  const Tensor dy = Tensor::full(Shape{1, 1, 2, 2}, 1.0, DType::F64);
  Tensor dx = Tensor::empty(x.shape(), DType::F64);
  poison(dx);
  avgpool2d_backward(dx, dy, {3, 2, 1});
  const std::vector<double> counts{1, 2, 1, 2, 4, 2, 1, 2, 1};
  const auto d = dx.to_vector<double>();
  for (int i = 0; i < 9; ++i) CHECK(d[i] == Approx(counts[i] / 9));
}

TEST_CASE("avgpool floor mode leaves the last row and column out", "[pooling]") {
  // 3x3, k=2 s=2: one window over the top-left 2x2; row 2 and column 2 get no gradient.
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8, 9}, Shape{1, 1, 3, 3});
  Tensor y = Tensor::empty(Shape{1, 1, 1, 1}, DType::F64);
  avgpool2d_forward(y, x, {2, 2, 0});
  CHECK(y.item<double>() == Approx(3.0));
  Tensor dx = Tensor::empty(x.shape(), DType::F64);
  poison(dx);
  avgpool2d_backward(dx, Tensor::full(Shape{1, 1, 1, 1}, 4.0, DType::F64), {2, 2, 0});
  CHECK(dx.to_vector<double>() == std::vector<double>{1, 1, 0, 1, 1, 0, 0, 0, 0});
}

TEST_CASE("global average pool by hand", "[pooling]") {
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 10, 20, 30, 40}, Shape{1, 2, 2, 2});
  Tensor y = Tensor::empty(Shape{1, 2, 1, 1}, DType::F64);
  poison(y);
  global_avgpool_forward(y, x);
  CHECK(y.to_vector<double>() == std::vector<double>{2.5, 25});
  Tensor dx = Tensor::empty(x.shape(), DType::F64);
  poison(dx);
  global_avgpool_backward(dx, Tensor::from_vector<double>({4, 8}, Shape{1, 2, 1, 1}));
  CHECK(dx.to_vector<double>() == std::vector<double>{1, 1, 1, 1, 2, 2, 2, 2});
}

TEST_CASE("pooling ops: wrong output shapes name the op and both shapes", "[pooling][errors]") {
  const Tensor x = Tensor::zeros(Shape{2, 3, 8, 8}, DType::F64);
  Tensor y = Tensor::zeros(Shape{2, 3, 3, 3}, DType::F64);
  Tensor argmax = Tensor::zeros(Shape{2, 3, 4, 4}, DType::I32);
  REQUIRE_THROWS_WITH(maxpool2d_forward(y, argmax, x, {2, 2, 0}),
                      Catch::Contains("maxpool2d_forward") && Catch::Contains("(2, 3, 3, 3)") &&
                          Catch::Contains("(2, 3, 4, 4)"));
  Tensor y4 = Tensor::zeros(Shape{2, 3, 4, 4}, DType::F64);
  Tensor bad_argmax = Tensor::zeros(Shape{2, 3, 4, 4}, DType::F64);
  REQUIRE_THROWS_WITH(maxpool2d_forward(y4, bad_argmax, x, {2, 2, 0}),
                      Catch::Contains("argmax") && Catch::Contains("int32"));
  Tensor x5 = Tensor::zeros(Shape{2, 3, 8, 8}, DType::F64);
  Tensor bad_gy = Tensor::zeros(Shape{2, 4, 1, 1}, DType::F64);
  REQUIRE_THROWS_WITH(global_avgpool_forward(bad_gy, x5),
                      Catch::Contains("global_avgpool_forward") && Catch::Contains("(2, 4, 1, 1)") &&
                          Catch::Contains("(2, 3, 1, 1)"));
}

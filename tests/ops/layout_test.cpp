// Channels-last (NHWC) tensors: the layout change of convert (kernels/convert.h) on every backend
// and dtype. The layout rules of core/tensor.h are tested in tests/core/tensor_test.cpp.
#include <catch2/catch.hpp>

#include <cstring>

#include "kernels/convert.h"
#include "tests/support/backends.h"
#include "tests/support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// The element (n, c, h, w) of a 4-D tensor's memory in `layout` (core/tensor.h's formulas),
// written out here independently of kernels/convert.cpp.
int64_t offset(Layout layout, const Shape& s, int64_t n, int64_t c, int64_t h, int64_t w) {
  const int64_t C = s[1], H = s[2], W = s[3];
  return layout == Layout::NCHW ? ((n * C + c) * H + h) * W + w : ((n * H + h) * W + w) * C + c;
}

}  // namespace

TEST_CASE("convert: NCHW <-> NHWC on every backend and dtype puts each element at its place",
          "[ops][convert][layout]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  // Awkward shapes: odd channel counts, H*W not a multiple of anything, one image, a 1x1 plane
  // (the layouts coincide), C = 1 (they coincide too), and one above the CUDA tests' 4 blocks x 256
  // threads (2 x 37 x 5 x 7 = 2590 elements) so the grid-stride loop runs several passes.
  const std::vector<Shape> shapes = {Shape{3, 5, 7, 3}, Shape{1, 2, 1, 9}, Shape{4, 6, 1, 1},
                                     Shape{2, 1, 3, 5}, Shape{2, 37, 5, 7}};
  std::vector<BackendCase> cases = low_precision_cases(convert_op());
  for (const BackendCase& c : backend_cases(convert_op(), true)) cases.push_back(c);
  for (const BackendCase& c : cases)
    for (DType from : convert_op().dtypes(c.backend))
      for (const Shape& s : shapes)
        for (Layout to : {Layout::NHWC, Layout::NCHW}) {
          const Layout from_layout = to == Layout::NHWC ? Layout::NCHW : Layout::NHWC;
          INFO(dtype_name(from) << " " << layout_name(from_layout) << " -> " << c.name() << " "
                                << layout_name(to) << " " << s);
          // The source: random values in `from`, whose memory is read in from_layout.
          const Tensor src = cast(uniform_tensor(s, g, -4.0, 4.0, DType::F32), from);
          Tensor src_l = Tensor::empty(s, from, Device::cpu(), from_layout);
          std::memcpy(src_l.raw_data(), src.raw_data(), src.nbytes());  // the same memory
          Tensor out = poisoned(c, s, c.dtype, to);
          convert(c.backend, out, src_l.to(c.device));
          REQUIRE(out.layout() == to);
          // Expected: each element converted on its own (the dtype test in low_precision_test.cpp
          // checks those bits) and moved by the offset formulas above.
          const Tensor flat_in = cast(src.view(Shape{s.numel()}), c.dtype);
          const Tensor got = out.to(Device::cpu());
          const size_t e = dtype_size(c.dtype);
          const char* in_bytes = static_cast<const char*>(flat_in.raw_data());
          const char* got_bytes = static_cast<const char*>(got.raw_data());
          int64_t wrong = 0;
          for (int64_t n = 0; n < s[0]; ++n)
            for (int64_t ch = 0; ch < s[1]; ++ch)
              for (int64_t h = 0; h < s[2]; ++h)
                for (int64_t w = 0; w < s[3]; ++w)
                  wrong += std::memcmp(got_bytes + offset(to, s, n, ch, h, w) * e,
                                       in_bytes + offset(from_layout, s, n, ch, h, w) * e, e) != 0;
          CHECK(wrong == 0);
          // The round trip gives the logical values back (to_doubles reads either layout).
          if (c.dtype == from) {
            Tensor back = poisoned(c, s, from, from_layout);
            convert(c.backend, back, out);
            expect_same("round trip", back, src_l);
          }
        }
  // A layout change keeps the shape.
  Tensor a = Tensor::zeros(Shape{2, 3, 4, 5}), b = Tensor::empty(Shape{2, 4, 3, 5}, DType::F32,
                                                                   Device::cpu(), Layout::NHWC);
  CHECK_THROWS_WITH(convert(b, a), Catch::Contains("keeps the shape"));
  // to_layout: a copy when the memory moves, a relabel when the layouts coincide.
  CHECK(to_layout(a, Layout::NHWC).layout() == Layout::NHWC);
  CHECK_FALSE(to_layout(a, Layout::NHWC).same_data(a));
  const Tensor p = Tensor::zeros(Shape{2, 3, 1, 1});
  CHECK(to_layout(p, Layout::NHWC).same_data(p));
}

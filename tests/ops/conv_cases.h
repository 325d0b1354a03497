// The convolution problems the conv2d tests share (tests/ops/conv2d_test.cpp in float32,
// tests/ops/low_precision_test.cpp in bfloat16/float16): a case's shapes, its float32 inputs drawn
// in one fixed order, and the float64 cpu-reference results the backends are compared with.
// Each case runs in both activation layouts (kConvLayouts); the reference is always computed in
// NCHW, and to_doubles reads either layout in logical order, so the comparisons pair the same
// elements. The arithmetic of the NHWC arrangement is the same sums in another order, so the
// derived bounds of both files apply to it unchanged.
#pragma once

#include "../support/backends.h"
#include "../support/test_util.h"
#include "kernels/conv2d.h"
#include "kernels/convert.h"

namespace minidl::test {

struct ConvCase {
  const char* name;
  int64_t N, C, H, W, K;
  int R, stride, pad;
};

// One case's inputs: x, w, bias, dy uniform in [-1, 1], and the non-zero gradients dw0, db0 the
// backward passes accumulate onto, drawn in this order from g.
struct ConvProblem {
  Conv2dParams prm;
  Shape xs, ws, ys;
  Tensor x, w, b, dy, dw0, db0;
};

inline ConvProblem draw_conv_problem(const ConvCase& k, Generator& g) {
  ConvProblem p;
  p.prm = Conv2dParams{k.stride, k.pad};
  p.xs = Shape{k.N, k.C, k.H, k.W};
  p.ws = Shape{k.K, k.C, k.R, k.R};
  const ConvGeometry geo = ConvGeometry::make(p.xs, p.ws, p.prm, "test");
  p.ys = Shape{k.N, k.K, geo.P, geo.Q};
  p.x = uniform_tensor(p.xs, g, -1, 1, DType::F32);
  p.w = uniform_tensor(p.ws, g, -1, 1, DType::F32);
  p.b = uniform_tensor(Shape{k.K}, g, -1, 1, DType::F32);
  p.dy = uniform_tensor(p.ys, g, -1, 1, DType::F32);
  p.dw0 = uniform_tensor(p.ws, g, -1, 1, DType::F32);
  p.db0 = uniform_tensor(Shape{k.K}, g, -1, 1, DType::F32);
  return p;
}

// The float64 cpu-reference on the same float32 values: forward with bias, backward data, and
// backward weight and bias accumulated onto dw0 and db0.
struct ConvReference {
  Tensor y, dx, dw, db;
};

inline ConvReference conv_reference(const ConvProblem& p) {
  const Backend ref = Backend::CpuReference;
  const Tensor x64 = cast(p.x, DType::F64), w64 = cast(p.w, DType::F64);
  const Tensor b64 = cast(p.b, DType::F64), dy64 = cast(p.dy, DType::F64);
  ConvReference r{Tensor::empty(p.ys, DType::F64), Tensor::empty(p.xs, DType::F64),
                  cast(p.dw0, DType::F64), cast(p.db0, DType::F64)};
  conv2d_forward(ref, r.y, x64, w64, &b64, p.prm);
  conv2d_backward_data(ref, r.dx, dy64, w64, p.prm);
  conv2d_backward_weight(ref, r.dw, dy64, x64, p.prm);
  conv2d_backward_bias(r.db, dy64);
  return r;
}

constexpr Layout kConvLayouts[] = {Layout::NCHW, Layout::NHWC};

// The case's copy of a float32 CPU input in `layout` (the layout changed on the CPU, exactly).
inline Tensor to_case(const BackendCase& c, const Tensor& t, Layout layout) {
  return to_case(c, to_layout(t, layout));
}

}  // namespace minidl::test

// The generic finite-difference gradient checker every layer test uses (after Caffe's
// GradientChecker), in float64 on the CPU.
//
// For a module f, an input x and a fixed random projection R, the scalar L(x, W) = sum(R * f(x))
// has dL/dx = backward(R) and dL/dW = the accumulated parameter gradients. Each checked element is
// compared with the Richardson extrapolation (4 D(h/2) - D(h)) / 3 of central differences
// D(h) = (L(v + h) - L(v - h)) / 2h, whose truncation error is O(h^4) and whose float64 round-off
// is about 1e-16 |L| / h. The error reported is
//   |analytic - numeric| / max(|analytic|, |numeric|, floor)
// (relative for gradients of normal size; the floor keeps near-zero gradients from turning
// round-off into a huge ratio). Tensors larger than `max_elements` are checked at a random sample
// of elements (first and last always included). An element that fails is checked again with 10x
// and 100x smaller steps, which removes the error of a kink (ReLU, max-pool) lying within h of the
// point but not the error of a wrong gradient.
#pragma once

#include <functional>
#include <string>

#include "layers/module.h"

namespace minidl::test {

struct GradCheckOptions {
  Mode mode = Mode::Train;
  double h = 1e-5;          // step of the central difference
  double tolerance = 1e-6;  // largest accepted relative error (the Foundation issue's bound)
  // Denominator floor: relative error for gradients of 0.1 and more, absolute error (1e-7) below.
  // A 1e-2 floor flagged a correct BN input gradient of -0.0066 whose finite difference was 1e-8
  // off (seed 601): there the difference, not the gradient, is the inexact side.
  double floor = 1e-1;
  int64_t max_elements = 48;
  bool check_input = true;  // false for layers whose input has no gradient (labels, indices)
  // Called before every forward (e.g. to reseed a dropout mask so each forward draws the same).
  std::function<void()> before_forward;
};

struct GradCheckResult {
  bool ok = true;
  double max_error = 0.0;
  int64_t checked = 0;
  std::string report;  // one line per tensor plus the worst elements
};

GradCheckResult check_gradients(Module& m, const Tensor& x, uint64_t seed,
                                const GradCheckOptions& opt = {});

}  // namespace minidl::test

// The finite-difference gradient checker (after Caffe's GradientChecker), in float64 on the CPU:
// every layer test uses it, the `gradcheck` app runs it on any op, layer, block or model, and a
// student checks a layer of their own with one call:
//
//   MyLayer layer(...);                                  // a Module in float64
//   GradCheckResult r = check_gradients(layer, x, seed); // x: float64 CPU input
//   std::cout << r.report;                               // r.ok: every gradient within tolerance
//
// For a module f, an input x and a fixed random projection R, the scalar L(x, W) = sum(R * f(x))
// has dL/dx = backward(R) and dL/dW = the accumulated parameter gradients. Each checked element is
// compared with the Richardson extrapolation (4 D(h/2) - D(h)) / 3 of central differences
// D(h) = (L(v + h) - L(v - h)) / 2h, whose truncation error is O(h^4) and whose float64 round-off
// is about 1e-16 |L| / h. The error judged is
//   |analytic - numeric| / max(|analytic|, |numeric|, floor)
// (relative for gradients of normal size; the floor keeps near-zero gradients from turning
// round-off into a huge ratio). Tensors larger than `max_elements` are checked at a random sample
// of elements (first and last always included). An element that fails is checked again with 10x
// and 100x smaller steps, which removes the error of a kink (ReLU, max-pool) lying within h of the
// point but not the error of a wrong gradient.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.h"
#include "layers/module.h"

namespace minidl {

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

// One checked tensor: the largest errors over its checked elements and the worst element.
struct TensorGradCheck {
  std::string name;
  int64_t numel = 0, checked = 0;
  double max_abs_error = 0.0;  // max |analytic - numeric|
  double max_error = 0.0;      // max |analytic - numeric| / max(|analytic|, |numeric|, floor)
  int64_t worst_index = -1;    // the element with max_error
  double worst_analytic = 0.0, worst_numeric = 0.0;
  bool ok = true;
};

struct GradCheckResult {
  bool ok = true;
  double max_error = 0.0;
  int64_t checked = 0;
  std::vector<TensorGradCheck> tensors;
  std::string report;  // one line per tensor plus the worst elements
};

// The general form: `loss()` computes the scalar in float64 from the values it reads, among them
// each target's `values` (perturbed in place and restored); `analytic` is dL/d(values).
struct GradTarget {
  std::string name;
  double* values;
  std::vector<double> analytic;
};
GradCheckResult check_gradients(const std::function<double()>& loss, std::vector<GradTarget> targets,
                                uint64_t seed, const GradCheckOptions& opt = {});

// A module (float64, CPU) at input x (either layout; the input gradient must come back in x's):
// the input gradient and every parameter gradient.
GradCheckResult check_gradients(Module& m, const Tensor& x, uint64_t seed,
                                const GradCheckOptions& opt = {});

// The projection R of the module form: uniform in [-1, 1), drawn from g element by element in
// memory order, in `layout` (the module's output's: a channels-last layer gets an NHWC R, and the
// loss sum(R * f(x)) pairs the two element by element in memory, as backward does).
Tensor gradcheck_projection(const Shape& s, Generator& g, DType dtype = DType::F64,
                            Layout layout = Layout::NCHW);

}  // namespace minidl

#include "gradcheck.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "core/rng.h"
#include "test_util.h"

namespace minidl::test {

namespace {

double projected_loss(Module& m, const Tensor& x, const Tensor& R, const GradCheckOptions& opt) {
  if (opt.before_forward) opt.before_forward();
  const Tensor y = m.forward(x, opt.mode);
  const double* py = y.data<double>();
  const double* pr = R.data<double>();
  double L = 0;
  for (int64_t i = 0; i < y.numel(); ++i) L += pr[i] * py[i];
  return L;
}

std::vector<int64_t> sample_indices(int64_t n, int64_t max_n, Generator& g) {
  std::vector<int64_t> idx;
  if (n <= max_n) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  idx.push_back(0);
  idx.push_back(n - 1);
  while (static_cast<int64_t>(idx.size()) < max_n) idx.push_back(static_cast<int64_t>(g.below(n)));
  return idx;
}

// Checks analytic gradient `grad` of the values at `values` (which the forward reads).
void check_tensor(const std::string& name, double* values, const double* grad, int64_t n, Module& m,
                  const Tensor& x, const Tensor& R, const GradCheckOptions& opt, Generator& g,
                  GradCheckResult& res) {
  double worst = 0;
  std::ostringstream bad;
  int shown = 0;
  for (int64_t i : sample_indices(n, opt.max_elements, g)) {
    const double v = values[i];
    const double analytic = grad[i];
    auto central = [&](double h) {
      values[i] = v + h;
      const double lp = projected_loss(m, x, R, opt);
      values[i] = v - h;
      const double lm = projected_loss(m, x, R, opt);
      values[i] = v;
      return (lp - lm) / (2 * h);
    };
    // Richardson extrapolation of two central differences cancels their h^2 error term, leaving
    // O(h^4): BatchNorm's large third derivatives otherwise put some elements just over 1e-6.
    auto central_difference = [&](double h) { return (4 * central(h / 2) - central(h)) / 3; };
    auto error_of = [&](double numeric) {
      return std::fabs(analytic - numeric) /
             std::max({std::fabs(analytic), std::fabs(numeric), opt.floor});
    };
    double numeric = central_difference(opt.h);
    double err = error_of(numeric);
    // A ReLU or max-pool kink within h of the current point bends the secant, so the difference
    // quotient is wrong although the gradient is right (BatchNorm over few values can amplify a
    // perturbation enough that this happens for a weight; seen with seed 607). Retrying with 10x
    // and 100x smaller steps tells the two apart: the kink drops out of reach and the difference
    // converges to the analytic value, while a wrong gradient stays wrong at any step (the broken
    // layers in tests/core/gradcheck_test.cpp are still caught). The best estimate is kept.
    for (double shrink : {0.1, 0.01}) {
      if (err <= opt.tolerance) break;
      const double retry = central_difference(opt.h * shrink);
      if (error_of(retry) < err) {
        numeric = retry;
        err = error_of(retry);
      }
    }
    res.checked++;
    worst = std::max(worst, std::isnan(err) ? INFINITY : err);
    if (!(err <= opt.tolerance) && shown++ < 5)
      bad << "    " << name << "[" << i << "]: analytic " << analytic << ", numeric " << numeric
          << ", error " << err << "\n";
  }
  res.max_error = std::max(res.max_error, worst);
  if (!(worst <= opt.tolerance)) res.ok = false;
  std::ostringstream line;
  line << "  " << name << " (" << n << " elements): max error " << worst
       << (worst <= opt.tolerance ? "" : "  <-- FAIL") << "\n"
       << bad.str();
  res.report += line.str();
}

}  // namespace

GradCheckResult check_gradients(Module& m, const Tensor& x_in, uint64_t seed,
                                const GradCheckOptions& opt) {
  MINIDL_CHECK(x_in.dtype() == DType::F64 && x_in.device().is_cpu(),
               "check_gradients: input must be a float64 CPU tensor, got ", x_in.describe());
  Generator g(seed);
  Tensor x = x_in.clone();  // perturbed in place below

  // Analytic gradients.
  m.zero_grad();
  if (opt.before_forward) opt.before_forward();
  const Tensor y = m.forward(x, opt.mode);
  const Tensor R = uniform_tensor(y.shape(), g, -1.0, 1.0);
  const Tensor dx_raw = m.backward(R);
  GradCheckResult res;
  res.report = str("gradient check of ", m.describe(), " on ", x.describe(), ", mode ",
                   opt.mode == Mode::Train ? "train" : "eval", ", seed ", seed, "\n");

  if (opt.check_input) {
    MINIDL_CHECK(dx_raw.defined(), "check_gradients: ", m.who(), " returned no input gradient");
    check_shape(dx_raw, x.shape(), "check_gradients", "input gradient");
    const Tensor dx = dx_raw.clone();  // the layer may reuse its buffer during the checks
    check_tensor("input", x.data<double>(), dx.data<double>(), x.numel(), m, x, R, opt, g, res);
  }
  for (auto& np : m.named_parameters()) {
    const Tensor grad = np.param->grad.clone();
    check_tensor(np.name, np.param->value.data<double>(), grad.data<double>(),
                 np.param->value.numel(), m, x, R, opt, g, res);
  }
  return res;
}

}  // namespace minidl::test

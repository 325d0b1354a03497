// The finite-difference gradient checker (layers/gradcheck.h).
#include "layers/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "core/rng.h"

namespace minidl {

namespace {

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

// Checks the analytic gradient of the values at target.values (which loss() reads).
void check_tensor(GradTarget& t, int64_t n, const std::function<double()>& loss,
                  const GradCheckOptions& opt, Generator& g, GradCheckResult& res) {
  TensorGradCheck tc;
  tc.name = t.name;
  tc.numel = n;
  std::ostringstream bad;
  int shown = 0;
  for (int64_t i : sample_indices(n, opt.max_elements, g)) {
    double* values = t.values;
    const double v = values[i];
    const double analytic = t.analytic[i];
    auto central = [&](double h) {
      values[i] = v + h;
      const double lp = loss();
      values[i] = v - h;
      const double lm = loss();
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
    tc.checked++;
    const double e = std::isnan(err) ? INFINITY : err;
    tc.max_abs_error = std::max(tc.max_abs_error, std::isnan(err) ? INFINITY
                                                                  : std::fabs(analytic - numeric));
    if (tc.worst_index < 0 || e > tc.max_error) {
      tc.max_error = e;
      tc.worst_index = i;
      tc.worst_analytic = analytic;
      tc.worst_numeric = numeric;
    }
    if (!(err <= opt.tolerance) && shown++ < 5)
      bad << "    " << t.name << "[" << i << "]: analytic " << analytic << ", numeric " << numeric
          << ", error " << err << "\n";
  }
  tc.ok = tc.max_error <= opt.tolerance;
  res.max_error = std::max(res.max_error, tc.max_error);
  if (!tc.ok) res.ok = false;
  std::ostringstream line;
  line << "  " << t.name << " (" << n << " elements): max error " << tc.max_error
       << (tc.ok ? "" : "  <-- FAIL") << "\n"
       << bad.str();
  res.report += line.str();
  res.tensors.push_back(tc);
}

}  // namespace

Tensor gradcheck_projection(const Shape& s, Generator& g, DType dtype, Layout layout) {
  Tensor r = Tensor::empty(s, DType::F64, Device::cpu(), layout);
  double* p = r.data<double>();
  for (int64_t i = 0; i < r.numel(); ++i) p[i] = g.uniform(-1.0, 1.0);
  if (dtype == DType::F64) return r;
  Tensor out = Tensor::empty(s, dtype, Device::cpu(), layout);
  MINIDL_CHECK(dtype == DType::F32, "gradcheck_projection: dtype must be float32 or float64");
  for (int64_t i = 0; i < r.numel(); ++i) out.data<float>()[i] = static_cast<float>(p[i]);
  return out;
}

GradCheckResult check_gradients(const std::function<double()>& loss, std::vector<GradTarget> targets,
                                uint64_t seed, const GradCheckOptions& opt) {
  Generator g(seed);
  GradCheckResult res;
  for (GradTarget& t : targets)
    check_tensor(t, static_cast<int64_t>(t.analytic.size()), loss, opt, g, res);
  return res;
}

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

std::vector<double> values_of(const Tensor& t) { return t.to_vector<double>(); }

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
  const Tensor R = gradcheck_projection(y.shape(), g, DType::F64, y.layout());
  const Tensor dx_raw = m.backward(R);
  GradCheckResult res;
  res.report = str("gradient check of ", m.describe(), " on ", x.describe(), ", mode ",
                   opt.mode == Mode::Train ? "train" : "eval", ", seed ", seed, "\n");

  const auto loss = [&] { return projected_loss(m, x, R, opt); };
  if (opt.check_input) {
    MINIDL_CHECK(dx_raw.defined(), "check_gradients: ", m.who(), " returned no input gradient");
    check_shape(dx_raw, x.shape(), "check_gradients", "input gradient");
    // Compared with x's elements in memory order below: the same layout, or the pairs are wrong.
    check_layout(dx_raw, x.layout(), "check_gradients", "input gradient (it must take x's layout)");
    // A copy: the layer may reuse its buffer during the checks.
    GradTarget t{"input", x.data<double>(), values_of(dx_raw)};
    check_tensor(t, x.numel(), loss, opt, g, res);
  }
  for (auto& np : m.named_parameters()) {
    GradTarget t{np.name, np.param->value.data<double>(), values_of(np.param->grad)};
    check_tensor(t, np.param->value.numel(), loss, opt, g, res);
  }
  return res;
}

}  // namespace minidl

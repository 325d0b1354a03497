#include "core/init.h"

#include <cmath>
#include <vector>

namespace minidl::init {

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "conv2d" || nl == "sigmoid") return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  throw_error(str("init::calculate_gain: unknown nonlinearity '", nl,
                  "' (expected linear, sigmoid, tanh, relu or leaky_relu)"));
}

int64_t fan_in(const Shape& w) {
  MINIDL_CHECK(w.dim() >= 2, "init: weight of shape ", w, " has no fan (needs 2 or more dims)");
  int64_t receptive = 1;
  for (int i = 2; i < w.dim(); ++i) receptive *= w[i];
  return w[1] * receptive;
}

int64_t fan_out(const Shape& w) {
  MINIDL_CHECK(w.dim() >= 2, "init: weight of shape ", w, " has no fan (needs 2 or more dims)");
  int64_t receptive = 1;
  for (int i = 2; i < w.dim(); ++i) receptive *= w[i];
  return w[0] * receptive;
}

namespace {
// Draw on the host in float64, then store in the tensor's dtype and device.
template <typename Draw>
void fill_with(Tensor& t, Draw draw) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (double& x : v) x = draw();
  Tensor host;
  if (t.dtype() == DType::F64) {
    host = Tensor::from_vector(v, t.shape());
  } else {
    MINIDL_CHECK(t.dtype() == DType::F32, "init: cannot initialise ", t.describe());
    std::vector<float> f(v.begin(), v.end());
    host = Tensor::from_vector(f, t.shape());
  }
  t.copy_(host);
}
}  // namespace

void uniform(Tensor& t, double lo, double hi, Generator& gen) {
  fill_with(t, [&] { return gen.uniform(lo, hi); });
}

void normal(Tensor& t, double mean, double std, Generator& gen) {
  fill_with(t, [&] { return mean + std * gen.normal(); });
}

void constant(Tensor& t, double value) { t.fill_(value); }

void kaiming_uniform(Tensor& w, Generator& gen, double a, FanMode mode, const std::string& nl) {
  const double fan = static_cast<double>(mode == FanMode::FanIn ? fan_in(w.shape()) : fan_out(w.shape()));
  const double bound = calculate_gain(nl, a) * std::sqrt(3.0 / fan);
  uniform(w, -bound, bound, gen);
}

void kaiming_normal(Tensor& w, Generator& gen, double a, FanMode mode, const std::string& nl) {
  const double fan = static_cast<double>(mode == FanMode::FanIn ? fan_in(w.shape()) : fan_out(w.shape()));
  normal(w, 0.0, calculate_gain(nl, a) / std::sqrt(fan), gen);
}

void xavier_uniform(Tensor& w, Generator& gen, double gain) {
  const double b = gain * std::sqrt(6.0 / static_cast<double>(fan_in(w.shape()) + fan_out(w.shape())));
  uniform(w, -b, b, gen);
}

void xavier_normal(Tensor& w, Generator& gen, double gain) {
  normal(w, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fan_in(w.shape()) + fan_out(w.shape()))), gen);
}

void pytorch_default(Tensor& weight, Tensor* bias, Generator& gen) {
  kaiming_uniform(weight, gen, std::sqrt(5.0));
  if (bias && bias->defined()) {
    const double b = 1.0 / std::sqrt(static_cast<double>(fan_in(weight.shape())));
    uniform(*bias, -b, b, gen);
  }
}

}  // namespace minidl::init

// The gradient checker must be able to fail: a layer with a deliberately wrong backward is caught.
#include <catch2/catch.hpp>

#include "kernels/activation.h"
#include "layers/module.h"
#include "../support/gradcheck.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {
// y = w * tanh(x) with a scalar weight, and a backward that can be broken in two ways.
class Probe : public Module {
 public:
  enum class Bug { None, InputGradScaled, WeightGradMissing };
  explicit Probe(Bug bug) : Module("Probe"), bug_(bug) {
    w_ = register_parameter("weight", Tensor::full(Shape{1}, 1.7, DType::F64));
  }
  Tensor forward(const Tensor& x, Mode) override {
    x_ = x;
    t_ = Tensor::empty(x.shape(), DType::F64);
    activation_forward(t_, x, Activation::Tanh);
    Tensor y = t_.clone();
    const double w = w_->value.data<double>()[0];
    for (int64_t i = 0; i < y.numel(); ++i) y.data<double>()[i] *= w;
    return y;
  }
  Tensor backward(const Tensor& dy) override {
    const double w = w_->value.data<double>()[0];
    Tensor dt = dy.clone();
    double dw = 0;
    for (int64_t i = 0; i < dy.numel(); ++i) {
      dw += dy.data<double>()[i] * t_.data<double>()[i];
      dt.data<double>()[i] *= w * (bug_ == Bug::InputGradScaled ? 1.001 : 1.0);
    }
    if (bug_ != Bug::WeightGradMissing) w_->grad.data<double>()[0] += dw;
    Tensor dx = Tensor::empty(dy.shape(), DType::F64);
    activation_backward(dx, dt, x_, t_, Activation::Tanh);
    return dx;
  }
  Shape output_shape(const Shape& in) const override { return in; }

 private:
  Bug bug_;
  Parameter* w_;
  Tensor x_, t_;
};
}  // namespace

TEST_CASE("gradcheck: passes a correct backward and catches wrong ones", "[gradcheck]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor x = uniform_tensor(Shape{2, 3, 4}, g);

  Probe good(Probe::Bug::None);
  const GradCheckResult ok = check_gradients(good, x, seed);
  INFO(ok.report);
  CHECK(ok.ok);
  // Round-off of the extrapolated difference is ~1e-16 |L| / h relative to the 1e-2 floor, so a
  // correct gradient stays an order of magnitude inside the 1e-6 bound.
  CHECK(ok.max_error < 1e-7);

  // A 0.1% error in the input gradient is far above the 1e-6 bound.
  Probe scaled(Probe::Bug::InputGradScaled);
  const GradCheckResult bad1 = check_gradients(scaled, x, seed);
  CHECK_FALSE(bad1.ok);
  CHECK(bad1.report.find("input") != std::string::npos);

  Probe missing(Probe::Bug::WeightGradMissing);
  const GradCheckResult bad2 = check_gradients(missing, x, seed);
  CHECK_FALSE(bad2.ok);
  CHECK(bad2.report.find("weight") != std::string::npos);
}

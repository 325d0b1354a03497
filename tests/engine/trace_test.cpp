// train --trace-steps (engine/trace.h): the per-layer numbers against the same numbers computed
// here, and the run's output and report.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../support/test_util.h"
#include "engine/trace.h"
#include "engine/trainer.h"
#include "engine_test_util.h"
#include "kernels/optimizer.h"
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/linear.h"

using namespace minidl;
using namespace minidl::test;

namespace {

double norm(const Tensor& t) {
  double s = 0;
  for (double v : t.to_vector<double>()) s += v * v;
  return std::sqrt(s);
}

}  // namespace

TEST_CASE("trace: activation statistics, gradient norms and update ratios per layer",
          "[engine][trace]") {
  Generator g(3);
  Sequential net;
  auto& fc1 = net.add(std::make_unique<Linear>(LinearConfig{5, 4, true, DType::F64}, g));
  net.add(std::make_unique<ReLU>());
  auto& fc2 = net.add(std::make_unique<Linear>(LinearConfig{4, 2, false, DType::F64}, g));
  const Tensor x = uniform_tensor(Shape{3, 5}, g);
  const Tensor dy = uniform_tensor(Shape{3, 2}, g);

  StepTracer tracer(net);
  tracer.before_forward();
  net.zero_grad();
  const Tensor h = fc1.forward(x, Mode::Train).clone();  // the first layer's output, by hand
  net.forward(x, Mode::Train);
  net.backward(dy);
  tracer.after_backward();
  const double w2_before = norm(fc2.weight().value);
  const double g2 = norm(fc2.weight().grad);
  // A plain SGD step: the update of fc2 is lr |grad| exactly.
  const double lr = 0.1;
  for (auto& np : net.named_parameters()) {
    Tensor none;
    sgd_update(np.param->value, np.param->grad, none, SgdParams{.lr = lr}, 1);
  }
  tracer.after_step();

  const auto rows = tracer.rows();
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].layer == "0 Linear");
  CHECK(rows[1].layer == "1 ReLU");
  // act mean/std of fc1's output.
  double s = 0, s2 = 0;
  const auto hv = h.to_vector<double>();
  for (double v : hv) s += v;
  const double mean = s / hv.size();
  for (double v : hv) s2 += (v - mean) * (v - mean);
  CHECK(rows[0].has_act);
  CHECK(rows[0].act_mean == Approx(mean).epsilon(1e-12));
  CHECK(rows[0].act_std == Approx(std::sqrt(s2 / hv.size())).epsilon(1e-12));
  // fc1's gradient norm covers weight and bias.
  const double g1 = std::hypot(norm(fc1.weight().grad), norm(fc1.bias()->grad));
  CHECK(rows[0].grad_norm == Approx(g1).epsilon(1e-12));
  CHECK_FALSE(rows[1].has_params);
  CHECK(rows[2].grad_norm == Approx(g2).epsilon(1e-12));
  CHECK(rows[2].update_ratio == Approx(lr * g2 / w2_before).epsilon(1e-9));

  const std::string table = tracer.table(1);
  CHECK(table.find("trace: step 1") == 0);
  CHECK(table.find("1 ReLU") != std::string::npos);

  const auto norms = layer_grad_norms(net);
  REQUIRE(norms.size() == 2);  // the layers with parameters
  CHECK(norms[0].first == "0");
  CHECK(norms[1].second == Approx(g2).epsilon(1e-12));
}

TEST_CASE("trace: train --trace-steps prints a table for the first N steps, the report draws "
          "per-layer gradient norms",
          "[engine][trace][train]") {
  const std::string data = cifar10_dir();
  if (data.empty()) {
    WARN("CIFAR-10 not found: test skipped");
    return;
  }
  const auto out = scratch_dir("trace");
  const TrainConfig cfg = parse_args({"--data", data, "--model", "plain", "--subset", "64",
                                      "--test-subset", "32", "--batch-size", "32", "--epochs", "1",
                                      "--device", "cpu", "--out", out.string(), "--trace-steps",
                                      "1"});
  std::ostringstream log;
  run_train(cfg, log);
  const std::string text = log.str();
  INFO(text);
  // Two steps in the epoch, the first traced.
  CHECK(text.find("trace: step 1\n") != std::string::npos);
  CHECK(text.find(" Conv2d ") != std::string::npos);
  CHECK(text.find("trace: step 2\n") == std::string::npos);
  std::ifstream f(out / "report.html");
  std::stringstream html;
  html << f.rdbuf();
  CHECK(html.str().find("Gradient norms per layer") != std::string::npos);
  std::filesystem::remove_all(out);

  CHECK_THROWS_WITH(parse_args({"--trace-steps", "-1"}), Catch::Contains("--trace-steps"));
}

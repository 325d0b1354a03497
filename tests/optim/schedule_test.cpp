// Learning-rate schedules at chosen epochs, against the formulas of optim/schedule.h evaluated by
// hand. Values are compared with a relative tolerance of 1e-12: they are short products and one
// cosine, exact to a few ulps.
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>

#include "optim/schedule.h"

using namespace minidl;

namespace {
ScheduleConfig config(const char* name, double base_lr) {
  ScheduleConfig c;
  c.name = name;
  c.base_lr = base_lr;
  return c;
}
}  // namespace

TEST_CASE("step schedule: StepLR(20, 0.5)", "[schedule]") {
  ScheduleConfig c = config("step", 0.1);
  c.step_size = 20;
  c.gamma = 0.5;
  const LrSchedule s(c);
  CHECK(s.lr_at(0) == Approx(0.1).epsilon(1e-12));
  CHECK(s.lr_at(19) == Approx(0.1).epsilon(1e-12));
  CHECK(s.lr_at(19.99) == Approx(0.1).epsilon(1e-12));  // changes per epoch, not per iteration
  CHECK(s.lr_at(20) == Approx(0.05).epsilon(1e-12));
  CHECK(s.lr_at(39.5) == Approx(0.05).epsilon(1e-12));
  CHECK(s.lr_at(40) == Approx(0.025).epsilon(1e-12));
  CHECK(s.describe() == "step(base_lr=0.1, step_size=20, gamma=0.5)");
}

TEST_CASE("multistep schedule", "[schedule]") {
  ScheduleConfig c = config("multistep", 1.0);
  c.milestones = {5, 10};
  c.gamma = 0.1;
  const LrSchedule s(c);
  CHECK(s.lr_at(0) == 1.0);
  CHECK(s.lr_at(4.9) == 1.0);
  CHECK(s.lr_at(5) == Approx(0.1).epsilon(1e-12));
  CHECK(s.lr_at(9) == Approx(0.1).epsilon(1e-12));
  CHECK(s.lr_at(10) == Approx(0.01).epsilon(1e-12));
  CHECK(s.lr_at(1000) == Approx(0.01).epsilon(1e-12));
  CHECK(s.describe() == "multistep(base_lr=1, milestones=[5, 10], gamma=0.1)");
}

TEST_CASE("cosine schedule endpoints and midpoint", "[schedule]") {
  ScheduleConfig c = config("cosine", 1.0);
  c.total_epochs = 10;
  c.min_lr = 0.1;
  const LrSchedule s(c);
  CHECK(s.lr_at(0) == Approx(1.0).epsilon(1e-12));
  CHECK(s.lr_at(5) == Approx(0.55).epsilon(1e-12));  // 0.1 + 0.9 (1 + cos(pi/2)) / 2
  CHECK(s.lr_at(10) == Approx(0.1).epsilon(1e-12));  // 0.1 + 0.9 (1 + cos(pi)) / 2
  CHECK(s.lr_at(15) == Approx(0.1).epsilon(1e-12));  // held at min_lr after total_epochs
  // Per epoch: 2.7 uses epoch 2, 0.1 + 0.9 (1 + cos(0.2 pi)) / 2
  CHECK(s.lr_at(2.7) == Approx(0.1 + 0.45 * (1 + std::cos(0.2 * std::numbers::pi))).epsilon(1e-12));
}

TEST_CASE("constant schedule", "[schedule]") {
  const LrSchedule s(config("constant", 0.3));
  CHECK(s.lr_at(0) == 0.3);
  CHECK(s.lr_at(123.4) == 0.3);
}

TEST_CASE("linear warm-up ramps per iteration in front of the schedule", "[schedule]") {
  ScheduleConfig c = config("cosine", 0.8);
  c.total_epochs = 10;
  c.warmup_epochs = 2;
  c.warmup_start_factor = 0.25;
  const LrSchedule s(c);
  // lr = 0.8 (0.25 + 0.75 epoch / 2) during the first two epochs
  CHECK(s.lr_at(0) == Approx(0.2).epsilon(1e-12));
  CHECK(s.lr_at(1) == Approx(0.5).epsilon(1e-12));
  CHECK(s.lr_at(1.5) == Approx(0.65).epsilon(1e-12));
  CHECK(s.lr_at(1.99) < s.lr_at(2));
  // then the cosine from its epoch 0: at epoch 2 + 5 it is at its midpoint, 0.4
  CHECK(s.lr_at(2) == Approx(0.8).epsilon(1e-12));
  CHECK(s.lr_at(7) == Approx(0.4).epsilon(1e-12));
  CHECK(s.lr_at(12) == Approx(0.0).margin(1e-15));  // min_lr 0; |cos(pi) + 1| is ~1e-16
  CHECK(s.describe() ==
        "cosine(base_lr=0.8, min_lr=0, total_epochs=10) after linear warm-up over 2 epochs from 0.2");

  ScheduleConfig st = config("step", 0.1);
  st.step_size = 2;
  st.warmup_epochs = 1;
  const LrSchedule s2(st);
  // torch's default start factor 1/3: 0.1 (1/3 + (2/3) 0.5)
  CHECK(s2.lr_at(0.5) == Approx(0.1 * (1.0 / 3.0 + (2.0 / 3.0) * 0.5)).epsilon(1e-12));
  // The step size counts the run's epochs, not those after warm-up: the decay is at epoch 2.
  CHECK(s2.lr_at(1.9) == Approx(0.1).epsilon(1e-12));
  CHECK(s2.lr_at(2.0) == Approx(0.05).epsilon(1e-12));
}

TEST_CASE("schedule validation names the field", "[schedule][errors]") {
  auto bad = [](auto&& set) {
    ScheduleConfig c;
    set(c);
    return LrSchedule(c);
  };
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.name = "linear"; }),
                      Catch::Contains("linear") && Catch::Contains("step, multistep, cosine or constant"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.name = "cosin"; }), Catch::Contains("did you mean cosine?"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.base_lr = 0; }), Catch::Contains("base_lr"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.step_size = 0; }), Catch::Contains("step_size"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.gamma = 0; }), Catch::Contains("gamma"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.gamma = 1.5; }), Catch::Contains("gamma"));
  REQUIRE_THROWS_WITH(bad([](auto& c) {
                        c.name = "multistep";
                        c.milestones = {10, 5};
                      }),
                      Catch::Contains("milestones") && Catch::Contains("increasing"));
  REQUIRE_THROWS_WITH(bad([](auto& c) {
                        c.name = "multistep";
                        c.milestones = {5, 5};
                      }),
                      Catch::Contains("milestones"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.name = "multistep"; }), Catch::Contains("milestones"));
  REQUIRE_THROWS_WITH(bad([](auto& c) {
                        c.name = "cosine";
                        c.total_epochs = 0;
                      }),
                      Catch::Contains("total_epochs"));
  REQUIRE_THROWS_WITH(bad([](auto& c) {
                        c.name = "cosine";
                        c.min_lr = 1.0;
                      }),
                      Catch::Contains("min_lr"));
  REQUIRE_THROWS_WITH(bad([](auto& c) { c.warmup_epochs = -1; }), Catch::Contains("warmup_epochs"));
  REQUIRE_THROWS_WITH(bad([](auto& c) {
                        c.warmup_epochs = 1;
                        c.warmup_start_factor = 0;
                      }),
                      Catch::Contains("warmup_start_factor"));
  REQUIRE_THROWS_WITH(LrSchedule(ScheduleConfig{}).lr_at(-1), Catch::Contains("epoch"));
}

TEST_CASE("schedule registry: every schedule has help, a description and an lr", "[schedule]") {
  CHECK(schedules().names() == std::vector<std::string>{"step", "multistep", "cosine", "constant"});
  CHECK_THAT(schedules().help_text(), Catch::Contains("StepLR") && Catch::Contains("MultiStepLR") &&
                                          Catch::Contains("CosineAnnealingLR"));
  for (const std::string& name : schedules().names()) {
    INFO(name);
    ScheduleConfig c;
    c.name = name;
    c.milestones = {2};
    const LrSchedule s(c);
    CHECK(s.describe().rfind(name + "(base_lr=0.1", 0) == 0);
    CHECK(s.lr_at(0.0) == 0.1);  // every schedule starts at the base lr
  }
}

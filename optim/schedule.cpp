// Learning-rate schedules (formulas in schedule.h): the warm-up in front, then the schedule's own
// entry in the registry at the bottom.
#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace minidl {

LrSchedule::LrSchedule(const ScheduleConfig& cfg) : cfg_(cfg) {
  const ScheduleKind& kind = schedules().at(cfg.name);  // throws for an unknown name
  const std::string who = "lr schedule '" + cfg.name + "'";
  MINIDL_CHECK(std::isfinite(cfg.base_lr) && cfg.base_lr > 0.0, who, ": base_lr must be > 0, got ",
               cfg.base_lr);
  MINIDL_CHECK(std::isfinite(cfg.warmup_epochs) && cfg.warmup_epochs >= 0.0, who,
               ": warmup_epochs must be >= 0, got ", cfg.warmup_epochs);
  if (cfg.warmup_epochs > 0.0)
    MINIDL_CHECK(cfg.warmup_start_factor > 0.0 && cfg.warmup_start_factor <= 1.0, who,
                 ": warmup_start_factor must be in (0, 1], got ", cfg.warmup_start_factor);
  kind.check(cfg, who);
}

double LrSchedule::lr_at(double epoch) const {
  MINIDL_CHECK(std::isfinite(epoch) && epoch >= 0.0, "lr schedule '", cfg_.name,
               "': epoch must be >= 0, got ", epoch);
  const double base = cfg_.base_lr, W = cfg_.warmup_epochs;
  if (epoch < W) {
    const double s = cfg_.warmup_start_factor;
    return base * (s + (1.0 - s) * epoch / W);
  }
  const ScheduleKind& kind = schedules().at(cfg_.name);
  const double e = std::floor(epoch);  // the schedules change at epoch boundaries (schedule.h)
  return kind.lr(cfg_, kind.after_warmup ? std::max(0.0, e - std::ceil(W)) : e);
}

std::string LrSchedule::describe() const {
  std::string s = schedules().at(cfg_.name).describe(cfg_);
  if (cfg_.warmup_epochs > 0.0)
    s += str(" after linear warm-up over ", cfg_.warmup_epochs, " epochs from ",
             cfg_.warmup_start_factor * cfg_.base_lr);
  return s;
}

// ------------------------------------------------------------------ the schedules

namespace {

void check_gamma(const ScheduleConfig& cfg, const std::string& who) {
  MINIDL_CHECK(cfg.gamma > 0.0 && cfg.gamma <= 1.0, who, ": gamma must be in (0, 1], got ",
               cfg.gamma);
}

// step: lr = base * gamma^floor(e / step_size)
void check_step(const ScheduleConfig& cfg, const std::string& who) {
  MINIDL_CHECK(cfg.step_size >= 1, who, ": step_size must be >= 1, got ", cfg.step_size);
  check_gamma(cfg, who);
}
double lr_step(const ScheduleConfig& cfg, double e) {
  return cfg.base_lr * std::pow(cfg.gamma, std::floor(e / cfg.step_size));
}
std::string describe_step(const ScheduleConfig& cfg) {
  return str("step(base_lr=", cfg.base_lr, ", step_size=", cfg.step_size, ", gamma=", cfg.gamma,
             ")");
}

// multistep: lr = base * gamma^(number of milestones <= e)
void check_multistep(const ScheduleConfig& cfg, const std::string& who) {
  check_gamma(cfg, who);
  MINIDL_CHECK(!cfg.milestones.empty(), who, ": milestones must not be empty");
  for (size_t i = 0; i < cfg.milestones.size(); ++i) {
    MINIDL_CHECK(cfg.milestones[i] >= 1, who, ": milestones must be >= 1, got ", cfg.milestones[i],
                 " at position ", i);
    MINIDL_CHECK(i == 0 || cfg.milestones[i] > cfg.milestones[i - 1], who,
                 ": milestones must be strictly increasing, got ", cfg.milestones[i - 1], " then ",
                 cfg.milestones[i]);
  }
}
double lr_multistep(const ScheduleConfig& cfg, double e) {
  int passed = 0;
  for (int m : cfg.milestones) passed += m <= e;
  return cfg.base_lr * std::pow(cfg.gamma, passed);
}
std::string describe_multistep(const ScheduleConfig& cfg) {
  std::string ms;
  for (int m : cfg.milestones) ms += (ms.empty() ? "" : ", ") + std::to_string(m);
  return str("multistep(base_lr=", cfg.base_lr, ", milestones=[", ms, "], gamma=", cfg.gamma, ")");
}

// cosine: lr = min + (base - min) (1 + cos(pi min(e, T) / T)) / 2
void check_cosine(const ScheduleConfig& cfg, const std::string& who) {
  MINIDL_CHECK(cfg.total_epochs >= 1, who, ": total_epochs must be >= 1, got ", cfg.total_epochs);
  MINIDL_CHECK(cfg.min_lr >= 0.0 && cfg.min_lr <= cfg.base_lr, who,
               ": min_lr must be in [0, base_lr = ", cfg.base_lr, "], got ", cfg.min_lr);
}
double lr_cosine(const ScheduleConfig& cfg, double e) {
  const double T = cfg.total_epochs;
  return cfg.min_lr +
         (cfg.base_lr - cfg.min_lr) * (1.0 + std::cos(std::numbers::pi * std::min(e, T) / T)) / 2.0;
}
std::string describe_cosine(const ScheduleConfig& cfg) {
  return str("cosine(base_lr=", cfg.base_lr, ", min_lr=", cfg.min_lr,
             ", total_epochs=", cfg.total_epochs, ")");
}

// constant: lr = base
void check_constant(const ScheduleConfig&, const std::string&) {}
double lr_constant(const ScheduleConfig& cfg, double) { return cfg.base_lr; }
std::string describe_constant(const ScheduleConfig& cfg) {
  return str("constant(base_lr=", cfg.base_lr, ")");
}

}  // namespace

const Registry<ScheduleKind>& schedules() {
  static const Registry<ScheduleKind> r(
      "lr schedule",
      {{"step",
        "multiply the lr by --gamma every --step-size epochs (torch StepLR)",
        {check_step, lr_step, describe_step}},
       {"multistep",
        "multiply the lr by --gamma at each of --milestones (torch MultiStepLR)",
        {check_multistep, lr_multistep, describe_multistep}},
       {"cosine",
        "cosine decay to 0 over the epochs after warm-up (torch CosineAnnealingLR)",
        {check_cosine, lr_cosine, describe_cosine, /*after_warmup=*/true}},
       {"constant", "the same lr throughout", {check_constant, lr_constant, describe_constant}}});
  return r;
}

}  // namespace minidl

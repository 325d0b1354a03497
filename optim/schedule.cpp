// Learning-rate schedules (formulas in schedule.h).
#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace minidl {

LrSchedule::LrSchedule(const ScheduleConfig& cfg) : cfg_(cfg) {
  const std::string who = "lr schedule '" + cfg.name + "'";
  MINIDL_CHECK(cfg.name == "step" || cfg.name == "multistep" || cfg.name == "cosine" ||
                   cfg.name == "constant",
               "unknown lr schedule '", cfg.name, "' (known: step, multistep, cosine, constant)");
  MINIDL_CHECK(std::isfinite(cfg.base_lr) && cfg.base_lr > 0.0, who, ": base_lr must be > 0, got ",
               cfg.base_lr);
  MINIDL_CHECK(std::isfinite(cfg.warmup_epochs) && cfg.warmup_epochs >= 0.0, who,
               ": warmup_epochs must be >= 0, got ", cfg.warmup_epochs);
  if (cfg.warmup_epochs > 0.0)
    MINIDL_CHECK(cfg.warmup_start_factor > 0.0 && cfg.warmup_start_factor <= 1.0, who,
                 ": warmup_start_factor must be in (0, 1], got ", cfg.warmup_start_factor);
  if (cfg.name == "step") {
    MINIDL_CHECK(cfg.step_size >= 1, who, ": step_size must be >= 1, got ", cfg.step_size);
  }
  if (cfg.name == "step" || cfg.name == "multistep") {
    MINIDL_CHECK(cfg.gamma > 0.0 && cfg.gamma <= 1.0, who, ": gamma must be in (0, 1], got ",
                 cfg.gamma);
  }
  if (cfg.name == "multistep") {
    MINIDL_CHECK(!cfg.milestones.empty(), who, ": milestones must not be empty");
    for (size_t i = 0; i < cfg.milestones.size(); ++i) {
      MINIDL_CHECK(cfg.milestones[i] >= 1, who, ": milestones must be >= 1, got ",
                   cfg.milestones[i], " at position ", i);
      MINIDL_CHECK(i == 0 || cfg.milestones[i] > cfg.milestones[i - 1], who,
                   ": milestones must be strictly increasing, got ", cfg.milestones[i - 1],
                   " then ", cfg.milestones[i]);
    }
  }
  if (cfg.name == "cosine") {
    MINIDL_CHECK(cfg.total_epochs >= 1, who, ": total_epochs must be >= 1, got ",
                 cfg.total_epochs);
    MINIDL_CHECK(cfg.min_lr >= 0.0 && cfg.min_lr <= cfg.base_lr, who,
                 ": min_lr must be in [0, base_lr = ", cfg.base_lr, "], got ", cfg.min_lr);
  }
}

double LrSchedule::lr_at(double epoch) const {
  MINIDL_CHECK(std::isfinite(epoch) && epoch >= 0.0, "lr schedule '", cfg_.name,
               "': epoch must be >= 0, got ", epoch);
  const double base = cfg_.base_lr, W = cfg_.warmup_epochs;
  if (epoch < W) {
    const double s = cfg_.warmup_start_factor;
    return base * (s + (1.0 - s) * epoch / W);
  }
  const double e = std::floor(epoch - W);
  if (cfg_.name == "step") return base * std::pow(cfg_.gamma, std::floor(e / cfg_.step_size));
  if (cfg_.name == "multistep") {
    int passed = 0;
    for (int m : cfg_.milestones) passed += m <= e;
    return base * std::pow(cfg_.gamma, passed);
  }
  if (cfg_.name == "cosine") {
    const double T = cfg_.total_epochs;
    return cfg_.min_lr +
           (base - cfg_.min_lr) * (1.0 + std::cos(std::numbers::pi * std::min(e, T) / T)) / 2.0;
  }
  return base;  // constant
}

std::string LrSchedule::describe() const {
  std::string s;
  if (cfg_.name == "step")
    s = str("step(base_lr=", cfg_.base_lr, ", step_size=", cfg_.step_size, ", gamma=", cfg_.gamma,
            ")");
  else if (cfg_.name == "multistep") {
    std::string ms;
    for (int m : cfg_.milestones) ms += (ms.empty() ? "" : ", ") + std::to_string(m);
    s = str("multistep(base_lr=", cfg_.base_lr, ", milestones=[", ms, "], gamma=", cfg_.gamma, ")");
  } else if (cfg_.name == "cosine")
    s = str("cosine(base_lr=", cfg_.base_lr, ", min_lr=", cfg_.min_lr,
            ", total_epochs=", cfg_.total_epochs, ")");
  else
    s = str("constant(base_lr=", cfg_.base_lr, ")");
  if (cfg_.warmup_epochs > 0.0)
    s += str(" after linear warm-up over ", cfg_.warmup_epochs, " epochs from ",
             cfg_.warmup_start_factor * cfg_.base_lr);
  return s;
}

}  // namespace minidl

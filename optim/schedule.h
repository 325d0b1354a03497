// Learning-rate schedules, evaluated at a (fractional) epoch so that they can be applied per
// iteration or per epoch.
//
// With e = floor(epoch), the completed epochs, and W = warmup_epochs:
//   step:      lr = base * gamma^floor(e / step_size)                    (torch StepLR)
//   multistep: lr = base * gamma^(number of milestones <= e)             (torch MultiStepLR)
//   cosine:    lr = min + (base - min) (1 + cos(pi min(c, T) / T)) / 2   (torch CosineAnnealingLR,
//              c = max(0, e - ceil(W)) and T = total_epochs, both counted after warm-up; held at
//              min_lr from c = T on)
//   constant:  lr = base
// Step sizes and milestones are epochs of the run, whatever the warm-up (--milestones 30,60 decays
// at epochs 30 and 60 also after --warmup 5); only the cosine counts its epochs after warm-up
// (ScheduleKind::after_warmup). StepLR/MultiStepLR/Cosine change once per epoch in torch
// (scheduler.step() once per epoch), hence the floor: they change at epoch boundaries only, also
// after a fractional warm-up. Warm-up changes every iteration, linearly as torch's
// LinearLR(start_factor, total_iters = W):
//   epoch < W:  lr = base * (s + (1 - s) epoch / W),   s = warmup_start_factor
// so it starts at s * base and reaches base at epoch W, where the schedule takes over. Without
// warm-up (W = 0) the schedules are exactly torch's.
//
// The schedule owns the base learning rate (ScheduleConfig::base_lr, `train --lr`): the optimizer
// keeps none and takes the lr of each step as an argument (optim/optimizer.h).
#pragma once

#include <string>
#include <vector>

#include "core/registry.h"

namespace minidl {

struct ScheduleConfig {
  std::string name = "step";  // an entry of schedules(): step | multistep | cosine | constant
  double base_lr = 0.1;
  int step_size = 20;              // step
  double gamma = 0.5;              // step, multistep
  std::vector<int> milestones;     // multistep, strictly increasing, >= 1
  int total_epochs = 20;           // cosine
  double min_lr = 0.0;             // cosine
  double warmup_epochs = 0.0;      // linear warm-up in front of the schedule
  double warmup_start_factor = 1.0 / 3.0;  // lr at epoch 0 is this times base_lr (torch's default)
};

class LrSchedule {
 public:
  explicit LrSchedule(const ScheduleConfig& cfg);  // validates, naming the bad field
  // epoch = completed epochs + fraction of the current one (>= 0).
  double lr_at(double epoch) const;
  // e.g. "step(base_lr=0.1, step_size=20, gamma=0.5)", plus the warm-up when there is one.
  std::string describe() const;
  const ScheduleConfig& config() const { return cfg_; }

 private:
  ScheduleConfig cfg_;
};

// What a schedule's registry entry holds besides its name and help line. `who` in messages is
// "lr schedule '<name>'".
struct ScheduleKind {
  // Throws minidl::Error naming the field when a setting this schedule reads is out of range.
  void (*check)(const ScheduleConfig& cfg, const std::string& who);
  // The lr after warm-up, at e = the completed epochs (an integer >= 0; counted from the end of
  // the warm-up when after_warmup).
  double (*lr)(const ScheduleConfig& cfg, double e);
  // "step(base_lr=0.1, step_size=20, gamma=0.5)"
  std::string (*describe)(const ScheduleConfig& cfg);
  // The schedule's epochs start after the warm-up (cosine, over total_epochs); false: they are
  // the run's epochs (step sizes and milestones).
  bool after_warmup = false;
};

// step, multistep, cosine, constant: for `train --schedule`, its --help and LrSchedule.
const Registry<ScheduleKind>& schedules();

}  // namespace minidl

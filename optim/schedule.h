// Learning-rate schedules, evaluated at a (fractional) epoch so that they can be applied per
// iteration or per epoch.
//
//   step:      lr = base * gamma^floor(epoch / step_size)                 (torch StepLR)
//   multistep: lr = base * gamma^(number of milestones <= epoch)          (torch MultiStepLR)
//   cosine:    lr = min + (base - min) (1 + cos(pi epoch / total)) / 2    (torch CosineAnnealingLR)
//   constant:  lr = base
// Warm-up (optional, in epochs): lr ramps linearly from base/warmup_epochs... see schedule.cpp; the
// decay schedule then runs on (epoch - warmup) so warm-up sits in front of it.
// StepLR/MultiStepLR/Cosine change per epoch in torch (scheduler.step() once per epoch), so those
// use floor(epoch); warm-up changes every iteration.
#pragma once

#include <string>
#include <vector>

namespace minidl {

struct ScheduleConfig {
  std::string name = "step";  // step | multistep | cosine | constant
  double base_lr = 0.1;
  int step_size = 20;              // step
  double gamma = 0.5;              // step, multistep
  std::vector<int> milestones;     // multistep
  int total_epochs = 20;           // cosine
  double min_lr = 0.0;             // cosine
  double warmup_epochs = 0.0;      // linear warm-up in front of the schedule
};

class LrSchedule {
 public:
  explicit LrSchedule(const ScheduleConfig& cfg);  // validates, naming the bad field
  // epoch = completed epochs + fraction of the current one.
  double lr_at(double epoch) const;
  std::string describe() const;

 private:
  ScheduleConfig cfg_;
};

}  // namespace minidl

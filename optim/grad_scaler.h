// Dynamic loss scaling for float16 training, with torch.amp.GradScaler's rules and defaults:
//
//   the loss gradient is multiplied by the scale S before backward (S = 65536 at first), so that
//   small gradients survive float16's range; after backward the model's gradients are divided by S
//   and checked: if any is inf or NaN the optimizer step is skipped (the weights and the optimizer
//   state stay as they were) and S halves; after 2000 consecutive clean steps S doubles.
//
//   update(found_inf):  found_inf:  S *= 0.5 (backoff), tracker = 0
//                       otherwise:  tracker += 1; if tracker == 2000: S *= 2 (growth), tracker = 0
//
// S is kept as a float32 value as torch keeps it (a power of two while the factors are 2 and 0.5),
// and its state (scale, growth tracker) goes into the checkpoint so that a resumed run takes the
// same steps (io/checkpoint.h). bfloat16 needs no scaling (float32's exponent range); the trainer
// builds a disabled scaler there, for which scale() is 1 and unscale() only checks.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace minidl {

struct GradScalerConfig {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

struct GradScalerState {
  double scale = 65536.0;
  int64_t growth_tracker = 0;  // clean steps since the last change of scale
};

class GradScaler {
 public:
  explicit GradScaler(bool enabled, GradScalerConfig cfg = {});

  bool enabled() const { return enabled_; }
  double scale() const { return enabled_ ? state_.scale : 1.0; }
  const GradScalerState& state() const { return state_; }
  void load_state(const GradScalerState& s);

  // dloss *= S (float32, before backward).
  void scale_loss_grad(Tensor& dloss);
  // grads /= S and returns whether any gradient is inf or NaN (then the step must be skipped).
  // Reads one int32 back from the gradients' device.
  bool unscale(Tensor& grads);
  // The state machine above.
  void update(bool found_inf);

 private:
  bool enabled_;
  GradScalerConfig cfg_;
  GradScalerState state_;
  Tensor found_inf_;  // int32 scalar on the gradients' device
};

}  // namespace minidl

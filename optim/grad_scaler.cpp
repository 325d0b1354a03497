// GradScaler (rules in grad_scaler.h): the host-side state machine; the device work is the
// grad_scale op (kernels/grad_scale.h).
#include "optim/grad_scaler.h"

#include <cmath>

#include "kernels/grad_scale.h"

namespace minidl {

GradScaler::GradScaler(bool enabled, GradScalerConfig cfg) : enabled_(enabled), cfg_(cfg) {
  MINIDL_CHECK(cfg.init_scale > 0 && std::isfinite(cfg.init_scale) && cfg.growth_factor > 1 &&
                   cfg.backoff_factor > 0 && cfg.backoff_factor < 1 && cfg.growth_interval >= 1,
               "GradScaler: expected init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1 and "
               "growth_interval >= 1, got ",
               cfg.init_scale, ", ", cfg.growth_factor, ", ", cfg.backoff_factor, ", ",
               cfg.growth_interval);
  state_.scale = static_cast<float>(cfg.init_scale);
}

void GradScaler::load_state(const GradScalerState& s) {
  MINIDL_CHECK(s.scale > 0 && std::isfinite(s.scale) && s.growth_tracker >= 0 &&
                   s.growth_tracker < cfg_.growth_interval,
               "GradScaler: invalid saved state: scale ", s.scale, ", growth tracker ",
               s.growth_tracker, " (the checkpoint's loss_scale metadata)");
  state_ = s;
}

void GradScaler::scale_loss_grad(Tensor& dloss) {
  if (!enabled_) return;
  ensure_tensor(found_inf_, Shape{}, DType::I32, dloss.device());
  found_inf_.zero_();
  // An overflow here shows up again in the gradients, where unscale() finds it.
  scale_and_check_finite(dloss, state_.scale, found_inf_);
}

bool GradScaler::unscale(Tensor& grads) {
  ensure_tensor(found_inf_, Shape{}, DType::I32, grads.device());
  found_inf_.zero_();
  // float32 1/S as torch computes it (S.double().reciprocal().float()): exact for powers of two.
  scale_and_check_finite(grads, static_cast<float>(1.0 / scale()), found_inf_);
  return found_inf_.item<int32_t>() != 0;
}

void GradScaler::update(bool found_inf) {
  if (!enabled_) return;
  if (found_inf) {
    state_.scale = static_cast<float>(state_.scale * cfg_.backoff_factor);
    state_.growth_tracker = 0;
    return;
  }
  if (++state_.growth_tracker == cfg_.growth_interval) {
    state_.scale = static_cast<float>(state_.scale * cfg_.growth_factor);
    state_.growth_tracker = 0;
  }
}

}  // namespace minidl

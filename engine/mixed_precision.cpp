// The mixed-precision policy and its training step (mixed_precision.h).
#include "engine/mixed_precision.h"

#include "kernels/convert.h"

namespace minidl {

const Registry<Precision>& precisions() {
  using Entry = Registry<Precision>::Entry;
  static const Registry<Precision> r(
      "precision",
      std::vector<Entry>{
          {"fp32", "float32 everywhere", Precision::FP32},
          {"bf16", "bfloat16 activations, float32 accumulation and master weights (autocast)",
           Precision::BF16},
          {"fp16", "float16 activations as bf16, plus dynamic loss scaling (GradScaler)",
           Precision::FP16},
      });
  return r;
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::FP32: return "fp32";
    case Precision::BF16: return "bf16";
    case Precision::FP16: return "fp16";
  }
  return "?";
}

DType activation_dtype(Precision p) {
  switch (p) {
    case Precision::BF16: return DType::BF16;
    case Precision::FP16: return DType::F16;
    default: return DType::F32;
  }
}

GradScaler make_grad_scaler(Precision p) { return GradScaler(p == Precision::FP16); }

Tensor model_input(const Tensor& images, DType dtype, Layout layout) {
  return converted(images, dtype, layout);  // the cast and the transpose in one pass
}

bool train_step(Module& model, SoftmaxCrossEntropy& criterion, Optimizer& opt, GradScaler& scaler,
                StepPolicy policy, const Tensor& images, const Tensor& labels, double lr,
                const StepHooks& hooks) {
  const Precision p = policy.precision;
  auto run = [](const std::function<void()>& hook) {
    if (hook) hook();
  };
  model.zero_grad();  // one memset of the model's flat gradient buffer
  if (p == Precision::FP32) {
    const Tensor x = model_input(images, images.dtype(), policy.layout);
    criterion.forward(model.forward(x, Mode::Train), labels);
    run(hooks.before_backward);
    model.backward(criterion.backward());
    run(hooks.after_backward);
    run(hooks.before_update);
    opt.step(lr);
    return true;
  }
  const DType lp = activation_dtype(p);
  const Tensor logits = model.forward(model_input(images, lp, policy.layout), Mode::Train);
  criterion.forward(to_dtype(logits, DType::F32), labels);  // softmax-CE and the loss in float32
  Tensor dlogits = criterion.backward();
  scaler.scale_loss_grad(dlogits);
  run(hooks.before_backward);
  model.backward(to_dtype(dlogits, lp));
  run(hooks.after_backward);
  if (scaler.enabled()) {
    Tensor grads = model.flat_parameters().grads();
    const bool found_inf = scaler.unscale(grads);
    scaler.update(found_inf);
    if (found_inf) return false;
  }
  run(hooks.before_update);
  opt.step(lr);
  return true;
}

}  // namespace minidl

// Mixed precision (--precision fp32|bf16|fp16) with torch.autocast's policy, and one training step
// under it, shared by `train` (engine/trainer.cpp) and `bench_train`.
//
//   fp32  every tensor float32 (the default; the step is zero_grad, forward, loss, backward, step).
//   bf16  the batch is rounded to bfloat16 once; every layer then computes from and stores 16-bit
//   fp16  activations (float16 likewise):
//           conv2d, linear: 16-bit inputs and a 16-bit copy of the float32 weight made per forward,
//             float32 accumulation, 16-bit output; their weight and bias gradients accumulate in
//             float32 into the float32 master gradients (layers/conv2d.cpp, layers/linear.cpp);
//           batchnorm: 16-bit x and y, float32 statistics, parameters and running statistics;
//           activations, pooling, the residual sums: 16-bit in and out, float32 math;
//         the logits are converted to float32 for softmax-cross-entropy and the loss; the loss
//         gradient goes back to 16 bits; the optimizer updates the float32 master weights from the
//         float32 gradient buffer. Activation memory halves.
//   fp16  adds dynamic loss scaling (optim/grad_scaler.h, GradScaler's rules): the loss gradient is
//         multiplied by the scale before backward, the gradients divided by it after; a step with
//         an inf or NaN gradient is skipped.
//
// Which backend computes each op at 16 bits is the op table's dtype column (kernels/backend.h): on
// the CPU, bfloat16 convolutions run on oneDNN where the CPU has AVX512_BF16 and everything else on
// cpu-reference, float32 math on 16-bit memory (vectorised with AVX-512 where the CPU has it,
// kernels/cpu_simd.h); on CUDA the memory-bound ops (batchnorm,
// activations, pooling, add, dropout), convert, and conv2d, linear and matmul (tensor cores:
// gemm_tc or cublasGemmEx) have 16-bit rows. An op without a 16-bit row on
// the backend the device's settings select stops the first step with check_backend's error naming
// the op, the backend and --precision fp32 (tests/cuda/mixed_precision_cuda_test.cpp).
//
// Channels-last (--channels-last, any precision): the batch is converted to NHWC at the model's
// input, in the same pass as the 16-bit cast (model_input); every layer then keeps its input's
// layout (layers/module.h) up to the Flatten before the classifier, which converts back to
// PyTorch's flatten order (a relabel, no copy, after a global pool). The logits and everything
// after them (loss, gradients of the parameters, optimizer) are as without it. Evaluation
// (engine/evaluate.cpp) and predict convert their batches with model_input too.
#pragma once

#include <cstdint>

#include "core/registry.h"
#include "core/tensor.h"
#include <functional>

#include "layers/loss.h"
#include "layers/module.h"
#include "optim/grad_scaler.h"
#include "optim/optimizer.h"

namespace minidl {

enum class Precision : uint8_t { FP32, BF16, FP16 };

// fp32, bf16, fp16: the --precision flag's choices.
const Registry<Precision>& precisions();
const char* precision_name(Precision p);
// The dtype activations are stored in: float32, bfloat16, float16.
DType activation_dtype(Precision p);
// The loss scaler the precision needs: enabled for fp16 only.
GradScaler make_grad_scaler(Precision p);

// The layout of 4-D activations: NHWC with --channels-last, else NCHW.
inline Layout activation_layout(bool channels_last) {
  return channels_last ? Layout::NHWC : Layout::NCHW;
}
// The model's input: `images` (the loader's float32 NCHW batch) in `dtype` and `layout`, converted
// in one pass (kernels/convert.h converted); `images` itself when it has both.
Tensor model_input(const Tensor& images, DType dtype, Layout layout);

// A training step's activations: their precision, and the layout of the 4-D ones. Converts from a
// Precision (NCHW), so train_step(..., Precision::BF16, ...) reads as before.
struct StepPolicy {
  StepPolicy(Precision p, Layout l = Layout::NCHW) : precision(p), layout(l) {}  // NOLINT: implicit
  Precision precision;
  Layout layout;
};

// One training step of `model` on (images, labels) under the policy's precision (above) and
// layout. images are float32 NCHW (the loader's output). Returns false when the step was skipped
// (fp16: a gradient was inf or NaN; the weights and the optimizer state are untouched and the
// scale halves), true otherwise.
//
// `hooks` lets the caller act at two points of the step without copying it: after_backward runs
// once backward has written every gradient (still loss-scaled under fp16: the data-parallel
// all-reduce finishes here, so every rank unscales, and skips, on the same gradients);
// before_update runs on the gradients the optimizer will apply (unscaled; --trace-steps reads them).
struct StepHooks {
  std::function<void()> before_backward;  // e.g. arm the bucketed all-reduce (dist/grad_sync.h)
  std::function<void()> after_backward;
  std::function<void()> before_update;
};
bool train_step(Module& model, SoftmaxCrossEntropy& criterion, Optimizer& opt, GradScaler& scaler,
                StepPolicy policy, const Tensor& images, const Tensor& labels, double lr,
                const StepHooks& hooks = {});

}  // namespace minidl

// Softmax cross-entropy loss (torch.nn.CrossEntropyLoss, mean reduction, optional label
// smoothing). Not a Module: it takes labels as a second input and returns a scalar.
//
//   forward(logits (N, K), labels int32 (N)) -> loss (1,) on the logits' device (no host sync)
//   backward() -> dL/dlogits (N, K), for the last forward
//   correct() -> int32 (1,) count of top-1 correct predictions in the last forward
#pragma once

#include "core/tensor.h"

namespace minidl {

class SoftmaxCrossEntropy {
 public:
  explicit SoftmaxCrossEntropy(double label_smoothing = 0.0);
  Tensor forward(const Tensor& logits, const Tensor& labels);
  Tensor backward();
  const Tensor& loss() const { return loss_; }
  const Tensor& correct() const { return correct_; }
  const Tensor& probs() const { return probs_; }

 private:
  double smoothing_;
  Tensor labels_, loss_, probs_, correct_, dlogits_;
};

}  // namespace minidl

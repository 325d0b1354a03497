// SoftmaxCrossEntropy (layers/loss.h): owns the probability, loss, count and gradient buffers,
// allocated once per logits shape; the math is kernels/softmax_xent.h.
#include "layers/loss.h"

#include "kernels/softmax_xent.h"

namespace minidl {

SoftmaxCrossEntropy::SoftmaxCrossEntropy(double label_smoothing) : smoothing_(label_smoothing) {
  MINIDL_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
               "SoftmaxCrossEntropy: label_smoothing must be in [0, 1], got ", label_smoothing);
}

Tensor SoftmaxCrossEntropy::forward(const Tensor& logits, const Tensor& labels) {
  MINIDL_CHECK(logits.defined() && logits.dim() == 2,
               "SoftmaxCrossEntropy: logits must be (N, K), got ", logits.describe());
  ensure_tensor(loss_, Shape{1}, logits.dtype(), logits.device());
  ensure_tensor(probs_, logits.shape(), logits.dtype(), logits.device());
  ensure_tensor(correct_, Shape{1}, DType::I32, logits.device());
  softmax_xent_forward(loss_, probs_, correct_, logits, labels, smoothing_);
  labels_ = labels;
  return loss_;
}

Tensor SoftmaxCrossEntropy::backward() {
  MINIDL_CHECK(labels_.defined(), "SoftmaxCrossEntropy: backward called before forward");
  ensure_tensor(dlogits_, probs_.shape(), probs_.dtype(), probs_.device());
  softmax_xent_backward(dlogits_, probs_, labels_, smoothing_);
  return dlogits_;
}

}  // namespace minidl

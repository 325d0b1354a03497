// Softmax cross-entropy: argument checks, device dispatch and the CPU reference (formulas in
// softmax_xent.h, derivation in docs/backprop/softmax_xent.md). The CUDA kernels are in
// softmax_xent.cu.
//
// Work per row is O(K) and K is small (10 for CIFAR-10), so the CPU reference is a plain serial
// loop over rows: the batch sum is then always added in the same order, and the loss is the same
// number on every run and every thread count.
#include "kernels/softmax_xent.h"

#include <cmath>

namespace minidl {

namespace cpu {

// Index of the largest element of z[0..K), the first one on ties.
template <typename T>
int32_t argmax_row(const T* z, int64_t K) {
  int64_t best = 0;
  for (int64_t j = 1; j < K; ++j)
    if (z[j] > z[best]) best = j;
  return static_cast<int32_t>(best);
}

template <typename T>
void softmax_xent_forward(T* loss, T* probs, int32_t* correct, const T* logits,
                          const int32_t* labels, int64_t N, int64_t K, T eps) {
  // Accumulating the batch in double keeps float32 losses of large batches from drifting; it costs
  // nothing next to the exp() calls.
  double total = 0.0;
  int32_t hits = 0;
  for (int64_t i = 0; i < N; ++i) {
    const T* z = logits + i * K;
    T* p = probs + i * K;
    const int32_t t = labels[i];
    const int32_t top = argmax_row(z, K);
    hits += top == t;

    // Shift by the row maximum: every exponent is <= 0, so exp() cannot overflow, and the largest
    // term is exactly 1, so the sum cannot underflow to 0 and log(sum) is finite.
    const T m = z[top];
    T sum = 0;
    for (int64_t j = 0; j < K; ++j) sum += std::exp(z[j] - m);
    const T lse = std::log(sum);

    // -sum_j q_j log p_j with q_j = (1 - eps) [j == t] + eps / K, split into its two parts.
    T sum_logp = 0;
    for (int64_t j = 0; j < K; ++j) {
      const T logp = z[j] - m - lse;
      sum_logp += logp;
      p[j] = std::exp(logp);
    }
    const T logp_t = z[t] - m - lse;
    total += -static_cast<double>((T(1) - eps) * logp_t + eps / T(K) * sum_logp);
  }
  loss[0] = static_cast<T>(total / static_cast<double>(N));
  correct[0] = hits;
}

template <typename T>
void softmax_xent_backward(T* dz, const T* probs, const int32_t* labels, int64_t N, int64_t K,
                           T eps, T scale) {
  const T off = eps / T(K);  // q_ij for j != t_i
  const T on = T(1) - eps + off;  // q_ij for j == t_i
  const T s = scale / T(N);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < K; ++j)
      dz[i * K + j] = s * (probs[i * K + j] - (j == labels[i] ? on : off));
}

template <typename T>
void argmax_rows(int32_t* pred, const T* logits, int64_t N, int64_t K) {
  for (int64_t i = 0; i < N; ++i) pred[i] = argmax_row(logits + i * K, K);
}

}  // namespace cpu

namespace {

// `t` (the logits or probs) must be (N, K) with N, K >= 1.
void check_logits(const Tensor& t, const char* who, const char* what) {
  MINIDL_CHECK(t.defined() && t.dim() == 2, who, ": ", what, " must be 2-D (N, K), got ",
               t.describe());
  const int64_t N = t.size(0), K = t.size(1);
  MINIDL_CHECK(N >= 1 && K >= 1, who, ": ", what, " ", t.shape(),
               " must have at least one row and one class");
  MINIDL_CHECK(K < (int64_t(1) << 31), who, ": ", K, " classes do not fit the int32 argmax");
}

void check_labels(const Tensor& labels, const Tensor& logits, const char* who) {
  check_shape(labels, Shape{logits.size(0)}, who, "labels");
  check_dtype(labels, DType::I32, who, "labels");
  check_same_device(labels, logits, who);
}

// The CPU check the header promises: the first bad label, where it is, and the valid range.
void check_label_range(const int32_t* labels, int64_t N, int64_t K, const char* who) {
  for (int64_t i = 0; i < N; ++i)
    MINIDL_CHECK(labels[i] >= 0 && labels[i] < K, who, ": label ", labels[i], " at index ", i,
                 " is outside [0, ", K, ") (K = ", K, " classes)");
}

void check_smoothing(double eps, const char* who) {
  MINIDL_CHECK(eps >= 0.0 && eps <= 1.0, who, ": label_smoothing must be in [0, 1], got ", eps);
}

}  // namespace

const OpInfo& softmax_xent_op() {
  static const OpInfo op{
      "softmax_xent",
      "`softmax_xent_forward`, `softmax_xent_backward`, `argmax_rows`",
      {{Backend::CpuReference, "loops, stable log-sum-exp per row, the batch sum in double"},
       {Backend::CudaHandwritten, "a warp per row, shuffles for max and sum"}}};
  return op;
}

Backend select_softmax_xent_backend(const Device& d, DType dtype) {
  return select_backend(softmax_xent_op(), d, dtype);
}

void softmax_xent_forward(Tensor& loss, Tensor& probs, Tensor& correct, const Tensor& logits,
                          const Tensor& labels, double label_smoothing) {
  softmax_xent_forward(select_softmax_xent_backend(logits.device(), logits.dtype()), loss, probs,
                       correct, logits, labels, label_smoothing);
}

void softmax_xent_forward(Backend b, Tensor& loss, Tensor& probs, Tensor& correct,
                          const Tensor& logits, const Tensor& labels, double label_smoothing) {
  const char* who = "softmax_xent_forward";
  check_logits(logits, who, "logits");
  const int64_t N = logits.size(0), K = logits.size(1);
  check_labels(labels, logits, who);
  check_smoothing(label_smoothing, who);
  check_shape(loss, Shape{1}, who, "loss");
  check_shape(probs, logits.shape(), who, "probs");
  check_shape(correct, Shape{1}, who, "correct");
  check_dtype(loss, logits.dtype(), who, "loss");
  check_dtype(probs, logits.dtype(), who, "probs");
  check_dtype(correct, DType::I32, who, "correct");
  check_same_device(loss, logits, who);
  check_same_device(probs, logits, who);
  check_same_device(correct, logits, who);
  check_backend(softmax_xent_op(), b, logits.device(), logits.dtype(), who);
  if (b == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(cuda::softmax_xent_forward(
        loss.data<float>(), probs.data<float>(), correct.data<int32_t>(), logits.data<float>(),
        labels.data<int32_t>(), N, K, static_cast<float>(label_smoothing),
        cuda_context(logits.device())));
    return;
  }
  check_label_range(labels.data<int32_t>(), N, K, who);
  dispatch_floating(logits.dtype(), who, [&]<typename T>() {
    cpu::softmax_xent_forward<T>(loss.data<T>(), probs.data<T>(), correct.data<int32_t>(),
                                 logits.data<T>(), labels.data<int32_t>(), N, K,
                                 static_cast<T>(label_smoothing));
  });
}

void softmax_xent_backward(Tensor& dlogits, const Tensor& probs, const Tensor& labels,
                           double label_smoothing, double scale) {
  softmax_xent_backward(select_softmax_xent_backend(probs.device(), probs.dtype()), dlogits, probs,
                        labels, label_smoothing, scale);
}

void softmax_xent_backward(Backend b, Tensor& dlogits, const Tensor& probs, const Tensor& labels,
                           double label_smoothing, double scale) {
  const char* who = "softmax_xent_backward";
  check_logits(probs, who, "probs");
  const int64_t N = probs.size(0), K = probs.size(1);
  check_labels(labels, probs, who);
  check_smoothing(label_smoothing, who);
  check_shape(dlogits, probs.shape(), who, "dlogits");
  check_dtype(dlogits, probs.dtype(), who, "dlogits");
  check_same_device(dlogits, probs, who);
  check_backend(softmax_xent_op(), b, probs.device(), probs.dtype(), who);
  if (b == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(cuda::softmax_xent_backward(
        dlogits.data<float>(), probs.data<float>(), labels.data<int32_t>(), N, K,
        static_cast<float>(label_smoothing), static_cast<float>(scale),
        cuda_context(probs.device())));
    return;
  }
  check_label_range(labels.data<int32_t>(), N, K, who);
  dispatch_floating(probs.dtype(), who, [&]<typename T>() {
    cpu::softmax_xent_backward<T>(dlogits.data<T>(), probs.data<T>(), labels.data<int32_t>(), N, K,
                                  static_cast<T>(label_smoothing), static_cast<T>(scale));
  });
}

void argmax_rows(Tensor& pred, const Tensor& logits) {
  argmax_rows(select_softmax_xent_backend(logits.device(), logits.dtype()), pred, logits);
}

void argmax_rows(Backend b, Tensor& pred, const Tensor& logits) {
  const char* who = "argmax_rows";
  check_logits(logits, who, "logits");
  const int64_t N = logits.size(0), K = logits.size(1);
  check_shape(pred, Shape{N}, who, "pred");
  check_dtype(pred, DType::I32, who, "pred");
  check_same_device(pred, logits, who);
  check_backend(softmax_xent_op(), b, logits.device(), logits.dtype(), who);
  if (b == Backend::CudaHandwritten) {
    MINIDL_IF_CUDA(cuda::argmax_rows(pred.data<int32_t>(), logits.data<float>(), N, K,
                                     cuda_context(logits.device())));
    return;
  }
  dispatch_floating(logits.dtype(), who, [&]<typename T>() {
    cpu::argmax_rows<T>(pred.data<int32_t>(), logits.data<T>(), N, K);
  });
}

}  // namespace minidl

// Fused softmax + cross-entropy over logits z (N, K) and integer labels t (N), mean over the batch,
// with optional label smoothing eps (torch.nn.CrossEntropyLoss(label_smoothing=eps)):
//
//   log p_ij = z_ij - max_j z_ij - log sum_j exp(z_ij - max_j z_ij)      (log-sum-exp, stable)
//   q_ij     = (1 - eps) [j == t_i] + eps / K
//   loss     = -(1/N) sum_i sum_j q_ij log p_ij
//   dz_ij    = scale * (p_ij - q_ij) / N                                   (derivation:
//                                                                         docs/backprop/softmax_xent.md)
//
// Forward also counts correct top-1 predictions (argmax_j z_ij == t_i, first index on ties) so
// accuracy needs no second pass. loss (1,) and correct (1,) stay on the device until the caller
// reads them. Labels outside [0, K) are an error (checked on the CPU; on the GPU the kernel turns
// them into a NaN loss, which the train loop reports).
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

// Backends: `cpu-reference`, `cuda-handwritten` (kernels/backend.h).
const OpInfo& softmax_xent_op();
Backend select_softmax_xent_backend(const Device& d, DType dtype);
// Each function below comes in a selecting form and an explicit one (first argument a Backend).

void softmax_xent_forward(Tensor& loss, Tensor& probs, Tensor& correct, const Tensor& logits,
                          const Tensor& labels, double label_smoothing = 0.0);
void softmax_xent_forward(Backend b, Tensor& loss, Tensor& probs, Tensor& correct,
                          const Tensor& logits, const Tensor& labels, double label_smoothing);
void softmax_xent_backward(Tensor& dlogits, const Tensor& probs, const Tensor& labels,
                           double label_smoothing = 0.0, double scale = 1.0);
void softmax_xent_backward(Backend b, Tensor& dlogits, const Tensor& probs, const Tensor& labels,
                           double label_smoothing, double scale);
// pred[i] = argmax_j logits[i, j] (int32), for confusion matrices.
void argmax_rows(Tensor& pred, const Tensor& logits);
void argmax_rows(Backend b, Tensor& pred, const Tensor& logits);

namespace cuda {
void softmax_xent_forward(float* loss, float* probs, int32_t* correct, const float* logits,
                          const int32_t* labels, int64_t N, int64_t K, float label_smoothing,
                          CudaContext& ctx);
void softmax_xent_backward(float* dlogits, const float* probs, const int32_t* labels, int64_t N,
                           int64_t K, float label_smoothing, float scale, CudaContext& ctx);
void argmax_rows(int32_t* pred, const float* logits, int64_t N, int64_t K, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

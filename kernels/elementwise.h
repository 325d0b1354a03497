// Elementwise arithmetic used by residual connections and gradient sums.
//
//   add:        out = a + b          (out may alias a or b). Backward: da = dout, db = dout.
//   add_scaled: out = a + alpha * b
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

// Backends: `cpu-reference`, `cuda-handwritten` (kernels/backend.h); both take bfloat16/float16.
const OpInfo& elementwise_op();
Backend select_elementwise_backend(const Device& d, DType dtype);
// Each function below comes in a selecting form and an explicit one (first argument a Backend).

void add(Tensor& out, const Tensor& a, const Tensor& b);
void add(Backend be, Tensor& out, const Tensor& a, const Tensor& b);
void add_scaled(Tensor& out, const Tensor& a, const Tensor& b, double alpha);
void add_scaled(Backend be, Tensor& out, const Tensor& a, const Tensor& b, double alpha);

namespace cuda {
void add_scaled(float* out, const float* a, const float* b, float alpha, int64_t n, CudaContext& ctx);
// bfloat16/float16: 16-byte vectors, float32 math (kernels/vec16.cuh).
void add_scaled(bf16* out, const bf16* a, const bf16* b, float alpha, int64_t n, CudaContext& ctx);
void add_scaled(f16* out, const f16* a, const f16* b, float alpha, int64_t n, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

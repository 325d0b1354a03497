// Layout primitives shared by the convolution (im2col + GEMM) and the linear layer:
//
//   nkl_to_knl   out (K, nb, L) = in (nb, K, L) rearranged
//   knl_to_nkl   out (nb, K, L) = in (K, nb, L) rearranged, plus bias[k] when given
//   channel_sum_accumulate   db[k] += sum over n, l of dy[n, k, l]     (bias gradients)
//
// The products of both layers produce (K, nb*L) matrices, the images side by side, and these turn
// them into (and out of) NCHW. They are primitives of those algorithms rather than ops of their
// own: each runs where its pointers live (`dev`), on the CPU loops below or the CUDA kernels of
// layout.cu, whichever backend the calling op runs on.
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"

namespace minidl {

template <typename T>
void nkl_to_knl(Device dev, T* out, const T* in, int64_t nb, int64_t K, int64_t L);
template <typename T>
void knl_to_nkl(Device dev, T* out, const T* in, const T* bias, int64_t nb, int64_t K, int64_t L);
template <typename T>
void channel_sum_accumulate(Device dev, T* db, const T* dy, int64_t N, int64_t K, int64_t L);
// Tensor form: db (K) += sum over n, l of dy (N, K, L); shapes, device and dtype checked.
void channel_sum_accumulate(Tensor& db, const Tensor& dy);

namespace cuda {
void nkl_to_knl(float* out, const float* in, int64_t nb, int64_t K, int64_t L, CudaContext& ctx);
// The same for bfloat16/float16 (the 16-bit patterns copied; conv2d's 16-bit weight gradient).
void nkl_to_knl16(uint16_t* out, const uint16_t* in, int64_t nb, int64_t K, int64_t L,
                  CudaContext& ctx);
void knl_to_nkl(float* out, const float* in, const float* bias, int64_t nb, int64_t K, int64_t L,
                CudaContext& ctx);
void channel_sum_accumulate(float* db, const float* dy, int64_t N, int64_t K, int64_t L,
                            CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

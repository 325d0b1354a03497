// Dtype conversion between the floating types: out[i] = in[i] converted, elementwise.
//
//   float32/float64 -> bfloat16/float16   round to nearest even (core/half.h, as CUDA rounds);
//                                         float64 first rounds to float32 (the only path that
//                                         rounds twice; float64 is the test reference, never
//                                         converted to 16 bits in training)
//   bfloat16/float16 -> float32/float64   exact
//   float32 <-> float64                   a C++ conversion (round to nearest)
//
// Layout: out may have another layout than in (kernels 4-D, same logical shape (N, C, H, W); see
// core/tensor.h): then convert also moves every element to its place in out's layout, in the same
// pass as the dtype conversion. Viewing each image as a matrix, that is a transpose:
//   NCHW -> NHWC   out[n, p, c] = in[n, c, p]     p = h*W + w, over the H*W pixels
//   NHWC -> NCHW   out[n, c, p] = in[n, p, c]
// i.e. out[n, b, a] = in[n, a, b] with (A, B) = (C, H*W), resp. (H*W, C). --channels-last uses it
// at the model's input (the batch, cast to 16 bits in the same pass) and where a flatten leaves
// the convolutional part (layers/basic.h).
//
// Mixed precision (--precision bf16|fp16) uses it at the edges of its policy: the float32 master
// weights cast to the low precision before a convolution or product, the input batch cast once,
// the logits cast back to float32 for the loss. No gradient: convert's backward is convert.
//
// Backends: cpu-reference (a loop; every pair of float32, float64, bfloat16, float16) and
// cuda-handwritten (one thread per element; float32, bfloat16, float16).
#pragma once

#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

const OpInfo& convert_op();
Backend select_convert_backend(const Device& d, DType dtype);

// out and in: same device, same number of elements, any two floating dtypes; the same shape when
// their layouts differ. The backend must take both dtypes. Selecting and explicit forms.
void convert(Tensor& out, const Tensor& in);
void convert(Backend b, Tensor& out, const Tensor& in);
// A new tensor of `dtype` and `layout` on in's device holding in converted, in one pass; `in`
// itself when it has both, relabelled when only the layout differs and the layouts coincide
// (core/tensor.h). to_dtype and to_layout are its two halves.
Tensor converted(const Tensor& in, DType dtype, Layout layout);
// converted(in, dtype, in.layout()).
Tensor to_dtype(const Tensor& in, DType dtype);
// converted(in, in.dtype(), layout).
Tensor to_layout(const Tensor& in, Layout layout);

namespace cuda {
// out (dtype `to`) = in (dtype `from`), n elements; float32, bfloat16, float16.
void convert(void* out, DType to, const void* in, DType from, int64_t n, CudaContext& ctx);
// The same with the transpose above: out[n, b, a] = in[n, a, b], nb images of A x B.
void convert_transpose(void* out, DType to, const void* in, DType from, int64_t nb, int64_t A,
                       int64_t B, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

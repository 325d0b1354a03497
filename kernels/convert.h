// Dtype conversion between the floating types: out[i] = in[i] converted, elementwise.
//
//   float32/float64 -> bfloat16/float16   round to nearest even (core/half.h, as CUDA rounds);
//                                         float64 first rounds to float32 (the only path that
//                                         rounds twice; float64 is the test reference, never
//                                         converted to 16 bits in training)
//   bfloat16/float16 -> float32/float64   exact
//   float32 <-> float64                   a C++ conversion (round to nearest)
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

// out and in: same device, same number of elements, any two floating dtypes. The backend must
// take both dtypes. Selecting and explicit forms.
void convert(Tensor& out, const Tensor& in);
void convert(Backend b, Tensor& out, const Tensor& in);
// A new tensor of `dtype` on in's device holding in converted; `in` itself when it has that dtype.
Tensor to_dtype(const Tensor& in, DType dtype);

namespace cuda {
// out (dtype `to`) = in (dtype `from`), n elements; float32, bfloat16, float16.
void convert(void* out, DType to, const void* in, DType from, int64_t n, CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

// Tensor-core matrix product (WMMA), row-major like kernels/gemm.h:
//
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]      for b in [0, batch)
//
// A and B are bfloat16 or float16 (`in`: DType::BF16 or DType::F16, both operands the same), C is
// float32, and the products are accumulated in float32 on the tensor cores (sm_80 or newer). Any
// M, N, K, leading dimensions and strides work (tiles are padded with zeros in shared memory and
// stores are predicated); 16-byte vector loads are used where a matrix's pointer, leading
// dimension and batch stride allow them. beta == 0 never reads C.
//
// Accuracy: each product of two 16-bit values is exact in float32, so against the exact product of
// the given inputs the error is that of K float32 additions (in the tensor cores' order) plus the
// epilogue's roundings: |C - C_exact| <= |alpha| gamma_K sum_k |a_k b_k| + gamma_3 (|alpha| sum_k
// |a_k b_k| + |beta C|), gamma_n = n u / (1 - n u), u = 2^-23 (tests/cuda/gemm_tc_test.cpp).
//
// The 16-bit rows of the op table's cuda-handwritten backend reach it through gemm_lowp
// (kernels/gemm.h): matmul, linear and conv2d's im2col products.
#pragma once

#include "core/cuda_context.h"
#include "core/dtype.h"
#include "kernels/gemm.h"

namespace minidl::cuda {

void gemm_tc(const GemmShape& s, DType in, float alpha, const void* A, const void* B, float beta,
             float* C, CudaContext& ctx);

}  // namespace minidl::cuda

// CUDA dtype conversion between float32, bfloat16 and float16 (convert.h): a grid-stride loop,
// one thread per element, converting through float with the functions of core/half.h (the same
// code the CPU loop runs, so both give the same bits).
#include "core/cuda_check.h"
#include "core/half.h"
#include "kernels/convert.h"

namespace minidl::cuda {

namespace {

template <typename In, typename Out>
__global__ void convert_kernel(Out* out, const In* in, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_float<Out>(to_float(in[i]));
}

template <typename In, typename Out>
void launch(void* out, const void* in, int64_t n, CudaContext& ctx) {
  const int threads = 256;
  convert_kernel<In, Out><<<grid_stride_blocks(ctx, n, threads), threads, 0, ctx.stream>>>(
      static_cast<Out*>(out), static_cast<const In*>(in), n);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename In>
void launch_from(void* out, DType to, const void* in, int64_t n, CudaContext& ctx) {
  switch (to) {
    case DType::F32: return launch<In, float>(out, in, n, ctx);
    case DType::BF16: return launch<In, bf16>(out, in, n, ctx);
    case DType::F16: return launch<In, f16>(out, in, n, ctx);
    default: throw_error(str("convert (CUDA): cannot convert into ", to));
  }
}

// out[i, b, a] = in[i, a, b]: one thread per output element, so the writes are coalesced and
// the reads stride by B (a tiled shared-memory transpose would coalesce both; this runs once per
// batch at the model's input and at a flatten, never per layer).
template <typename In, typename Out>
__global__ void convert_transpose_kernel(Out* out, const In* in, int64_t nb, int64_t A,
                                         int64_t B) {
  const int64_t n = nb * A * B;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n;
       o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = o / (A * B), r = o - i * A * B, b = r / A, a = r - b * A;
    out[o] = from_float<Out>(to_float(in[(i * A + a) * B + b]));
  }
}

template <typename In, typename Out>
void launch_transpose(void* out, const void* in, int64_t nb, int64_t A, int64_t B,
                      CudaContext& ctx) {
  const int threads = 256;
  convert_transpose_kernel<In, Out>
      <<<grid_stride_blocks(ctx, nb * A * B, threads), threads, 0, ctx.stream>>>(
          static_cast<Out*>(out), static_cast<const In*>(in), nb, A, B);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

template <typename In>
void launch_transpose_from(void* out, DType to, const void* in, int64_t nb, int64_t A, int64_t B,
                           CudaContext& ctx) {
  switch (to) {
    case DType::F32: return launch_transpose<In, float>(out, in, nb, A, B, ctx);
    case DType::BF16: return launch_transpose<In, bf16>(out, in, nb, A, B, ctx);
    case DType::F16: return launch_transpose<In, f16>(out, in, nb, A, B, ctx);
    default: throw_error(str("convert (CUDA): cannot convert into ", to));
  }
}

}  // namespace

void convert_transpose(void* out, DType to, const void* in, DType from, int64_t nb, int64_t A,
                       int64_t B, CudaContext& ctx) {
  if (nb * A * B == 0) return;
  switch (from) {
    case DType::F32: return launch_transpose_from<float>(out, to, in, nb, A, B, ctx);
    case DType::BF16: return launch_transpose_from<bf16>(out, to, in, nb, A, B, ctx);
    case DType::F16: return launch_transpose_from<f16>(out, to, in, nb, A, B, ctx);
    default: throw_error(str("convert (CUDA): cannot convert from ", from));
  }
}

void convert(void* out, DType to, const void* in, DType from, int64_t n, CudaContext& ctx) {
  if (n == 0) return;
  switch (from) {
    case DType::F32: return launch_from<float>(out, to, in, n, ctx);
    case DType::BF16: return launch_from<bf16>(out, to, in, n, ctx);
    case DType::F16: return launch_from<f16>(out, to, in, n, ctx);
    default: throw_error(str("convert (CUDA): cannot convert from ", from));
  }
}

}  // namespace minidl::cuda

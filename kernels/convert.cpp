// Dtype conversion: argument checks, dispatch and the CPU loop (formulas in convert.h). The CUDA
// kernel is in convert.cu; both convert one element with the functions of core/half.h.
#include "kernels/convert.h"

#include "kernels/cpu_simd.h"

namespace minidl {

const OpInfo& convert_op() {
  static const OpInfo op{
      "convert",
      "`convert`, `to_dtype`",
      {{Backend::CpuReference, "a loop, core/half.h per element",
        {DType::F32, DType::F64, DType::BF16, DType::F16}},
       {Backend::CudaHandwritten, "one thread per element, core/half.h",
        {DType::F32, DType::BF16, DType::F16}}}};
  return op;
}

Backend select_convert_backend(const Device& d, DType dtype) {
  return select_backend(convert_op(), d, dtype);
}

void convert(Tensor& out, const Tensor& in) {
  convert(select_convert_backend(in.device(), in.dtype()), out, in);
}

void convert(Backend b, Tensor& out, const Tensor& in) {
  const char* who = "convert";
  MINIDL_CHECK(out.numel() == in.numel(), who, ": cannot convert ", in.describe(), " into ",
               out.describe(), " (different element counts)");
  check_same_device(out, in, who);
  MINIDL_CHECK(is_floating(in.dtype()) && is_floating(out.dtype()), who,
               ": converts between float32, float64, bfloat16 and float16, got ", in.describe(),
               " into ", out.describe());
  check_backend(convert_op(), b, in.device(), in.dtype(), who);
  check_backend(convert_op(), b, in.device(), out.dtype(), who);
  const int64_t n = in.numel();
  // A layout change: out[n, b, a] = in[n, a, b] per image (convert.h).
  const bool transpose = in.layout() != out.layout() && !layouts_coincide(in.shape());
  int64_t nb = 1, A = 1, B = 1;
  if (transpose) {
    MINIDL_CHECK(in.shape() == out.shape(), who, ": a layout change keeps the shape, got ",
                 in.describe(), " into ", out.describe());
    const int64_t C = in.size(1), HW = in.size(2) * in.size(3);
    nb = in.size(0);
    A = in.layout() == Layout::NCHW ? C : HW;
    B = in.layout() == Layout::NCHW ? HW : C;
  }
  if (b == Backend::CudaHandwritten) {
    if (transpose)
      MINIDL_IF_CUDA(cuda::convert_transpose(out.raw_data(), out.dtype(), in.raw_data(),
                                             in.dtype(), nb, A, B, cuda_context(in.device())));
    else
      MINIDL_IF_CUDA(cuda::convert(out.raw_data(), out.dtype(), in.raw_data(), in.dtype(), n,
                                   cuda_context(in.device())));
    return;
  }
  if (transpose) {
    dispatch_storage(in.dtype(), who, [&]<typename In>() {
      dispatch_storage(out.dtype(), who, [&]<typename Out>() {
        const In* src = static_cast<const In*>(in.raw_data());
        Out* dst = static_cast<Out*>(out.raw_data());
        // One (image, output row) per task; the inner loop writes out contiguously and reads in
        // with stride B.
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t i = 0; i < nb; ++i)
          for (int64_t bi = 0; bi < B; ++bi) {
            const In* s = src + i * A * B + bi;
            Out* d = dst + (i * B + bi) * A;
            for (int64_t a = 0; a < A; ++a)
              d[a] = narrow<Out>(static_cast<compute_t<Out>>(widen(s[a * B])));
          }
      });
    });
    return;
  }
  dispatch_storage(in.dtype(), who, [&]<typename In>() {
    dispatch_storage(out.dtype(), who, [&]<typename Out>() {
      const In* src = static_cast<const In*>(in.raw_data());
      Out* dst = static_cast<Out*>(out.raw_data());
      // The AVX-512 copy (cpu_simd.h) when either side is 16-bit.
      using Wide = std::conditional_t<cpu::is_16bit_storage_v<In>, In, Out>;
      cpu::parallel_chunks<Wide>(n, [&](int64_t begin, int64_t end) {
#pragma omp simd
        for (int64_t i = begin; i < end; ++i)
          dst[i] = narrow<Out>(static_cast<compute_t<Out>>(widen(src[i])));
      });
    });
  });
}

Tensor converted(const Tensor& in, DType dtype, Layout layout) {
  if (in.dtype() == dtype) {
    if (in.layout() == layout) return in;
    if (layouts_coincide(in.shape())) return in.relabel(layout);
  }
  Tensor out = Tensor::empty(in.shape(), dtype, in.device(), layout);
  convert(out, in);
  return out;
}

Tensor to_dtype(const Tensor& in, DType dtype) { return converted(in, dtype, in.layout()); }

Tensor to_layout(const Tensor& in, Layout layout) { return converted(in, in.dtype(), layout); }

}  // namespace minidl

// Layout primitives (layout.h): the CPU loops, and the device dispatch of every primitive. The
// CUDA kernels are in layout.cu.
#include "kernels/layout.h"

#include <cstring>

namespace minidl {

namespace {

namespace cpu {

template <typename T>
void nkl_to_knl(T* out, const T* in, int64_t nb, int64_t K, int64_t L) {
#pragma omp parallel for if (nb * K * L > 65536)
  for (int64_t nk = 0; nk < nb * K; ++nk) {
    const int64_t n = nk / K, k = nk % K;
    std::memcpy(out + (k * nb + n) * L, in + nk * L, sizeof(T) * L);
  }
}

template <typename T>
void knl_to_nkl(T* out, const T* in, const T* bias, int64_t nb, int64_t K, int64_t L) {
#pragma omp parallel for if (nb * K * L > 65536)
  for (int64_t nk = 0; nk < nb * K; ++nk) {
    const int64_t n = nk / K, k = nk % K;
    const T b = bias ? bias[k] : T(0);
    const T* src = in + (k * nb + n) * L;
    T* dst = out + nk * L;
    for (int64_t l = 0; l < L; ++l) dst[l] = src[l] + b;
  }
}

// Sums in double for both types: this is the reference the CUDA reductions are compared with.
template <typename T>
void channel_sum_accumulate(T* db, const T* dy, int64_t N, int64_t K, int64_t L) {
#pragma omp parallel for if (N * K * L > 65536)
  for (int64_t k = 0; k < K; ++k) {
    double sum = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* row = dy + (n * K + k) * L;
      for (int64_t l = 0; l < L; ++l) sum += row[l];
    }
    db[k] += static_cast<T>(sum);
  }
}

}  // namespace cpu

// The CUDA kernels are float32 only (the ops reject float64 on a GPU before getting here); these
// overloads let the templates pass their pointers on, and stop float64 with a message.
#if MINIDL_WITH_CUDA
float* f32(float* p) { return p; }
const float* f32(const float* p) { return p; }
[[noreturn]] float* f32(double*) {
  throw_error("layout primitives: CUDA kernels are float32 only");
}
[[noreturn]] const float* f32(const double*) {
  throw_error("layout primitives: CUDA kernels are float32 only");
}
#endif

}  // namespace

template <typename T>
void nkl_to_knl(Device dev, T* out, const T* in, int64_t nb, int64_t K, int64_t L) {
  if (dev.is_cpu()) return cpu::nkl_to_knl(out, in, nb, K, L);
  MINIDL_IF_CUDA(cuda::nkl_to_knl(f32(out), f32(in), nb, K, L, cuda_context(dev)));
}

template <typename T>
void knl_to_nkl(Device dev, T* out, const T* in, const T* bias, int64_t nb, int64_t K, int64_t L) {
  if (dev.is_cpu()) return cpu::knl_to_nkl(out, in, bias, nb, K, L);
  MINIDL_IF_CUDA(
      cuda::knl_to_nkl(f32(out), f32(in), bias ? f32(bias) : nullptr, nb, K, L, cuda_context(dev)));
}

template <typename T>
void channel_sum_accumulate(Device dev, T* db, const T* dy, int64_t N, int64_t K, int64_t L) {
  if (dev.is_cpu()) return cpu::channel_sum_accumulate(db, dy, N, K, L);
  MINIDL_IF_CUDA(cuda::channel_sum_accumulate(f32(db), f32(dy), N, K, L, cuda_context(dev)));
}

#define MINIDL_INSTANTIATE_LAYOUT(T)                                                      \
  template void nkl_to_knl<T>(Device, T*, const T*, int64_t, int64_t, int64_t);           \
  template void knl_to_nkl<T>(Device, T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void channel_sum_accumulate<T>(Device, T*, const T*, int64_t, int64_t, int64_t);
MINIDL_INSTANTIATE_LAYOUT(float)
MINIDL_INSTANTIATE_LAYOUT(double)
#undef MINIDL_INSTANTIATE_LAYOUT

void channel_sum_accumulate(Tensor& db, const Tensor& dy) {
  const char* who = "channel_sum_accumulate";
  MINIDL_CHECK(dy.dim() == 3, who, ": expected dy (N, K, L), got shape ", dy.shape());
  check_shape(db, Shape{dy.size(1)}, who, "db");
  check_same_device(db, dy, who);
  check_dtype(db, dy.dtype(), who, "db");
  dispatch_floating(dy.dtype(), who, [&]<typename T>() {
    channel_sum_accumulate<T>(dy.device(), db.data<T>(), dy.data<T>(), dy.size(0), dy.size(1),
                              dy.size(2));
  });
}

}  // namespace minidl

// Fused CIFAR augmentation: argument checks, device dispatch and the CPU reference (semantics in
// augment.h). The CUDA kernel is in augment.cu.
//
// Conventions shared with the CUDA kernel (both must agree bit for bit):
//   - the cutout square covers rows [cy - size/2, cy - size/2 + size) and the same columns around
//     cx, in output coordinates (after crop and flip), intersected with the image; a centre of -1
//     disables it. This is DeVries & Taylor's Cutout with the square kept size x size also for odd
//     sizes.
//   - the value is computed as (float(pixel) / 255 - mean) / std with two IEEE divisions and one
//     subtraction, which both the CPU and the GPU round identically (no reciprocal, nothing an
//     FMA could fuse), so the GPU output equals the CPU output exactly.
#include "kernels/augment.h"

namespace minidl {

namespace cpu {

template <typename T>
void augment_batch(T* out, const uint8_t* images, const int32_t* indices, const int32_t* params,
                   int64_t N, int64_t C, int64_t H, int64_t W, const AugmentConfig& cfg) {
  const int64_t half = cfg.cutout / 2;
#pragma omp parallel for if (N > 1)
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* img = images + static_cast<int64_t>(indices[n]) * C * H * W;
    const int32_t* p = params + 5 * n;
    const int64_t dy = p[0], dx = p[1], cy = p[3], cx = p[4];
    const bool flip = p[2] != 0;
    const bool cut = cfg.cutout > 0 && cy >= 0 && cx >= 0;
    for (int64_t c = 0; c < C; ++c) {
      const T mean = static_cast<T>(cfg.mean[c]), std = static_cast<T>(cfg.std[c]);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t sy = h + dy - cfg.pad;  // source row in the unpadded image
        const bool cut_row = cut && h >= cy - half && h < cy - half + cfg.cutout;
        T* o = out + ((n * C + c) * H + h) * W;
        for (int64_t w = 0; w < W; ++w) {
          const int64_t sx = (flip ? W - 1 - w : w) + dx - cfg.pad;
          const T v = (sy >= 0 && sy < H && sx >= 0 && sx < W)
                          ? static_cast<T>(img[(c * H + sy) * W + sx]) / static_cast<T>(255)
                          : static_cast<T>(0);
          const bool cut_here = cut_row && w >= cx - half && w < cx - half + cfg.cutout;
          o[w] = cut_here ? static_cast<T>(0) : (v - mean) / std;
        }
      }
    }
  }
}

}  // namespace cpu

const OpInfo& augment_op() {
  static const OpInfo op{"augment",
                         "`augment_batch`",
                         {{Backend::CpuReference, "loops: crop, flip, normalise, cutout"},
                          {Backend::CudaHandwritten, "one thread per output pixel"}}};
  return op;
}

Backend select_augment_backend(const Device& d, DType dtype) {
  return select_backend(augment_op(), d, dtype);
}

void augment_batch(Tensor& out, const Tensor& images, const Tensor& indices, const Tensor& params,
                   const AugmentConfig& cfg) {
  augment_batch(select_augment_backend(out.device(), out.dtype()), out, images, indices, params,
                cfg);
}

void augment_batch(Backend b, Tensor& out, const Tensor& images, const Tensor& indices,
                   const Tensor& params, const AugmentConfig& cfg) {
  const char* who = "augment_batch";
  check_dtype(images, DType::U8, who, "images");
  check_dtype(indices, DType::I32, who, "indices");
  check_dtype(params, DType::I32, who, "params");
  MINIDL_CHECK(images.dim() == 4 && images.size(1) == 3, who,
               ": images must be (M, 3, H, W) (mean/std have 3 channels), got ", images.describe());
  MINIDL_CHECK(indices.dim() == 1, who, ": indices must be (N), got ", indices.describe());
  const int64_t M = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t N = indices.size(0);
  check_shape(params, Shape{N, 5}, who, "params");
  check_shape(out, Shape{N, C, H, W}, who, "out");
  check_same_device(out, images, who);
  check_same_device(indices, images, who);
  check_same_device(params, images, who);
  MINIDL_CHECK(cfg.pad >= 0 && cfg.cutout >= 0, who, ": pad and cutout must be >= 0, got pad ",
               cfg.pad, ", cutout ", cfg.cutout);
  for (int c = 0; c < 3; ++c)
    MINIDL_CHECK(cfg.std[c] > 0.f, who, ": std of channel ", c, " is ", cfg.std[c],
                 ", expected > 0");
  if (N == 0) return;

  check_backend(augment_op(), b, out.device(), out.dtype(), who);
  if (b == Backend::CudaHandwritten) {
    // The indices and params stay on the GPU unchecked (reading them would cost a synchronising
    // copy per batch); the data loader draws them in range, and the kernel never reads outside an
    // image whatever the offsets are.
    check_dtype(out, DType::F32, who, "out");
    MINIDL_IF_CUDA(cuda::augment_batch(out.data<float>(), images.data<uint8_t>(),
                                       indices.data<int32_t>(), params.data<int32_t>(), N, C, H, W,
                                       cfg, cuda_context(images.device())));
    return;
  }
  const int32_t* idx = indices.data<int32_t>();
  const int32_t* prm = params.data<int32_t>();
  for (int64_t n = 0; n < N; ++n) {
    MINIDL_CHECK(idx[n] >= 0 && idx[n] < M, who, ": index ", idx[n], " at position ", n,
                 " is out of range for ", M, " images");
    const int32_t* p = prm + 5 * n;
    MINIDL_CHECK(p[0] >= 0 && p[0] <= 2 * cfg.pad && p[1] >= 0 && p[1] <= 2 * cfg.pad &&
                     (p[2] == 0 || p[2] == 1) && p[3] >= -1 && p[3] < H && p[4] >= -1 && p[4] < W,
                 who, ": params of image ", n, " are (", p[0], ", ", p[1], ", ", p[2], ", ", p[3],
                 ", ", p[4], "), expected dy, dx in [0, ", 2 * cfg.pad, "], flip 0/1, cutout centre",
                 " in [-1, ", H, ") x [-1, ", W, ")");
  }
  dispatch_floating(out.dtype(), who, [&]<typename T>() {
    cpu::augment_batch<T>(out.data<T>(), images.data<uint8_t>(), idx, prm, N, C, H, W, cfg);
  });
}

}  // namespace minidl

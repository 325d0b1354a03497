// CUDA fused augmentation: uint8 dataset images (already on the GPU) -> cropped, flipped,
// normalised, cut-out float batch, in one pass (semantics and conventions in augment.h and
// augment.cpp).
//
// Work split: one thread per output element (n, c, h, w), in a grid-stride loop over N*C*H*W with w
// fastest. A warp then writes 32 consecutive floats of one output row (coalesced) and reads up to
// 32 consecutive bytes of one source row (forwards or, flipped, backwards), so both sides touch
// few memory segments. The kernel is bound by memory and launch latency (a CIFAR batch of 128 is
// 0.4 M bytes in, 1.6 MB out), so nothing more elaborate (shared-memory tiles, 4 pixels per
// thread) pays off. The per-image params are read once per element from L1/L2; they are 20 bytes.
#include "core/cuda_check.h"
#include "kernels/augment.h"

namespace minidl::cuda {

namespace {

// Per-channel constants by value: a kernel argument lives in constant memory, and every thread of
// a warp reads the same channel's values (broadcast).
struct Norm {
  float mean[3];
  float std[3];
};

__global__ void augment_kernel(float* __restrict__ out, const uint8_t* __restrict__ images,
                               const int32_t* __restrict__ indices,
                               const int32_t* __restrict__ params, int64_t N, int64_t C, int64_t H,
                               int64_t W, int pad, int cutout, Norm norm) {
  const int64_t total = N * C * H * W;
  const int64_t half = cutout / 2;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = i % W;
    const int64_t h = (i / W) % H;
    const int64_t c = (i / (W * H)) % C;
    const int64_t n = i / (W * H * C);
    const int32_t* p = params + 5 * n;
    const int64_t dy = p[0], dx = p[1], cy = p[3], cx = p[4];
    const bool flip = p[2] != 0;
    const int64_t sy = h + dy - pad;
    const int64_t sx = (flip ? W - 1 - w : w) + dx - pad;
    const uint8_t* img = images + static_cast<int64_t>(indices[n]) * C * H * W;
    // Same operations in the same order as the CPU reference, so the results are identical.
    const float v = (sy >= 0 && sy < H && sx >= 0 && sx < W)
                        ? static_cast<float>(img[(c * H + sy) * W + sx]) / 255.0f
                        : 0.0f;
    const bool cut = cutout > 0 && cy >= 0 && cx >= 0 && h >= cy - half &&
                     h < cy - half + cutout && w >= cx - half && w < cx - half + cutout;
    out[i] = cut ? 0.0f : (v - norm.mean[c]) / norm.std[c];
  }
}

}  // namespace

void augment_batch(float* out, const uint8_t* images, const int32_t* indices, const int32_t* params,
                   int64_t N, int64_t C, int64_t H, int64_t W, const AugmentConfig& cfg,
                   CudaContext& ctx) {
  const int64_t total = N * C * H * W;
  if (total == 0) return;
  Norm norm;
  for (int c = 0; c < 3; ++c) {
    norm.mean[c] = cfg.mean[c];
    norm.std[c] = cfg.std[c];
  }
  const int threads = 256;
  augment_kernel<<<grid_stride_blocks(ctx, total, threads), threads, 0, ctx.stream>>>(
      out, images, indices, params, N, C, H, W, cfg.pad, cfg.cutout, norm);
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

}  // namespace minidl::cuda

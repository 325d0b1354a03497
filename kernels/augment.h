// CIFAR-style augmentation of a batch, fused into one pass from uint8 images to normalised floats:
// random crop from the image zero-padded by `pad` pixels, horizontal flip, per-channel
// normalisation, optional cutout (a size x size square set to 0 after normalisation, clipped at
// the border). Same order and semantics as torchvision's RandomCrop(32, padding=4),
// RandomHorizontalFlip, ToTensor, Normalize.
//
//   images  uint8 (M, C, H, W)  the whole dataset (on the CPU, or on the GPU to keep the host free)
//   indices int32 (N)           which images form the batch
//   params  int32 (N, 5)        per image: dy, dx in [0, 2 pad] (crop offset), flip (0/1),
//                               cutout centre row and column (-1: no cutout)
//   out     float (N, C, H, W)
//
//   out[n,c,h,w] = (v - mean_c) / std_c,  v = padded[c, h + dy, w' + dx] / 255,  w' = flip ? W-1-w : w
// where padded is the image with `pad` zero pixels around it. The random draws (params) are made on
// the host by the data loader, so a run is reproducible whatever device augments.
#pragma once

#include <array>
#include <cstdint>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "kernels/backend.h"

namespace minidl {

struct AugmentConfig {
  int pad = 4;
  int cutout = 0;  // square side in pixels; 0 disables cutout
  std::array<float, 3> mean{0.f, 0.f, 0.f};
  std::array<float, 3> std{1.f, 1.f, 1.f};
};

// Backends: `cpu-reference`, `cuda-handwritten` (kernels/backend.h).
const OpInfo& augment_op();
Backend select_augment_backend(const Device& d, DType dtype);
// Each function below comes in a selecting form and an explicit one (first argument a Backend).

void augment_batch(Tensor& out, const Tensor& images, const Tensor& indices, const Tensor& params,
                   const AugmentConfig& cfg);
void augment_batch(Backend b, Tensor& out, const Tensor& images, const Tensor& indices,
                   const Tensor& params, const AugmentConfig& cfg);

namespace cuda {
void augment_batch(float* out, const uint8_t* images, const int32_t* indices, const int32_t* params,
                   int64_t N, int64_t C, int64_t H, int64_t W, const AugmentConfig& cfg,
                   CudaContext& ctx);
}  // namespace cuda

}  // namespace minidl

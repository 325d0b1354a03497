#include "engine/choices.h"

namespace minidl {

const Registry<KernelPath>& kernel_paths() {
  static const Registry<KernelPath> r(
      "kernel path",
      {{"handwritten", "minidl's own CUDA kernels only (im2col + tiled SGEMM convolutions)",
        KernelPath::Handwritten},
       {"cublas", "as handwritten, with every matrix product on cuBLAS", KernelPath::Cublas},
       {"cudnn", "cuDNN for convolution, batchnorm, pooling; cuBLAS for products",
        KernelPath::Cudnn}});
  return r;
}

namespace {

// One entry per path of cpu_kernels_names(): the build decides which there are.
std::vector<Registry<CpuKernels>::Entry> built_in_cpu_paths() {
  std::vector<Registry<CpuKernels>::Entry> entries;
  for (const std::string& name : cpu_kernels_names()) {
    const CpuKernels k = parse_cpu_kernels(name);
    const char* help = k == CpuKernels::Onednn
                           ? "float32 convolutions on oneDNN (as PyTorch's CPU convolutions)"
                           : "minidl's own CPU kernels only (im2col + OpenBLAS)";
    entries.push_back({name, help, k});
  }
  return entries;
}

}  // namespace

const Registry<CpuKernels>& cpu_kernel_paths() {
  static const Registry<CpuKernels> r("CPU kernel path", built_in_cpu_paths());
  return r;
}

}  // namespace minidl

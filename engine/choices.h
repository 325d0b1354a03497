// The registries of the two `train` choices whose code lives below the engine without a registry
// of its own: the CUDA implementation (--kernels, kernels/kernel_path.h) and the CPU implementation
// (--cpu-kernels, kernels/cpu_kernels.h). Each entry's value is the setting the name selects.
//
// The other choice flags use the registry of the module that implements them: models()
// (models/models.h), datasets() (data/cifar.h), optimizers() (optim/optimizer.h) and schedules()
// (optim/schedule.h). Every registry feeds the flag's --help text (cli.cpp), the check of its
// value (validate() in config.cpp) and the factory.
#pragma once

#include "core/registry.h"
#include "kernels/cpu_kernels.h"
#include "kernels/kernel_path.h"

namespace minidl {

// handwritten, cublas, cudnn.
const Registry<KernelPath>& kernel_paths();
// The CPU paths this build has, fastest first (onednn only in builds with oneDNN).
const Registry<CpuKernels>& cpu_kernel_paths();

}  // namespace minidl

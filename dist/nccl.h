// NCCL all-reduce of GPU buffers (dist/nccl.cpp, built with MPI and NCCL only). Internal to
// dist/comm.cpp.
#pragma once

#include <cstddef>
#include <functional>

#include "core/cuda_context.h"
#include "core/tensor.h"
#include "dist/comm.h"

namespace minidl::dist::detail {

// ncclAllReduce of `t` in place on its device's stream (queued; the stream orders it with the
// kernels before and after). The communicator of t's device is made on first use: rank 0's
// ncclUniqueId reaches the others through `broadcast` (MPI_Bcast of the bytes).
// On `stream` when given, else on the device's stream.
void nccl_allreduce(Tensor& t, Reduce op, int rank, int size,
                    const std::function<void(void* bytes, size_t n)>& broadcast,
                    cudaStream stream = nullptr);

}  // namespace minidl::dist::detail

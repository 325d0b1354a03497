// ncclAllReduce on the device stream (dist/nccl.h). One NCCL communicator per CUDA device of this
// process, made on the first all-reduce of a buffer there.
#include "dist/nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <map>
#include <mutex>

#include "core/cuda_context.h"

namespace minidl::dist::detail {

namespace {

void nccl_check(ncclResult_t r, const char* call) {
  if (r == ncclSuccess) return;
  throw Error(str("NCCL: ", call, " failed: ", ncclGetErrorString(r), " (",
                  ncclGetLastError(nullptr), "); NCCL_DEBUG=INFO shows why"));
}
#define MINIDL_NCCL_CHECK(call) nccl_check((call), #call)

ncclComm_t comm_for(int device, int rank, int size,
                    const std::function<void(void*, size_t)>& broadcast) {
  static std::mutex mutex;
  static std::map<int, ncclComm_t> comms;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = comms.find(device);
  if (it != comms.end()) return it->second;
  ncclUniqueId id{};
  if (rank == 0) MINIDL_NCCL_CHECK(ncclGetUniqueId(&id));
  broadcast(&id, sizeof id);
  cuda_set_device(device);
  ncclComm_t c = nullptr;
  MINIDL_NCCL_CHECK(ncclCommInitRank(&c, size, id, rank));
  comms[device] = c;
  return c;
}

}  // namespace

void nccl_allreduce(Tensor& t, Reduce op, int rank, int size,
                    const std::function<void(void*, size_t)>& broadcast, cudaStream stream) {
  ncclDataType_t type = ncclFloat32;
  switch (t.dtype()) {
    case DType::F32:
      type = ncclFloat32;
      break;
    case DType::F64:
      type = ncclFloat64;
      break;
    case DType::I32:
      type = ncclInt32;
      break;
    default:
      throw Error(str("all-reduce: NCCL path takes float32, float64 or int32, got ", t.describe()));
  }
  const ncclRedOp_t nop = op == Reduce::Sum ? ncclSum : op == Reduce::Mean ? ncclAvg : ncclMax;
  const int device = t.device().index;
  ncclComm_t comm = comm_for(device, rank, size, broadcast);
  const cudaStream s = stream != nullptr ? stream : cuda_context(device).stream;
  MINIDL_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), type,
                                  nop, comm, reinterpret_cast<cudaStream_t>(s)));
}

}  // namespace minidl::dist::detail

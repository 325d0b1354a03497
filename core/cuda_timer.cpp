// The CUDA half of core/timer.h: events recorded on the device's stream (compiled only in CUDA
// builds, by the core/cuda_*.cpp rule of the build). Events are created with timing enabled and
// without the blocking-sync flag: elapsed time needs both events complete, and waiting on the stop
// event with cudaEventSynchronize waits for nothing queued after it.
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "core/cuda_context.h"
#include "core/timer.h"

namespace minidl::detail {

void* cuda_event_create(int device) {
  cuda_set_device(device);
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

// Called from destructors: an error here cannot be reported, and the event is gone either way.
void cuda_event_destroy(void* event) { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }

void cuda_event_record(void* event, int device) {
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), cuda_context(device).stream));
}

double cuda_event_elapsed_ms(void* start, void* stop) {
  CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
  float ms = 0.f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start),
                                  static_cast<cudaEvent_t>(stop)));
  return ms;
}

size_t cuda_l2_cache_bytes(int device) {
  int bytes = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, device));
  return static_cast<size_t>(bytes);
}

}  // namespace minidl::detail

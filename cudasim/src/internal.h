// cudasim internals shared by the scheduler, the runtime and the race checker.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cuda_runtime.h"

namespace cudasim::detail {

// Race checker state of one granule (kShadowGranule bytes) of shared memory in the current barrier
// interval. 2 bytes: two threads writing the two halves of a 4-byte word (adjacent __half or
// __nv_bfloat16 elements) do not race on a GPU, whose shared memory is byte-addressed.
constexpr size_t kShadowGranule = 2;
struct ShadowWord {
  uint32_t epoch = 0;
  int32_t writer = -1;  // linear thread id of the interval's writer, -1 none
  int32_t reader = -1;  // linear thread id of the interval's reader, -1 none, -2 several
};
struct SharedRange {
  unsigned char* begin;
  size_t bytes;
  Loc decl;                        // where the __shared__ variable is declared
  std::vector<ShadowWord> shadow;  // race mode only
};

// Records `e` with `message` as the calling thread's last error, prints the message, returns e.
cudaError_t set_launch_error(cudaError_t e, const std::string& message);
bool check_stream(cudaStream_t s);
// Protect mode: "" when every allocation's rounding gap still holds its canary, else a description
// of each overwritten gap (the canaries are restored).
std::string check_canaries();
uint64_t next_launch_id();
uint64_t launch_seed(uint64_t launch_id);
int emulation_threads();

// For the race checker and the fault handler (null / 0 outside a kernel).
const LaunchSite* current_site();
uint32_t current_epoch();
unsigned current_linear_thread();
std::vector<SharedRange>* current_shared();
std::string describe_thread(unsigned linear);
// Fails the launch with `message` and leaves the current fiber without unwinding its stack (for
// callers that must not throw, such as the race checker's instrumentation hooks).
[[noreturn]] void abandon_fiber(const std::string& message);
bool race_checking();  // in a kernel, in race mode

}  // namespace cudasim::detail

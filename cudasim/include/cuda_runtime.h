// cudasim: the CUDA runtime and the device-side language, emulated on the CPU.
//
// minidl's .cu files are compiled as C++ against this header (after cudasim_rewrite has turned
// `k<<<g, b, smem, stream>>>(args)` into a call and `__shared__` into per-OS-thread storage), so
// every hand-written kernel runs in CI on machines without a GPU and is compared with the float64
// CPU reference like on a real device.
//
// Model of execution (docs/GPU.md, "The emulator"):
//   - a launch runs to completion before it returns (streams are in-order anyway; events read the
//     host clock); blocks are spread over OpenMP threads;
//   - within a block, each CUDA thread is a fiber with its own stack. A fiber runs until it reaches
//     __syncthreads() or a warp collective (__shfl_*_sync, __syncwarp, __ballot_sync), where it
//     yields to the block's scheduler, which resumes it once every thread the collective names has
//     arrived. A barrier that cannot complete (threads exited, waiting at another barrier, a
//     shuffle mask naming lanes that do not exist) fails the launch with file:line;
//   - `__shared__` variables are `static thread_local`: one copy per OS thread, which runs one
//     block at a time. They are filled with 0xff (NaN) when a block first touches them, as a GPU
//     leaves shared memory indeterminate;
//   - device memory is host memory (filled with 0xff on allocation). Kernel pointer arguments must
//     point into a cudaMalloc allocation; memcpy directions are checked.
// Modes, chosen by environment variables at run time:
//   CUDASIM_RACE=1     fibers of a block run in a random order between barriers (seed: CUDASIM_SEED),
//                      and, in translation units built with race instrumentation, every access to
//                      shared memory is checked against the others of the same barrier interval
//                      (a read or write of a word another thread wrote, without a barrier between,
//                      fails the launch with both threads and the barrier interval).
//   CUDASIM_PROTECT=1  each cudaMalloc ends at an inaccessible page: an access past the end of an
//                      allocation stops the program with the kernel, its launch site and the
//                      overrun (use with MINIDL_CUDA_NO_CACHE=1 so allocations have exact sizes).
// 16-bit floats and WMMA: cuda_fp16.h, cuda_bf16.h and mma.h beside this header.
// Not emulated: timing, occupancy, TF32 and fast-math numerics, memory-model subtleties beyond
// barriers, cuDNN (every cuDNN computation returns CUDNN_STATUS_NOT_SUPPORTED).
#pragma once

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#define CUDASIM 1
#define CUDART_VERSION 13000

// ---------------------------------------------------------------- qualifiers
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#ifndef __shared__
// Normally replaced by cudasim_rewrite (which also registers the variable for poisoning and race
// checks); this keeps code that was not rewritten compiling.
#define __shared__ static thread_local
#endif

// ---------------------------------------------------------------- vector types
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};
// may_alias: kernels reinterpret memory through the vector types (a float4 load of a float array,
// a uint4 copy of 16-bit elements), which nvcc compiles as plain vector loads; g++ must not let
// type-based alias analysis reorder such accesses against the elements' own.
struct [[gnu::may_alias]] alignas(8) float2 { float x, y; };
struct [[gnu::may_alias]] alignas(16) float4 { float x, y, z, w; };
struct [[gnu::may_alias]] alignas(16) double2 { double x, y; };
struct [[gnu::may_alias]] alignas(8) int2 { int x, y; };
struct [[gnu::may_alias]] alignas(16) int4 { int x, y, z, w; };
struct [[gnu::may_alias]] alignas(8) uint2 { unsigned x, y; };
struct [[gnu::may_alias]] alignas(16) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// ---------------------------------------------------------------- runtime API
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorCudartUnloading = 4,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorUnknown = 999,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrClockRate = 13,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrL2CacheSize = 38,
  cudaDevAttrMaxThreadsPerMultiProcessor = 39,
  cudaDevAttrMemoryBusWidth = 37,
  cudaDevAttrMemoryClockRate = 36,
};
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventBlockingSync = 1, cudaEventDisableTiming = 2;

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int clockRate;
  int major;
  int minor;
  int multiProcessorCount;
  int l2CacheSize;
  int maxThreadsPerMultiProcessor;
  int memoryClockRate;
  int memoryBusWidth;
  size_t sharedMemPerMultiprocessor;
  int unifiedAddressing;
};

const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <class T>
inline cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaFreeHost(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop);

// ---------------------------------------------------------------- the emulator's own API
namespace cudasim {

struct Loc {
  const char* file;
  int line;
};

// True when `p` points into (or one past the end of) a live cudaMalloc allocation.
bool is_device_pointer(const void* p);
// Human-readable description of the emulated device and the active modes.
const char* describe();
// The modes in force (from the environment, read once).
bool race_mode();
bool protect_mode();

namespace detail {

struct LaunchSite {
  const char* kernel;
  const char* file;
  int line;
};

// Runs the grid: `body(ctx)` is called once per CUDA thread, on that thread's fiber.
// Returns cudaSuccess or the launch's error (also recorded as the sticky last error).
cudaError_t launch(const LaunchSite& site, dim3 grid, dim3 block, size_t dynamic_smem,
                   cudaStream_t stream, void (*body)(const void*), const void* ctx);
void report_argument_error(const LaunchSite& site, int index, const void* p);

// Per fiber / per block state read by the builtins below.
struct ThreadState {
  uint3 thread_idx;
  unsigned linear;  // x + y*bx + z*bx*by
};
struct BlockState {
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  unsigned char* dynamic_smem;
};
extern thread_local ThreadState* tl_thread;
extern thread_local BlockState* tl_block;

void syncthreads(Loc loc);
unsigned warp_collective(Loc loc, const char* what, unsigned mask, const void* in, void* out,
                         size_t bytes, int src_lane, bool vote);
void register_shared(void* p, size_t bytes, Loc loc);
// A full-warp collective (mask 0xffffffff) for cudasim's WMMA (mma.h): every lane deposits `bytes`
// (<= kMaxExchangeBytes) and, once all 32 have arrived, receives all 32 deposits in `all_out`
// (lane order). Missing, exited or diverged lanes fail the launch like a shuffle's.
constexpr size_t kMaxExchangeBytes = 64;
void warp_exchange(Loc loc, const char* what, const void* in, size_t bytes, void* all_out);
// Fails the launch with `message` (the kernel, block and thread are added).
[[noreturn]] void kernel_fail(const std::string& message);

template <class T>
inline T shfl(Loc loc, const char* what, unsigned mask, T v, int src_lane) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 16, "shuffle of a 1..16-byte value");
  T r;
  warp_collective(loc, what, mask, &v, &r, sizeof(T), src_lane, false);
  return r;
}
inline unsigned lane_id() { return tl_thread->linear & 31u; }

template <class... P>
struct Configured {
  void (*fn)(P...);
  LaunchSite site;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;

  template <class... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    using Tuple = std::tuple<std::decay_t<P>...>;
    struct Ctx {
      void (*fn)(P...);
      Tuple args;
    };
    const Ctx ctx{fn, Tuple(static_cast<std::decay_t<P>>(std::forward<A>(args))...)};
    // Every pointer argument must be device memory (or null): a host pointer passed to a kernel is
    // the classic bug that a CPU emulator would otherwise hide.
    bool ok = true;
    check_pointers(ctx.args, ok, std::index_sequence_for<P...>{});
    if (!ok) return;
    launch(site, grid, block, smem, stream,
           [](const void* c) {
             const Ctx& x = *static_cast<const Ctx*>(c);
             std::apply(x.fn, x.args);
           },
           &ctx);
  }

 private:
  template <class Tuple, size_t... I>
  void check_pointers(const Tuple& t, bool& ok, std::index_sequence<I...>) const {
    (check_one(static_cast<int>(I), std::get<I>(t), ok), ...);
  }
  template <class T>
  void check_one(int index, const T& v, bool& ok) const {
    if constexpr (std::is_pointer_v<T>) {
      if (ok && v != nullptr && !is_device_pointer(v)) {
        report_argument_error(site, index, v);
        ok = false;
      }
    }
  }
};

template <class... P>
struct Kernel {
  void (*fn)(P...);
  LaunchSite site;
  Configured<P...> operator()(dim3 grid, dim3 block, size_t smem = 0,
                              cudaStream_t stream = nullptr) const {
    return {fn, site, grid, block, smem, stream};
  }
};

}  // namespace detail

// What cudasim_rewrite emits for `name<<<...>>>`: kernel("name", __FILE__, __LINE__, name)(...)(...)
template <class... P>
inline detail::Kernel<P...> kernel(const char* name, const char* file, int line, void (*fn)(P...)) {
  return {fn, {name, file, line}};
}

// What cudasim_rewrite emits after a `__shared__` declaration.
inline void shared_touch(void* p, size_t bytes, const char* file, int line) {
  detail::register_shared(p, bytes, {file, line});
}
template <class T>
inline T* dynamic_shared() {
  return reinterpret_cast<T*>(detail::tl_block->dynamic_smem);
}

}  // namespace cudasim

// ---------------------------------------------------------------- built-in variables
#define threadIdx (::cudasim::detail::tl_thread->thread_idx)
#define blockIdx (::cudasim::detail::tl_block->block_idx)
#define blockDim (::cudasim::detail::tl_block->block_dim)
#define gridDim (::cudasim::detail::tl_block->grid_dim)
constexpr int warpSize = 32;

// ---------------------------------------------------------------- synchronisation
#define CUDASIM_LOC (::cudasim::Loc{__FILE__, __LINE__})
#define __syncthreads() ::cudasim::detail::syncthreads(CUDASIM_LOC)
#define __syncwarp(...) ::cudasim::sim_syncwarp(CUDASIM_LOC, ##__VA_ARGS__)
#define __shfl_sync(...) ::cudasim::sim_shfl(CUDASIM_LOC, __VA_ARGS__)
#define __shfl_down_sync(...) ::cudasim::sim_shfl_down(CUDASIM_LOC, __VA_ARGS__)
#define __shfl_up_sync(...) ::cudasim::sim_shfl_up(CUDASIM_LOC, __VA_ARGS__)
#define __shfl_xor_sync(...) ::cudasim::sim_shfl_xor(CUDASIM_LOC, __VA_ARGS__)
#define __ballot_sync(...) ::cudasim::sim_ballot(CUDASIM_LOC, __VA_ARGS__)
#define __any_sync(...) (::cudasim::sim_ballot(CUDASIM_LOC, __VA_ARGS__) != 0u)
#define __all_sync(m, p) (::cudasim::sim_ballot(CUDASIM_LOC, (m), (p)) == (m))
#define __activemask() 0xffffffffu

namespace cudasim {
inline void sim_syncwarp(Loc loc, unsigned mask = 0xffffffffu) {
  detail::warp_collective(loc, "__syncwarp", mask, nullptr, nullptr, 0, -1, false);
}
// Lanes are numbered within `width`-wide segments, as on the device; a source outside the
// segment returns the caller's own value.
template <class T>
inline T sim_shfl(Loc loc, unsigned mask, T v, int src, int width = 32) {
  const int lane = static_cast<int>(detail::lane_id());
  const int base = lane & ~(width - 1);
  return detail::shfl(loc, "__shfl_sync", mask, v, base + (src & (width - 1)));
}
template <class T>
inline T sim_shfl_down(Loc loc, unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(detail::lane_id());
  const int seg = lane & (width - 1);
  const int src = seg + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : lane;
  return detail::shfl(loc, "__shfl_down_sync", mask, v, src);
}
template <class T>
inline T sim_shfl_up(Loc loc, unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(detail::lane_id());
  const int seg = lane & (width - 1);
  const int src = seg - static_cast<int>(delta) >= 0 ? lane - static_cast<int>(delta) : lane;
  return detail::shfl(loc, "__shfl_up_sync", mask, v, src);
}
template <class T>
inline T sim_shfl_xor(Loc loc, unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = static_cast<int>(detail::lane_id());
  const int src = lane ^ lane_mask;
  return detail::shfl(loc, "__shfl_xor_sync", mask, v,
                      (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}
inline unsigned sim_ballot(Loc loc, unsigned mask, int predicate) {
  const unsigned p = predicate != 0;
  return detail::warp_collective(loc, "__ballot_sync", mask, &p, nullptr, 0, -1, true);
}
}  // namespace cudasim

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------- memory and math intrinsics
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline long long __double_as_longlong(double d) { long long i; std::memcpy(&i, &d, 8); return i; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
// sqrtf, expf, fmaf, fmaxf, ... are the C library's (global namespace, from <math.h>).

// CUDA's min/max overloads for device code (integer and floating, mixed signedness promoted).
template <class A, class B>
inline constexpr auto min(A a, B b) -> std::common_type_t<A, B> {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(b) < static_cast<C>(a) ? static_cast<C>(b) : static_cast<C>(a);
}
template <class A, class B>
inline constexpr auto max(A a, B b) -> std::common_type_t<A, B> {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
}

// ---------------------------------------------------------------- atomics
// Blocks run concurrently on OpenMP threads, so these are real atomics.
template <class T>
inline T atomicAdd(T* p, T v) {
  if constexpr (std::is_floating_point_v<T>) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED), desired;
    do {
      desired = old + v;
    } while (!__atomic_compare_exchange(p, &old, &desired, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return old;
  } else {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
  }
}
template <class T>
inline T atomicMax(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <class T>
inline T atomicMin(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <class T>
inline T atomicExch(T* p, T v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
template <class T>
inline T atomicCAS(T* p, T expected, T desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;
}

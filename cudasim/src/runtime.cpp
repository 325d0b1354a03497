// cudasim's runtime: devices, memory, copies, streams, events and errors, plus the cuBLAS
// products (on the CPU BLAS) and the cuDNN stubs.
//
// Memory: "device" allocations are host memory, recorded in a table so that copies and kernel
// arguments can be checked, and filled with 0xff (a NaN in every float) because a GPU leaves new
// memory indeterminate. In protect mode (CUDASIM_PROTECT=1) each allocation is placed so that it
// ends (to 16 bytes) at an inaccessible page; a fault there is reported with the kernel, the launch
// site, the block and thread, and the overrun. The up to 15 bytes between the end and the guard
// (the rounding to 16 bytes that keeps every allocation 16-byte aligned, as cudaMalloc's) hold a
// canary, checked after every launch: a write there fails the launch, naming the kernel and the
// allocation, and a read there sees a float near FLT_MAX.
#if CUDASIM_WITH_CBLAS
#include <cblas.h>
#endif
#include <omp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "cublas_v2.h"
#include "cudasim_lowp.h"
#include "cuda_runtime.h"
#include "cudnn.h"
#include "internal.h"

struct CUstream_st {
  int device;
};
struct CUevent_st {
  double ms = 0;
  bool recorded = false;
};
struct cublasContext {
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace cudasim {
namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

int device_count() {
  static const int n = [] {
    const char* v = std::getenv("CUDASIM_DEVICES");
    const int k = v ? std::atoi(v) : 1;
    return k < 0 ? 0 : k;
  }();
  return n;
}

thread_local int tl_device = 0;
thread_local cudaError_t tl_last_error = cudaSuccess;
thread_local std::string tl_error_message;

// ---------------------------------------------------------------- allocations
struct Allocation {
  size_t bytes;
  void* map_base;  // protect mode: the mapping (allocation + guard page), else null
  size_t map_bytes;
};
std::shared_mutex g_alloc_mutex;
std::map<uintptr_t, Allocation> g_allocs;  // start address -> allocation
std::atomic<size_t> g_bytes_in_use{0};
std::set<CUstream_st*> g_streams;
std::mutex g_stream_mutex;

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

// Protect mode: the canary byte at address a of the rounding gap. Each aligned 4-byte word reads
// as the float 0x7f7fa5a5 = 3.39e38, which overflows to inf in any sum or product that reads it.
// Not a NaN: an off-by-one `out[n] = a[n] + b[n]` would write back a NaN canary's own bits (x86
// passes the first NaN operand through), and the write would go unseen.
unsigned char canary_byte(uintptr_t a) {
  static const unsigned char word[4] = {0xa5, 0xa5, 0x7f, 0x7f};
  return word[a % 4];
}
size_t rounded_body(size_t bytes) { return (bytes + 15) / 16 * 16; }

// The allocation containing p (one past the end counts), or end().
std::map<uintptr_t, Allocation>::const_iterator find_alloc(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return g_allocs.end();
  --it;
  if (a <= it->first + it->second.bytes) return it;
  return g_allocs.end();
}

bool range_in_device(const void* p, size_t bytes) {
  std::shared_lock lock(g_alloc_mutex);
  auto it = find_alloc(p);
  return it != g_allocs.end() &&
         reinterpret_cast<uintptr_t>(p) + bytes <= it->first + it->second.bytes;
}

void fault_handler(int sig, siginfo_t* info, void*) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  char msg[1024];
  int n = 0;
  bool overrun = false;
  {
    // Best effort: the table is not locked (a signal handler must not block).
    for (const auto& [start, a] : g_allocs) {
      if (!a.map_base) continue;
      const uintptr_t end = start + a.bytes;
      const uintptr_t guard_end = reinterpret_cast<uintptr_t>(a.map_base) + a.map_bytes;
      if (addr >= end && addr < guard_end) {
        n = std::snprintf(msg, sizeof msg,
                          "cudasim: out-of-bounds access at %p, %zu bytes past the end of a "
                          "%zu-byte device allocation at %p",
                          info->si_addr, static_cast<size_t>(addr - end), a.bytes,
                          reinterpret_cast<void*>(start));
        overrun = true;
        break;
      }
    }
  }
  if (n == 0)
    n = std::snprintf(msg, sizeof msg, "cudasim: invalid memory access at %p (not next to any "
                      "device allocation)", info->si_addr);
  if (const detail::LaunchSite* s = detail::current_site()) {
    std::string t = detail::describe_thread(detail::current_linear_thread());
    const detail::BlockState* b = detail::tl_block;
    n += std::snprintf(msg + n, sizeof msg - static_cast<size_t>(n),
                       "\n  in kernel %s launched at %s:%d, block (%u,%u,%u), %s", s->kernel,
                       s->file, s->line, b ? b->block_idx.x : 0, b ? b->block_idx.y : 0,
                       b ? b->block_idx.z : 0, t.c_str());
  } else {
    n += std::snprintf(msg + n, sizeof msg - static_cast<size_t>(n), "\n  in host code");
  }
  n += std::snprintf(msg + n, sizeof msg - static_cast<size_t>(n), "\n");
  if (write(2, msg, static_cast<size_t>(n)) < 0) {
  }
  if (overrun) _exit(3);  // diagnosed: an ordinary failure exit, not a crash
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
  });
}

cudaError_t fail(cudaError_t e, const std::string& message) {
  return detail::set_launch_error(e, message);
}

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

bool race_mode() {
  static const bool on = env_flag("CUDASIM_RACE");
  return on;
}
bool protect_mode() {
  static const bool on = env_flag("CUDASIM_PROTECT");
  return on;
}

bool is_device_pointer(const void* p) {
  std::shared_lock lock(g_alloc_mutex);
  return find_alloc(p) != g_allocs.end();
}

const char* describe() {
  static std::string s;
  s = "cudasim (CPU emulation, " + std::to_string(detail::emulation_threads()) + " threads" +
      (race_mode() ? ", race mode" : "") + (protect_mode() ? ", protect mode" : "") + ")";
  return s.c_str();
}

namespace detail {

std::string check_canaries() {
  std::string report;
  std::shared_lock lock(g_alloc_mutex);
  for (const auto& [start, a] : g_allocs) {
    if (!a.map_base) continue;
    auto* p = reinterpret_cast<unsigned char*>(start);
    size_t first = 0, last = 0;
    bool hit = false;
    for (size_t i = a.bytes; i < rounded_body(a.bytes); ++i)
      if (p[i] != canary_byte(start + i)) {
        if (!hit) first = i;
        hit = true;
        last = i;
        p[i] = canary_byte(start + i);  // restored: reported once
      }
    if (!hit) continue;
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%sout-of-bounds write: the canary in bytes %zu..%zu past the end of a "
                  "%zu-byte device allocation at %p (its rounding to 16 bytes, before the guard "
                  "page) was overwritten",
                  report.empty() ? "" : "; ", first - a.bytes, last - a.bytes, a.bytes,
                  reinterpret_cast<void*>(start));
    report += buf;
  }
  return report;
}

cudaError_t set_launch_error(cudaError_t e, const std::string& message) {
  tl_last_error = e;
  tl_error_message = message;
  std::fprintf(stderr, "%s\n", message.c_str());
  return e;
}

bool check_stream(cudaStream_t s) {
  if (!s) return true;
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  return g_streams.count(s) > 0;
}

uint64_t next_launch_id() {
  static std::atomic<uint64_t> n{0};
  return ++n;
}

uint64_t launch_seed(uint64_t launch_id) {
  static const uint64_t base = [] {
    const char* v = std::getenv("CUDASIM_SEED");
    return v ? std::strtoull(v, nullptr, 10) : 0x5EEDull;
  }();
  return (base + 1) * 0x2545F4914F6CDD1Dull ^ launch_id * 0x9E3779B97F4A7C15ull;
}

int emulation_threads() {
  static const int n = [] {
    const char* v = std::getenv("CUDASIM_THREADS");
    const int k = v ? std::atoi(v) : omp_get_max_threads();
    return k > 0 ? k : 1;
  }();
  return n;
}

cudnnStatus_t cudnn_not_supported(const char* call) {
  tl_error_message = std::string(call) + " is not emulated by cudasim (cuDNN needs a real GPU)";
  return CUDNN_STATUS_NOT_SUPPORTED;
}

void* cudnn_dummy_object() {
  static char dummy;
  return &dummy;
}

}  // namespace detail
}  // namespace cudasim

using namespace cudasim;

// ---------------------------------------------------------------- errors
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorCudartUnloading: return "cudaErrorCudartUnloading";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
  }
}

// The last failure's own message (launch site, kernel, thread) when `e` is that failure.
const char* cudaGetErrorString(cudaError_t e) {
  if (e != cudaSuccess && !tl_error_message.empty()) return tl_error_message.c_str();
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorMemoryAllocation: return "out of memory";
    default: return cudaGetErrorName(e);
  }
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = tl_last_error;
  tl_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return tl_last_error; }

// ---------------------------------------------------------------- devices
cudaError_t cudaGetDeviceCount(int* count) {
  *count = device_count();
  if (*count == 0) return fail(cudaErrorNoDevice, "cudasim: CUDASIM_DEVICES=0");
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= device_count())
    return fail(cudaErrorInvalidDevice, "cudasim: cudaSetDevice(" + std::to_string(device) +
                                            "): " + std::to_string(device_count()) + " device(s)");
  tl_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = tl_device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device < 0 || device >= device_count()) return fail(cudaErrorInvalidDevice, "cudasim: no such device");
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "%s", describe());
  p->totalGlobalMem = size_t(16) << 30;
  p->sharedMemPerBlock = 48 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->clockRate = 1000000;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = detail::emulation_threads();
  p->l2CacheSize = 4 << 20;
  p->maxThreadsPerMultiProcessor = 2048;
  p->memoryClockRate = 1000000;
  p->memoryBusWidth = 64;
  p->sharedMemPerMultiprocessor = 228 * 1024;
  p->unifiedAddressing = 1;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  if (cudaError_t e = cudaGetDeviceProperties(&p, device); e != cudaSuccess) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrClockRate: *value = p.clockRate; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrMemoryBusWidth: *value = p.memoryBusWidth; break;
    case cudaDevAttrMemoryClockRate: *value = p.memoryClockRate; break;
    default: return fail(cudaErrorInvalidValue, "cudasim: device attribute not emulated");
  }
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }  // every launch has completed already
cudaError_t cudaDeviceReset() { return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = size_t(16) << 30;
  const size_t used = g_bytes_in_use.load();
  *free_bytes = used < *total_bytes ? *total_bytes - used : 0;
  return cudaSuccess;
}

// ---------------------------------------------------------------- memory
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (const char* limit = std::getenv("CUDASIM_MEMORY_LIMIT");
      limit && g_bytes_in_use.load() + bytes > std::strtoull(limit, nullptr, 10))
    return fail(cudaErrorMemoryAllocation, "cudasim: CUDASIM_MEMORY_LIMIT reached");
  Allocation a{bytes, nullptr, 0};
  void* p = nullptr;
  if (protect_mode()) {
    install_fault_handler();
    const size_t body = rounded_body(bytes);
    const size_t pages = (body + kPage - 1) / kPage;
    a.map_bytes = (pages + 1) * kPage;
    a.map_base = mmap(nullptr, a.map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a.map_base == MAP_FAILED) return fail(cudaErrorMemoryAllocation, "cudasim: mmap failed");
    char* guard = static_cast<char*>(a.map_base) + pages * kPage;
    mprotect(guard, kPage, PROT_NONE);
    p = guard - body;
  } else {
    p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!p) return fail(cudaErrorMemoryAllocation, "cudasim: out of host memory");
  }
  std::memset(p, 0xff, bytes);
  if (a.map_base) {
    const auto start = reinterpret_cast<uintptr_t>(p);
    for (size_t i = bytes; i < rounded_body(bytes); ++i)
      static_cast<unsigned char*>(p)[i] = canary_byte(start + i);
  }
  {
    std::unique_lock lock(g_alloc_mutex);
    g_allocs[reinterpret_cast<uintptr_t>(p)] = a;
  }
  g_bytes_in_use += bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  Allocation a;
  {
    std::unique_lock lock(g_alloc_mutex);
    auto it = g_allocs.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == g_allocs.end())
      return fail(cudaErrorInvalidDevicePointer, "cudasim: cudaFree of a pointer that cudaMalloc did not return");
    a = it->second;
    g_allocs.erase(it);
  }
  g_bytes_in_use -= a.bytes;
  if (a.map_base)
    munmap(a.map_base, a.map_bytes);
  else
    std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  *ptr = std::malloc(bytes ? bytes : 1);
  return *ptr ? cudaSuccess : fail(cudaErrorMemoryAllocation, "cudasim: out of host memory");
}
cudaError_t cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  const bool dst_dev = range_in_device(dst, bytes), src_dev = range_in_device(src, bytes);
  const char* bad = nullptr;
  switch (kind) {
    case cudaMemcpyHostToDevice: bad = !dst_dev ? "destination is not (all) device memory" : src_dev ? "source is device memory" : nullptr; break;
    case cudaMemcpyDeviceToHost: bad = !src_dev ? "source is not (all) device memory" : dst_dev ? "destination is device memory" : nullptr; break;
    case cudaMemcpyDeviceToDevice: bad = !dst_dev ? "destination is not (all) device memory" : !src_dev ? "source is not (all) device memory" : nullptr; break;
    case cudaMemcpyHostToHost:
    case cudaMemcpyDefault: break;
    default: return fail(cudaErrorInvalidMemcpyDirection, "cudasim: invalid cudaMemcpyKind");
  }
  if (bad)
    return fail(cudaErrorInvalidValue, std::string("cudasim: cudaMemcpy of ") + std::to_string(bytes) +
                                           " bytes (kind " + std::to_string(kind) + "): " + bad);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  if (!detail::check_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudasim: invalid stream");
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
                                cudaStream_t s) {
  if (dst_device < 0 || dst_device >= device_count() || src_device < 0 || src_device >= device_count())
    return fail(cudaErrorInvalidDevice, "cudasim: cudaMemcpyPeerAsync: no such device");
  return cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s);
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (!range_in_device(dst, bytes))
    return fail(cudaErrorInvalidValue, "cudasim: cudaMemset of " + std::to_string(bytes) +
                                           " bytes outside device memory");
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s) {
  if (!detail::check_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudasim: invalid stream");
  return cudaMemset(dst, value, bytes);
}

// ---------------------------------------------------------------- streams and events
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new CUstream_st{tl_device};
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  g_streams.insert(*s);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_stream_mutex);
  if (!g_streams.erase(s)) return fail(cudaErrorInvalidResourceHandle, "cudasim: cudaStreamDestroy of an unknown stream");
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  return detail::check_stream(s) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle, "cudasim: invalid stream");
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudasim: cudaStreamWaitEvent on a null event");
  return cudaStreamSynchronize(s);
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudasim: cudaEventRecord on a null event");
  if (!detail::check_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudasim: invalid stream");
  e->ms = now_ms();
  e->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  return e ? cudaSuccess : fail(cudaErrorInvalidResourceHandle, "cudasim: null event");
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop) {
  if (!start || !stop || !start->recorded || !stop->recorded)
    return fail(cudaErrorInvalidResourceHandle, "cudasim: cudaEventElapsedTime on an event never recorded");
  *ms = static_cast<float>(stop->ms - start->ms);
  return cudaSuccess;
}

// ---------------------------------------------------------------- cuBLAS on the CPU BLAS
cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  return h && detail::check_stream(s) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->math = m;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t* m) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  *m = h->math;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_INTERNAL_ERROR";
  }
}
const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_INVALID_VALUE && !tl_error_message.empty() ? tl_error_message.c_str()
                                                                       : cublasGetStatusName(s);
}

namespace {

// cuBLAS's argument checks of a (strided batched) product, shared by cublasSgemm and
// cublasGemmEx: false with `status` set when the call returns at once (an error, or nothing to
// compute); `who` names the call in the error message.
bool gemm_arguments_ok(const char* who, cublasHandle_t h, cublasOperation_t ta,
                       cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc,
                       int batch, const void* A, const void* B, const void* C,
                       cublasStatus_t& status) {
  status = CUBLAS_STATUS_SUCCESS;
  if (!h) {
    status = CUBLAS_STATUS_NOT_INITIALIZED;
    return false;
  }
  const int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
  if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, rows_a) ||
      ldb < std::max(1, rows_b) || ldc < std::max(1, m)) {
    tl_error_message = std::string("cudasim: ") + who +
                       ": invalid sizes or leading dimensions (m " + std::to_string(m) + ", n " +
                       std::to_string(n) + ", k " + std::to_string(k) + ", lda " +
                       std::to_string(lda) + ", ldb " + std::to_string(ldb) + ", ldc " +
                       std::to_string(ldc) + ")";
    status = CUBLAS_STATUS_INVALID_VALUE;
    return false;
  }
  if (m == 0 || n == 0 || batch == 0) return false;
  // Operands must be device memory, as on a GPU.
  if (!is_device_pointer(C) || (k > 0 && (!is_device_pointer(A) || !is_device_pointer(B)))) {
    tl_error_message = std::string("cudasim: ") + who + ": an operand is not device memory";
    status = CUBLAS_STATUS_INVALID_VALUE;
    return false;
  }
  return true;
}

// Column-major c = alpha op(a) op(b) + beta c in float32 on host memory (beta 0: c is not read).
void host_sgemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
#if CUDASIM_WITH_CBLAS
  cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
              tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, alpha, a, lda, b, ldb, beta,
              c, ldc);
#else
  // Without a CPU BLAS (-DMINIDL_BLAS=OFF): the definition.
  for (int col = 0; col < n; ++col)
    for (int row = 0; row < m; ++row) {
      float acc = 0.f;
      for (int p = 0; p < k; ++p)
        acc += (ta == CUBLAS_OP_N ? a[row + static_cast<size_t>(p) * lda]
                                  : a[p + static_cast<size_t>(row) * lda]) *
               (tb == CUBLAS_OP_N ? b[p + static_cast<size_t>(col) * ldb]
                                  : b[col + static_cast<size_t>(p) * ldb]);
      float& out = c[row + static_cast<size_t>(col) * ldc];
      out = alpha * acc + (beta == 0.f ? 0.f : beta * out);
    }
#endif
}

}  // namespace

// Column-major C = alpha op(A) op(B) + beta C, with cuBLAS's argument checks.
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                         int m, int n, int k, const float* alpha, const float* A, int lda,
                                         long long sa, const float* B, int ldb, long long sb,
                                         const float* beta, float* C, int ldc, long long sc, int batch) {
  cublasStatus_t status;
  if (!gemm_arguments_ok("cublasSgemm", h, ta, tb, m, n, k, lda, ldb, ldc, batch, A, B, C, status))
    return status;
  for (int i = 0; i < batch; ++i)
    host_sgemm(ta, tb, m, n, k, *alpha, A + i * sa, lda, B + i * sb, ldb, *beta, C + i * sc, ldc);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                           int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                           const float* beta, float* C, int ldc) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

// 16-bit A and B, float32 compute: the operands widened to float32 (exact), the float32 product
// above, and a 16-bit C rounded once (cublas_v2.h).
namespace {
bool is_16bit(cudaDataType t) { return t == CUDA_R_16F || t == CUDA_R_16BF; }
float widen16(uint16_t bits, cudaDataType t) {
  return t == CUDA_R_16BF ? cudasim::lowp::bf16_to_f32(bits) : cudasim::lowp::f16_to_f32(bits);
}
uint16_t narrow16(float v, cudaDataType t) {
  return t == CUDA_R_16BF ? cudasim::lowp::f32_to_bf16(v, false)
                          : cudasim::lowp::f32_to_f16(v, false);
}
// The float32 copy of one column-major rows x cols matrix with leading dimension ld.
std::vector<float> widen_matrix(const void* p, cudaDataType t, int rows, int cols, int ld) {
  std::vector<float> out(static_cast<size_t>(ld) * (cols > 0 ? cols - 1 : 0) + rows);
  const uint16_t* bits = static_cast<const uint16_t*>(p);
  for (int c = 0; c < cols; ++c)
    for (int r = 0; r < rows; ++r)
      out[static_cast<size_t>(c) * ld + r] = widen16(bits[static_cast<size_t>(c) * ld + r], t);
  return out;
}
}  // namespace

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType at,
                                          int lda, long long sa, const void* B, cudaDataType bt,
                                          int ldb, long long sb, const void* beta, void* C,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t algo) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!is_16bit(at) || bt != at || (ct != CUDA_R_32F && ct != at) ||
      (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC)) {
    tl_error_message =
        "cudasim: cublasGemmEx: only 16-bit A and B (both the same type), float32 or that C and "
        "CUBLAS_COMPUTE_32F are emulated";
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  cublasStatus_t status;
  if (!gemm_arguments_ok("cublasGemmEx", h, ta, tb, m, n, k, lda, ldb, ldc, batch, A, B, C, status))
    return status;
  const int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
  const int cols_a = ta == CUBLAS_OP_N ? k : m, cols_b = tb == CUBLAS_OP_N ? n : k;
  // The product runs on float32 host copies of the operands (host_sgemm).
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  for (int i = 0; i < batch; ++i) {
    const std::vector<float> a =
        widen_matrix(static_cast<const uint16_t*>(A) + i * sa, at, rows_a, k > 0 ? cols_a : 0, lda);
    const std::vector<float> b =
        widen_matrix(static_cast<const uint16_t*>(B) + i * sb, bt, rows_b, k > 0 ? cols_b : 0, ldb);
    std::vector<float> c(static_cast<size_t>(ldc) * (n - 1) + m, 0.f);
    if (k > 0) host_sgemm(ta, tb, m, n, k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), ldc);
    for (int col = 0; col < n; ++col)
      for (int row = 0; row < m; ++row) {
        const size_t idx = row + static_cast<size_t>(col) * ldc;
        if (ct == CUDA_R_32F) {
          float& out = static_cast<float*>(C)[i * sc + idx];
          out = al * c[idx] + (be == 0.f ? 0.f : be * out);
        } else {
          uint16_t& out = static_cast<uint16_t*>(C)[i * sc + idx];
          out = narrow16(al * c[idx] + (be == 0.f ? 0.f : be * widen16(out, ct)), ct);
        }
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void* alpha, const void* A, cudaDataType at,
                            int lda, const void* B, cudaDataType bt, int ldb, const void* beta,
                            void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
  return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta,
                                    C, ct, ldc, 0, 1, compute, algo);
}

// ---------------------------------------------------------------- cuDNN (not emulated)
size_t cudnnGetVersion() { return CUDNN_VERSION; }
const char* cudnnGetErrorString(cudnnStatus_t s) {
  switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    default: return "CUDNN_STATUS_INTERNAL_ERROR";
  }
}
void cudnnGetLastErrorString(char* message, size_t max_size) {
  if (max_size == 0) return;
  std::snprintf(message, max_size, "%s", tl_error_message.c_str());
}

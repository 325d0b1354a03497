// Timer, timing statistics and cache flushing (see timer.h). The CUDA event calls live in
// core/cuda_timer.cpp; a CPU-only build gets the error stubs at the end of this file.
#include "core/timer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <numeric>
#include <utility>

#include "core/cuda_context.h"
#include "core/tensor.h"

namespace minidl {

// ---------------------------------------------------------------- Timer

Timer::Timer(Device device) : device_(device) {
  if (device_.is_cuda()) {
    require_device(device_);
    start_event_ = detail::cuda_event_create(device_.index);
    stop_event_ = detail::cuda_event_create(device_.index);
  }
}

Timer::~Timer() { release(); }

void Timer::release() {
  if (start_event_) detail::cuda_event_destroy(start_event_);
  if (stop_event_) detail::cuda_event_destroy(stop_event_);
  start_event_ = stop_event_ = nullptr;
}

Timer::Timer(Timer&& o) noexcept
    : device_(o.device_), started_(o.started_), stopped_(o.stopped_), t0_(o.t0_), t1_(o.t1_),
      start_event_(std::exchange(o.start_event_, nullptr)),
      stop_event_(std::exchange(o.stop_event_, nullptr)) {}

Timer& Timer::operator=(Timer&& o) noexcept {
  if (this != &o) {
    release();
    device_ = o.device_;
    started_ = o.started_;
    stopped_ = o.stopped_;
    t0_ = o.t0_;
    t1_ = o.t1_;
    start_event_ = std::exchange(o.start_event_, nullptr);
    stop_event_ = std::exchange(o.stop_event_, nullptr);
  }
  return *this;
}

void Timer::start() {
  if (device_.is_cuda())
    detail::cuda_event_record(start_event_, device_.index);
  else
    t0_ = std::chrono::steady_clock::now();
  started_ = true;
  stopped_ = false;
}

void Timer::stop() {
  MINIDL_CHECK(started_, "Timer::stop: the timer on ", device_, " was not started");
  if (device_.is_cuda())
    detail::cuda_event_record(stop_event_, device_.index);
  else
    t1_ = std::chrono::steady_clock::now();
  stopped_ = true;
}

double Timer::elapsed_ms() const {
  MINIDL_CHECK(started_ && stopped_, "Timer::elapsed_ms: the timer on ", device_,
               " needs start() and then stop() first");
  if (device_.is_cuda()) return detail::cuda_event_elapsed_ms(start_event_, stop_event_);
  return std::chrono::duration<double, std::milli>(t1_ - t0_).count();
}

// ---------------------------------------------------------------- statistics

namespace {
// Linear interpolation between closest ranks (numpy.percentile's default), on sorted samples.
double percentile(const std::vector<double>& sorted, double p) {
  const double pos = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}
}  // namespace

TimingStats summarize_timings(std::vector<double> samples) {
  MINIDL_CHECK(!samples.empty(), "summarize_timings: no samples");
  std::sort(samples.begin(), samples.end());
  TimingStats s;
  s.count = static_cast<int64_t>(samples.size());
  s.min = samples.front();
  s.max = samples.back();
  s.p10 = percentile(samples, 10);
  s.median = percentile(samples, 50);
  s.p90 = percentile(samples, 90);
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(s.count);
  return s;
}

// ---------------------------------------------------------------- caches

size_t last_level_cache_bytes(Device d) {
  require_device(d);
  if (d.is_cuda()) return detail::cuda_l2_cache_bytes(d.index);
#ifdef _SC_LEVEL3_CACHE_SIZE
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return static_cast<size_t>(l3);
#endif
  return size_t(32) << 20;
}

void flush_device_cache(Device d) {
  // One buffer per device, kept for the life of the process. Deliberately never destroyed: at exit
  // the CUDA caching allocator may already be gone, and returning a block to it would be a
  // use-after-destruction.
  static std::mutex mutex;
  static auto* buffers = new std::map<std::pair<int, int>, Tensor>();
  Tensor buf;
  {
    std::lock_guard<std::mutex> lock(mutex);
    Tensor& b = (*buffers)[{static_cast<int>(d.type), d.index}];
    if (!b.defined()) {
      const int64_t bytes = static_cast<int64_t>(2 * last_level_cache_bytes(d));
      b = Tensor::empty(Shape{bytes}, DType::U8, d);
    }
    buf = b;
  }
  const size_t bytes = buf.nbytes();
  if (d.is_cuda()) {
    memset_zero(buf.raw_data(), d, bytes);
    return;
  }
  // The value changes from call to call so that no layer of the memory system can treat the
  // write as a no-op.
  static unsigned char value = 0;
  ++value;
  unsigned char* p = static_cast<unsigned char*>(buf.raw_data());
  const int64_t chunk = int64_t(1) << 16;
  const int64_t chunks = (static_cast<int64_t>(bytes) + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < chunks; ++i) {
    const int64_t begin = i * chunk;
    const int64_t len = std::min<int64_t>(chunk, static_cast<int64_t>(bytes) - begin);
    std::memset(p + begin, value, static_cast<size_t>(len));
  }
}

// ---------------------------------------------------------------- CPU-only builds

#if !MINIDL_WITH_CUDA
namespace detail {
void* cuda_event_create(int) { MINIDL_IF_CUDA(); }
void cuda_event_destroy(void*) {}
void cuda_event_record(void*, int) { MINIDL_IF_CUDA(); }
double cuda_event_elapsed_ms(void*, void*) { MINIDL_IF_CUDA(); }
size_t cuda_l2_cache_bytes(int) { MINIDL_IF_CUDA(); }
}  // namespace detail
#endif

}  // namespace minidl

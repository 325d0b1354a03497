// Timing work on the device that runs it.
//
// A GPU runs work asynchronously: a host clock read right after a launch measures the launch, not
// the kernel. On a CUDA device a Timer therefore records a pair of CUDA events on the device's
// stream (core/cuda_context.h) and reads the time between them once the second has happened; the
// host never synchronises the device between start() and stop(), so many timed regions can be
// queued back to back and read at the end. On the CPU the work is done by the time stop() is
// called and a steady (monotonic) host clock is enough.
//
//   Timer t(device);
//   t.start();  work();  t.stop();
//   double ms = t.elapsed_ms();   // CUDA: waits for the stop event only
//
// Benchmarks repeat a region many times and report robust statistics of the samples
// (summarize_timings): the median as the typical time, the minimum as the best case, and the
// 10th/90th percentiles as the spread. Before each repeat they can evict the caches
// (flush_device_cache) so that inputs left in the cache by the previous repeat don't flatter it.
//
// This header includes no CUDA header; the CUDA side is in core/cuda_timer.cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/device.h"

namespace minidl {

class Timer {
 public:
  explicit Timer(Device device = Device::cpu());
  ~Timer();
  Timer(Timer&& other) noexcept;
  Timer& operator=(Timer&& other) noexcept;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Marks the beginning of the region (CUDA: records an event on the device's stream).
  void start();
  // Marks the end of the region; start() must have been called.
  void stop();
  // Milliseconds between the last start() and stop(). On a CUDA device this waits until the stop
  // event has happened (the device itself keeps running other queued work).
  double elapsed_ms() const;

  Device device() const { return device_; }

 private:
  void release();

  Device device_;
  bool started_ = false, stopped_ = false;
  std::chrono::steady_clock::time_point t0_, t1_;  // CPU
  void* start_event_ = nullptr;                     // cudaEvent_t, CUDA only
  void* stop_event_ = nullptr;
};

// Order statistics of timing samples in milliseconds. Percentiles use linear interpolation between
// the sorted samples (numpy's default): p-th percentile at position p/100 * (count - 1).
struct TimingStats {
  int64_t count = 0;
  double min = 0.0, p10 = 0.0, median = 0.0, p90 = 0.0, max = 0.0, mean = 0.0;
};
// Throws when `samples_ms` is empty.
TimingStats summarize_timings(std::vector<double> samples_ms);

// Bytes of the device's last-level cache: the L2 of a CUDA device; on the CPU the L3 reported by
// the C library (32 MiB when it reports none).
size_t last_level_cache_bytes(Device d);

// Evicts the last-level cache by writing a buffer twice its size (allocated once per device and
// kept). On a CUDA device the write is queued on the device's stream, so it is ordered before the
// next timed region without a host synchronisation; on the CPU every thread writes a part, which
// also evicts each core's private caches.
void flush_device_cache(Device d);

namespace detail {
// The CUDA half of Timer and last_level_cache_bytes, in core/cuda_timer.cpp (CUDA builds only;
// CPU-only builds define them as errors in core/timer.cpp). Events are cudaEvent_t as void*.
void* cuda_event_create(int device);
void cuda_event_destroy(void* event);
void cuda_event_record(void* event, int device);
double cuda_event_elapsed_ms(void* start, void* stop);
size_t cuda_l2_cache_bytes(int device);
}  // namespace detail

}  // namespace minidl

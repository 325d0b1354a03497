#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "core/timer.h"

using namespace minidl;

TEST_CASE("timer: the CPU timer measures a sleep in milliseconds", "[timer]") {
  Timer t(Device::cpu());
  t.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  t.stop();
  const double ms = t.elapsed_ms();
  INFO("measured " << ms << " ms for a 30 ms sleep");
  // sleep_for never returns early on the steady clock, so the lower bound is exact up to clock
  // granularity (microseconds; 0.5 ms allowed). The upper bound is loose because a loaded CI
  // machine may deschedule the thread for a while, but it still catches a unit error (seconds or
  // microseconds would give 0.03 or 30000).
  CHECK(ms >= 29.5);
  CHECK(ms < 1000.0);

  // A second region on the same timer replaces the first.
  t.start();
  t.stop();
  CHECK(t.elapsed_ms() >= 0.0);
  CHECK(t.elapsed_ms() < 29.5);
}

TEST_CASE("timer: misuse is reported", "[timer][errors]") {
  Timer t(Device::cpu());
  REQUIRE_THROWS_WITH(t.stop(), Catch::Contains("not started"));
  REQUIRE_THROWS_WITH(t.elapsed_ms(), Catch::Contains("start() and then stop()"));
  t.start();
  REQUIRE_THROWS_WITH(t.elapsed_ms(), Catch::Contains("start() and then stop()"));
  REQUIRE_THROWS_WITH(summarize_timings({}), Catch::Contains("no samples"));
  if (!cuda_available()) {
    REQUIRE_THROWS_WITH(Timer(Device::cuda(0)), Catch::StartsWith("no CUDA device"));
    REQUIRE_THROWS_WITH(flush_device_cache(Device::cuda(0)), Catch::StartsWith("no CUDA device"));
  }
}

TEST_CASE("timer: order statistics of samples", "[timer]") {
  // Shuffled 1..11: min 1, max 11, median 6, p10 at position 1.0 -> 2, p90 at position 9.0 -> 10.
  const TimingStats s = summarize_timings({7, 3, 11, 1, 9, 5, 2, 10, 4, 8, 6});
  CHECK(s.count == 11);
  CHECK(s.min == 1.0);
  CHECK(s.max == 11.0);
  CHECK(s.median == 6.0);
  CHECK(s.p10 == Approx(2.0));
  CHECK(s.p90 == Approx(10.0));
  CHECK(s.mean == Approx(6.0));

  // Even count: the median interpolates between the middle two; p10 of (1, 2, 3, 4) sits at
  // position 0.3 -> 1.3 (numpy.percentile's linear rule).
  const TimingStats e = summarize_timings({4, 1, 3, 2});
  CHECK(e.median == Approx(2.5));
  CHECK(e.p10 == Approx(1.3));
  CHECK(e.p90 == Approx(3.7));

  const TimingStats one = summarize_timings({0.25});
  CHECK(one.min == 0.25);
  CHECK(one.median == 0.25);
  CHECK(one.p90 == 0.25);
}

TEST_CASE("timer: a CPU cache flush runs and the cache size is plausible", "[timer]") {
  const size_t llc = last_level_cache_bytes(Device::cpu());
  // Any CPU this builds on has a last-level cache between 256 KiB and 4 GiB.
  CHECK(llc >= (size_t(256) << 10));
  CHECK(llc <= (size_t(4) << 30));
  flush_device_cache(Device::cpu());
  flush_device_cache(Device::cpu());  // the buffer is reused, not reallocated
}

#include "data/thread_pool.h"

#include "core/error.h"

namespace minidl {

ThreadPool::ThreadPool(int threads) {
  MINIDL_CHECK(threads >= 1, "ThreadPool: need at least 1 thread, got ", threads);
  for (int t = 0; t < threads; ++t) threads_.emplace_back([this] { work(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> call(call_);
  std::unique_lock<std::mutex> lock(m_);
  fn_ = &fn;
  n_ = n;
  next_ = finished_ = 0;
  error_ = nullptr;
  ++generation_;
  cv_.notify_all();
  done_cv_.wait(lock, [&] { return finished_ == n_; });
  fn_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::work() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || (generation_ != seen && next_ < n_); });
    if (stop_) return;
    seen = generation_;
    while (next_ < n_) {  // take iterations one at a time until the loop is handed out
      const int64_t i = next_++;
      const std::function<void(int64_t)>& fn = *fn_;
      lock.unlock();
      std::exception_ptr e;
      try {
        fn(i);
      } catch (...) {
        e = std::current_exception();
      }
      lock.lock();
      if (e && !error_) error_ = e;
      if (++finished_ == n_) done_cv_.notify_all();
    }
  }
}

}  // namespace minidl

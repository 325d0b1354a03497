// A fixed set of threads that run the iterations of one parallel loop at a time: the folder
// dataset's decoders (data/folder.h). Separate from OpenMP's pool on purpose: the loader's thread
// decodes the next batches while the training step uses OpenMP on the caller's thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace minidl {

class ThreadPool {
 public:
  // `threads` >= 1.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Runs fn(i) for every i in [0, n) on the pool's threads and returns when all are done; the
  // first exception thrown by an iteration is rethrown here (the other iterations still run).
  // One loop at a time: calls from several threads are serialised.
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);
  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void work();

  std::vector<std::thread> threads_;
  std::mutex call_;  // one parallel_for at a time
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, next_ = 0, finished_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace minidl

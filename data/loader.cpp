// DataLoader: the epoch plan, the background producer (CPU) and the per-batch launch (CUDA).
//
// Randomness. Epoch e uses two Philox generators keyed by the seed and e:
//   shuffle:      Generator(seed ^ mix(2e))      a Fisher-Yates permutation of the M samples
//   augmentation: Generator(seed ^ mix(2e + 1))  per sample in epoch order: dy, dx, flip, cy, cx
// (mix = splitmix64's finaliser, so neighbouring epochs get unrelated keys). Nothing else feeds
// them, so batch b of epoch e is the same whatever happened before: a run resumed at epoch e sees
// exactly the batches the uninterrupted run saw, and the CPU and CUDA loaders see the same ones.
//
// The plan. start_epoch draws the whole epoch at once (a few ms for 50,000 samples): the order,
// the labels in that order, and the (S, 5) augmentation params, as tensors on the loader's device.
// A batch is then a slice of each: on CUDA the plan is uploaded once per epoch and a batch costs
// the host one kernel launch and no copy (the labels of a batch are a view of the epoch's labels).
//
// The CPU producers. W background threads (LoaderConfig::workers) run augment_batch, worker w for
// batches w, w + W, ..., batch i into slot i % slots while the caller trains on earlier batches.
// A batch handed out by next() stays valid until the call after next, so the two most recently
// handed-out slots are never written: a producer may run at most ahead = slots - 2 = max(2, W)
// batches ahead of the consumer. Batches finish in any order; next() waits for its own. On CUDA
// there is no thread: the kernel is queued on the device stream by next() itself on the caller's
// thread (which never leaves the CUDA device of the caller), and stream order makes slot reuse
// safe.
#include "data/loader.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <numeric>

#include "core/rng.h"

namespace minidl {

namespace {

constexpr int kMinAhead = 2;

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

struct DataLoader::Impl {
  int64_t batch_size = 0;
  AugmentConfig aug;
  Tensor images;  // the dataset on the loader's device (the caller's tensor itself on the CPU)

  // The current epoch's plan (see the file comment).
  bool started = false;
  int64_t batches = 0;
  std::vector<int32_t> order;  // host copy, for Batch::indices
  Tensor order_t;              // int32 (S) on the device
  Tensor labels_t;             // int32 (S) on the device
  Tensor params_t;             // int32 (S, 5) on the device

  int workers = 1;
  int64_t ahead = kMinAhead;
  std::vector<Tensor> slots;  // ahead + 2 of float (B, 3, H, W) on the device

  // CPU producer state, guarded by `mutex`.
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<char> done;  // per batch of the epoch: prepared
  int64_t consumed = 0;    // batches next() has handed out
  bool stop = false;
  std::exception_ptr error;  // what stopped a worker; rethrown by next()

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    cv.notify_all();
    for (std::thread& t : threads) t.join();
    threads.clear();
  }

  void produce(int w) {
    // Several workers each augment alone: their OpenMP teams would otherwise compete for the
    // cores with each other and with the training step.
    if (workers > 1) omp_set_num_threads(1);
    try {
      for (int64_t i = w; i < batches; i += workers) {
        {
          std::unique_lock<std::mutex> lock(mutex);
          cv.wait(lock, [&] { return stop || i < consumed + ahead; });
          if (stop) return;
        }
        run_batch(i);
        {
          std::lock_guard<std::mutex> lock(mutex);
          done[static_cast<size_t>(i)] = 1;
        }
        cv.notify_all();
      }
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
      }
      cv.notify_all();
    }
  }

  // Augment batch i of the plan into its slot; returns the slot's view of the batch.
  Tensor run_batch(int64_t i) {
    const int64_t begin = i * batch_size;
    const int64_t end = std::min(begin + batch_size, order_t.size(0));
    Tensor out =
        slots[static_cast<size_t>(i % static_cast<int64_t>(slots.size()))].slice(0, end - begin);
    augment_batch(out, images, order_t.slice(begin, end), params_t.slice(begin, end), aug);
    return out;
  }
};

DataLoader::DataLoader(const Dataset& data, const LoaderConfig& cfg)
    : data_(data), cfg_(cfg), impl_(std::make_unique<Impl>()) {
  const char* who = "DataLoader";
  MINIDL_CHECK(cfg.batch_size > 0, who, ": batch_size must be > 0, got ", cfg.batch_size);
  MINIDL_CHECK(cfg.cutout >= 0, who, ": cutout must be >= 0, got ", cfg.cutout);
  MINIDL_CHECK(cfg.cutout == 0 || cfg.augment, who, ": cutout ", cfg.cutout,
               " needs augment = true (cutout is part of the training augmentation)");
  for (int c = 0; c < 3; ++c)
    MINIDL_CHECK(cfg.norm.std[c] > 0.f, who, ": normalisation std of channel ", c, " is ",
                 cfg.norm.std[c], "; set LoaderConfig::norm, e.g. to channel_stats(train set)");
  check_dtype(data.images, DType::U8, who, "dataset images");
  MINIDL_CHECK(data.images.dim() == 4 && data.images.size(1) == 3 && !data.images.is_cuda(),
               who, ": dataset images must be uint8 (M, 3, H, W) on the CPU, got ",
               data.images.describe());
  MINIDL_CHECK(data.images.size(0) == data.size() && data.size() > 0, who, ": dataset '",
               data.name, "' has ", data.images.size(0), " images and ", data.size(),
               " labels (expected the same number, > 0)");
  MINIDL_CHECK(data.size() <= INT32_MAX, who, ": dataset has ", data.size(),
               " samples; int32 indices allow at most ", INT32_MAX);
  require_device(cfg.device);

  Impl& s = *impl_;
  s.batch_size = cfg.batch_size;
  s.aug.pad = 4;
  s.aug.cutout = cfg.augment ? cfg.cutout : 0;
  s.aug.mean = cfg.norm.mean;
  s.aug.std = cfg.norm.std;
  // The one upload of the dataset (150 MB for CIFAR training), so that batches never cross PCIe.
  s.images = data.images.to(cfg.device);
  MINIDL_CHECK(cfg.workers >= 1, who, ": workers must be >= 1, got ", cfg.workers);
  s.workers = cfg.device.is_cpu() ? cfg.workers : 1;
  s.ahead = std::max<int64_t>(kMinAhead, s.workers);
  s.slots.resize(static_cast<size_t>(s.ahead + 2));
  const int64_t b = std::min(cfg.batch_size, data.size());
  for (Tensor& t : s.slots)
    t = Tensor::empty(Shape{b, 3, data.images.size(2), data.images.size(3)}, DType::F32,
                      cfg.device);
}

DataLoader::~DataLoader() { impl_->stop_workers(); }

int64_t DataLoader::num_samples() const {
  const int64_t m = data_.size();
  return cfg_.drop_last ? m / cfg_.batch_size * cfg_.batch_size : m;
}

int64_t DataLoader::num_batches() const {
  return (num_samples() + cfg_.batch_size - 1) / cfg_.batch_size;
}

void DataLoader::start_epoch(int64_t epoch) {
  Impl& s = *impl_;
  s.stop_workers();  // an epoch left unfinished: its producers stop after their current batch

  const int64_t m = data_.size(), n = num_samples();
  // The permutation: Fisher-Yates over all M samples, then drop_last keeps its first S.
  std::vector<int32_t> perm(static_cast<size_t>(m));
  std::iota(perm.begin(), perm.end(), 0);
  if (cfg_.shuffle) {
    Generator g(cfg_.seed ^ mix(2 * static_cast<uint64_t>(epoch)));
    for (int64_t i = m - 1; i > 0; --i)
      std::swap(perm[i], perm[g.below(static_cast<uint64_t>(i + 1))]);
  }
  perm.resize(static_cast<size_t>(n));

  std::vector<int32_t> labels(static_cast<size_t>(n)), params(static_cast<size_t>(5 * n));
  const int pad = s.aug.pad;
  const int64_t H = data_.images.size(2), W = data_.images.size(3);
  Generator g(cfg_.seed ^ mix(2 * static_cast<uint64_t>(epoch) + 1));
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = data_.labels[perm[i]];
    int32_t* p = &params[5 * i];
    if (cfg_.augment) {
      p[0] = static_cast<int32_t>(g.below(2 * pad + 1));
      p[1] = static_cast<int32_t>(g.below(2 * pad + 1));
      p[2] = static_cast<int32_t>(g.below(2));
      p[3] = s.aug.cutout > 0 ? static_cast<int32_t>(g.below(H)) : -1;
      p[4] = s.aug.cutout > 0 ? static_cast<int32_t>(g.below(W)) : -1;
    } else {
      // dy = dx = pad is the crop that returns the image itself.
      p[0] = pad, p[1] = pad, p[2] = 0, p[3] = -1, p[4] = -1;
    }
  }

  // New tensors each epoch: batches of the previous epoch that the caller still holds keep theirs.
  s.order_t = Tensor::from_vector(perm, Shape{n}, cfg_.device);
  s.labels_t = Tensor::from_vector(labels, Shape{n}, cfg_.device);
  s.params_t = Tensor::from_vector(params, Shape{n, 5}, cfg_.device);
  s.order = std::move(perm);
  s.batches = num_batches();
  s.done.assign(static_cast<size_t>(s.batches), 0);
  s.consumed = 0;
  s.stop = false;
  s.error = nullptr;
  s.started = true;
  if (cfg_.device.is_cpu())
    for (int w = 0; w < s.workers; ++w) s.threads.emplace_back([&s, w] { s.produce(w); });
}

bool DataLoader::next(Batch& b) {
  Impl& s = *impl_;
  MINIDL_CHECK(s.started, "DataLoader::next: call start_epoch(epoch) before the first batch");
  const int64_t i = s.consumed;
  if (i >= s.batches) return false;
  const int64_t begin = i * cfg_.batch_size;
  const int64_t end = std::min(begin + cfg_.batch_size, s.order_t.size(0));

  if (cfg_.device.is_cpu()) {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.cv.wait(lock, [&] { return s.done[static_cast<size_t>(i)] || s.error; });
    if (!s.done[static_cast<size_t>(i)]) std::rethrow_exception(s.error);
    b.images = s.slots[static_cast<size_t>(i % static_cast<int64_t>(s.slots.size()))].slice(
        0, end - begin);
  } else {
    b.images = s.run_batch(i);
  }
  b.labels = s.labels_t.slice(begin, end);
  b.indices.assign(s.order.begin() + begin, s.order.begin() + end);
  b.size = end - begin;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.consumed = i + 1;
  }
  s.cv.notify_all();
  return true;
}

}  // namespace minidl

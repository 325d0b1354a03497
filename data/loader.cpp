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
// The CPU producers. W background threads (LoaderConfig::workers) prepare the batches, worker w
// batches w, w + W, w + 2W, ..., batch i into slot i % slots while the caller trains on earlier
// batches. A batch handed out by next() stays valid until the call after next, so the two most
// recently handed-out slots are never written: a worker may prepare batch i only while
// i < consumed + ahead, ahead = max(2, W), with slots = ahead + 2 (batches consumed - 2 ..
// consumed + ahead - 1 then occupy distinct slots). Batches finish in any order; each has a done
// flag and next() waits for its own, so what next() returns does not depend on W. A worker that
// throws records the error with its batch and stops; next() rethrows it when it reaches that batch
// (the earliest failing batch wins), exactly where a single worker would have stopped, and again
// on every later call. With W > 1 each worker augments with one thread (omp_set_num_threads(1)
// for that thread): W OpenMP teams would compete with each other and with the training step for
// the cores. On CUDA there is no thread: the kernel is queued on the device stream by next() itself
// on the caller's thread (which never leaves the CUDA device of the caller), and stream order makes
// slot reuse safe.
//
// A folder dataset (Dataset::files, data/folder.h) has no images in memory: the W workers run on
// every device and decode batch i into a host uint8 slot with its labels, on a pool of
// decoding threads (DataOptions::workers; one parallel loop at a time, shared by the W workers)
// (each image's transform is drawn from Generator(seed ^ mix(2e + 1) ^ mix(~p)) for position p of
// the epoch, so it does not depend on which thread decodes it); the augment pass then runs on that
// slot (CPU: in the thread; CUDA: next() uploads the slot and queues the kernel). A file that
// cannot be decoded stops the epoch with an error naming it, or with BadImages::Skip is replaced by
// the next good image of the same batch (label included), counted in the dataset's BadImageLog and
// warned about once on stderr.
#include "data/loader.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <iostream>
#include <numeric>

#include "core/rng.h"
#include "data/folder.h"
#include "data/thread_pool.h"

namespace minidl {

namespace {

constexpr int64_t kMinAhead = 2;

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

  int workers = 1;            // producer threads (1 on CUDA for an in-memory dataset: none)
  int64_t ahead = kMinAhead;  // max(2, workers): how far a worker may run ahead of next()
  std::vector<Tensor> slots;  // ahead + 2 of float (B, 3, H, W) on the device
  size_t slot(int64_t i) const {
    return static_cast<size_t>(i % static_cast<int64_t>(slots.size()));
  }

  // Folder datasets: decoded uint8 batches and their labels on the host (and their device copies
  // on CUDA), the decoding threads, and the key of the epoch's per-image draws.
  const ImageFiles* files = nullptr;
  const std::vector<int32_t>* sample_labels = nullptr;
  bool random_resized_crop = false;
  std::vector<Tensor> host_px, host_labels, dev_px, dev_labels;  // one of each per slot
  Tensor identity;  // int32 (B): 0, 1, ..., B-1 (a decoded batch is its own "dataset")
  std::unique_ptr<ThreadPool> pool;
  uint64_t draw_key = 0;

  // Producer state, guarded by `mutex`.
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<char> done;  // per batch of the epoch: prepared
  int64_t consumed = 0;    // batches next() has handed out
  bool stop = false;
  std::exception_ptr error;  // the failure of the earliest failing batch, `failed_at`
  int64_t failed_at = INT64_MAX;

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    cv.notify_all();
    for (std::thread& t : threads) t.join();
    threads.clear();
  }

  // Worker w: batches w, w + workers, ... (see the file comment).
  void produce(int w) {
    if (workers > 1) omp_set_num_threads(1);
    for (int64_t i = w; i < batches; i += workers) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return stop || i < consumed + ahead; });
        if (stop) return;
      }
      try {
        run_batch(i);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          if (i < failed_at) failed_at = i, error = std::current_exception();
        }
        cv.notify_all();
        return;
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        done[static_cast<size_t>(i)] = 1;
      }
      cv.notify_all();
    }
  }

  // The background thread's work for batch i: augment it (in-memory CPU dataset), or decode it
  // (folder dataset) and on the CPU augment it too.
  void run_batch(int64_t i) {
    if (files == nullptr) {
      augment_slot(i);
      return;
    }
    decode_batch(i);
    if (!slots[0].is_cuda()) augment_slot(i);
  }

  // Augment batch i of the plan into its slot; returns the slot's view of the batch.
  Tensor augment_slot(int64_t i) {
    const int64_t begin = i * batch_size;
    const int64_t end = std::min(begin + batch_size, order_t.size(0));
    Tensor out = slots[slot(i)].slice(0, end - begin);
    if (files == nullptr) {
      augment_batch(out, images, order_t.slice(begin, end), params_t.slice(begin, end), aug);
    } else {
      const Tensor& px = slots[0].is_cuda() ? dev_px[slot(i)] : host_px[slot(i)];
      augment_batch(out, px.slice(0, end - begin), identity.slice(0, end - begin),
                    params_t.slice(begin, end), aug);
    }
    return out;
  }

  // Decodes the images of batch i into host_px/host_labels[slot(i)] (see the file comment).
  void decode_batch(int64_t i) {
    const int64_t begin = i * batch_size;
    const int64_t n = std::min(begin + batch_size, static_cast<int64_t>(order.size())) - begin;
    uint8_t* px = host_px[slot(i)].data<uint8_t>();
    int32_t* lab = host_labels[slot(i)].data<int32_t>();
    const int64_t per_image = host_px[0].numel() / host_px[0].size(0);
    std::vector<std::string> bad(static_cast<size_t>(n));
    pool->parallel_for(n, [&](int64_t k) {
      const int64_t sample = order[static_cast<size_t>(begin + k)];
      lab[k] = (*sample_labels)[static_cast<size_t>(sample)];
      try {
        if (random_resized_crop) {
          Generator g(draw_key ^ mix(~static_cast<uint64_t>(begin + k)));
          decode_random_resized_crop(*files, sample, g, px + k * per_image);
        } else {
          decode_eval(*files, sample, px + k * per_image);
        }
      } catch (const Error& e) {
        if (files->opt.bad_images == BadImages::Stop)
          throw Error(str(e.what(), " (--bad-images skip skips such files and counts them)"));
        bad[static_cast<size_t>(k)] = e.what();
      }
    });
    for (int64_t k = 0; k < n; ++k) {
      if (bad[static_cast<size_t>(k)].empty()) continue;
      const std::string& path = files->paths[static_cast<size_t>(order[begin + k])];
      if (files->bad->add(path))
        std::cerr << "warning: skipping " << bad[static_cast<size_t>(k)] << " (--bad-images skip; "
                  << files->bad->count() << " skipped so far)\n";
      int64_t good = -1;
      for (int64_t j = 1; j < n && good < 0; ++j)
        if (bad[static_cast<size_t>((k + j) % n)].empty()) good = (k + j) % n;
      MINIDL_CHECK(good >= 0, "DataLoader: every image of batch ", i, " (", n,
                   " images) failed to decode, e.g. ", bad[static_cast<size_t>(k)]);
      std::copy(px + good * per_image, px + (good + 1) * per_image, px + k * per_image);
      lab[k] = lab[good];
    }
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
  if (data.files) {
    MINIDL_CHECK(static_cast<int64_t>(data.files->paths.size()) == data.size() && data.size() > 0,
                 who, ": folder dataset has ", data.files->paths.size(), " files and ",
                 data.size(), " labels (expected the same number, > 0)");
  } else {
    check_dtype(data.images, DType::U8, who, "dataset images");
    MINIDL_CHECK(data.images.dim() == 4 && data.images.size(1) == 3 && !data.images.is_cuda(),
                 who, ": dataset images must be uint8 (M, 3, H, W) on the CPU, got ",
                 data.images.describe());
    MINIDL_CHECK(data.images.size(0) == data.size() && data.size() > 0, who, ": dataset '",
                 data.name, "' has ", data.images.size(0), " images and ", data.size(),
                 " labels (expected the same number, > 0)");
  }
  MINIDL_CHECK(cfg.world >= 1 && cfg.rank >= 0 && cfg.rank < cfg.world, who, ": rank ", cfg.rank,
               " of ", cfg.world, " ranks is not a rank (0 <= rank < world)");
  MINIDL_CHECK(data.size() <= INT32_MAX, who, ": dataset has ", data.size(),
               " samples; int32 indices allow at most ", INT32_MAX);
  MINIDL_CHECK(cfg.workers >= 1 && cfg.workers <= 64, who, ": workers must be 1 to 64, got ",
               cfg.workers, " (--workers)");
  require_device(cfg.device);

  Impl& s = *impl_;
  // Producers: on the CPU, and for a folder dataset on every device (decoding is host work).
  s.workers = cfg.device.is_cpu() || data.files ? cfg.workers : 1;
  s.ahead = std::max<int64_t>(kMinAhead, s.workers);
  const size_t nslots = static_cast<size_t>(s.ahead + 2);
  s.slots.resize(nslots);
  s.batch_size = cfg.batch_size;
  s.aug.pad = 4;
  s.aug.cutout = cfg.augment ? cfg.cutout : 0;
  s.aug.mean = cfg.norm.mean;
  s.aug.std = cfg.norm.std;
  const int64_t b = std::min(cfg.batch_size, data.size());
  int64_t H = 0, W = 0;
  if (data.files) {
    const DataOptions& o = data.files->opt;
    H = W = o.image_size;
    s.files = data.files.get();
    s.sample_labels = &data.labels;
    // Larger images are cropped at random scales instead of padded: no padding, flip only.
    s.random_resized_crop = cfg.augment && o.image_size > 32;
    if (s.random_resized_crop) s.aug.pad = 0;
    s.host_px.resize(nslots), s.host_labels.resize(nslots);
    s.dev_px.resize(nslots), s.dev_labels.resize(nslots);
    for (size_t k = 0; k < nslots; ++k) {
      s.host_px[k] = Tensor::empty(Shape{b, 3, H, W}, DType::U8, Device::cpu());
      s.host_labels[k] = Tensor::empty(Shape{b}, DType::I32, Device::cpu());
      if (cfg.device.is_cuda()) {
        s.dev_px[k] = Tensor::empty(Shape{b, 3, H, W}, DType::U8, cfg.device);
        s.dev_labels[k] = Tensor::empty(Shape{b}, DType::I32, cfg.device);
      }
    }
    std::vector<int32_t> iota(static_cast<size_t>(b));
    std::iota(iota.begin(), iota.end(), 0);
    s.identity = Tensor::from_vector(iota, Shape{b}, cfg.device);
    s.pool = std::make_unique<ThreadPool>(
        o.workers > 0 ? o.workers : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  } else {
    H = data.images.size(2), W = data.images.size(3);
    // The one upload of the dataset (150 MB for CIFAR training), so that batches never cross PCIe.
    s.images = data.images.to(cfg.device);
  }
  for (Tensor& t : s.slots) t = Tensor::empty(Shape{b, 3, H, W}, DType::F32, cfg.device);
}

DataLoader::~DataLoader() { impl_->stop_workers(); }

// Positions of the epoch plan before the rank's slice: the samples, padded to a multiple of the
// ranks for training (DistributedSampler's total_size).
int64_t DataLoader::plan_size() const {
  const int64_t m = data_.size(), w = cfg_.world;
  return cfg_.pad ? (m + w - 1) / w * w : m;
}

int64_t DataLoader::num_samples() const {
  const int64_t total = plan_size(), w = cfg_.world, r = cfg_.rank;
  const int64_t mine = (total - r + w - 1) / w;  // positions r, r + w, ... below total
  return cfg_.drop_last ? mine / cfg_.batch_size * cfg_.batch_size : mine;
}

int64_t DataLoader::num_batches() const {
  return (num_samples() + cfg_.batch_size - 1) / cfg_.batch_size;
}

void DataLoader::start_epoch(int64_t epoch) {
  Impl& s = *impl_;
  s.stop_workers();  // an epoch left unfinished: its producers stop after their current batch

  const int64_t m = data_.size(), total = plan_size();
  // The permutation: Fisher-Yates over all M samples, extended by its first positions to the
  // padded plan (several ranks only); each rank then keeps its slice, and drop_last its first S.
  std::vector<int32_t> perm(static_cast<size_t>(m));
  std::iota(perm.begin(), perm.end(), 0);
  if (cfg_.shuffle) {
    Generator g(cfg_.seed ^ mix(2 * static_cast<uint64_t>(epoch)));
    for (int64_t i = m - 1; i > 0; --i)
      std::swap(perm[i], perm[g.below(static_cast<uint64_t>(i + 1))]);
  }
  for (int64_t i = m; i < total; ++i) perm.push_back(perm[static_cast<size_t>(i % m)]);

  // The augmentation draws of every position of the plan, in plan order (so a rank's draws are
  // the ones the same position gets in a run with any other number of ranks).
  std::vector<int32_t> labels(static_cast<size_t>(total)), params(static_cast<size_t>(5 * total));
  const int pad = s.aug.pad;
  const int64_t H = s.slots[0].size(2), W = s.slots[0].size(3);
  s.draw_key = cfg_.seed ^ mix(2 * static_cast<uint64_t>(epoch) + 1);
  Generator g(s.draw_key);
  for (int64_t i = 0; i < total; ++i) {
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

  // This rank's positions rank, rank + world, ... (all of them for one rank), the first n kept.
  const int64_t n = num_samples();
  if (cfg_.world > 1 || n < total) {
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = cfg_.rank + j * cfg_.world;
      perm[j] = perm[i];
      labels[j] = labels[i];
      std::copy(&params[5 * i], &params[5 * i] + 5, &params[5 * j]);
    }
    perm.resize(static_cast<size_t>(n));
    labels.resize(static_cast<size_t>(n));
    params.resize(static_cast<size_t>(5 * n));
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
  s.failed_at = INT64_MAX;
  s.started = true;
  if (cfg_.device.is_cpu() || s.files != nullptr)
    for (int w = 0; w < s.workers; ++w) s.threads.emplace_back([&s, w] { s.produce(w); });
}

bool DataLoader::next(Batch& b) {
  Impl& s = *impl_;
  MINIDL_CHECK(s.started, "DataLoader::next: call start_epoch(epoch) before the first batch");
  const int64_t i = s.consumed;
  if (i >= s.batches) return false;
  const int64_t begin = i * cfg_.batch_size;
  const int64_t end = std::min(begin + cfg_.batch_size, s.order_t.size(0));

  if (cfg_.device.is_cpu() || s.files != nullptr) {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.cv.wait(lock, [&] { return s.done[static_cast<size_t>(i)] || s.failed_at <= i; });
    if (!s.done[static_cast<size_t>(i)]) std::rethrow_exception(s.error);
  }
  if (s.files != nullptr) {
    const size_t k = s.slot(i);
    if (cfg_.device.is_cuda()) {  // upload the decoded batch, then augment it on the device
      s.dev_px[k].copy_(s.host_px[k]);
      s.dev_labels[k].copy_(s.host_labels[k]);
      b.images = s.augment_slot(i);
    } else {
      b.images = s.slots[k].slice(0, end - begin);
    }
    b.labels = (cfg_.device.is_cuda() ? s.dev_labels[k] : s.host_labels[k]).slice(0, end - begin);
  } else {
    b.images = cfg_.device.is_cpu() ? s.slots[s.slot(i)].slice(0, end - begin) : s.augment_slot(i);
    b.labels = s.labels_t.slice(begin, end);
  }
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

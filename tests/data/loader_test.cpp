// DataLoader on the CPU: coverage of every sample, batch counts, reproducibility from (seed, epoch),
// batch lifetime, and the background thread under early restarts and destruction.
//
// The synthetic dataset makes every batch checkable by itself: image i has all pixels equal to i
// and label i % 10, and the normalisation is the identity, so each output pixel is i / 255 (or 0
// where augmentation pads or cuts out).
#include "data/loader.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <set>
#include <thread>

#include "../support/test_util.h"

using namespace minidl;

namespace {

Dataset synthetic(int64_t m, int64_t h = 6, int64_t w = 5) {
  Dataset d;
  d.name = "synthetic";
  std::vector<uint8_t> px;
  for (int64_t i = 0; i < m; ++i) px.insert(px.end(), static_cast<size_t>(3 * h * w), static_cast<uint8_t>(i));
  d.images = Tensor::from_vector(px, Shape{m, 3, h, w});
  for (int64_t i = 0; i < m; ++i) d.labels.push_back(static_cast<int32_t>(i % 10));
  d.num_classes = 10;
  return d;
}

LoaderConfig config(int64_t batch, bool shuffle, bool drop_last, uint64_t seed = 7) {
  LoaderConfig c;
  c.batch_size = batch;
  c.shuffle = shuffle;
  c.drop_last = drop_last;
  c.seed = seed;
  c.norm.mean = {0.f, 0.f, 0.f};
  c.norm.std = {1.f, 1.f, 1.f};
  return c;
}

// Every image of the batch is its sample's value (or 0 where `augmented` allows padding/cutout),
// and the labels match the indices.
bool batch_consistent(const Batch& b, bool augmented = false) {
  if (b.size != static_cast<int64_t>(b.indices.size()) || b.images.size(0) != b.size ||
      b.labels.size(0) != b.size)
    return false;
  const std::vector<float> px = b.images.to_vector<float>();
  const std::vector<int32_t> labels = b.labels.to_vector<int32_t>();
  const int64_t per = b.images.numel() / std::max<int64_t>(b.size, 1);
  for (int64_t n = 0; n < b.size; ++n) {
    if (labels[n] != b.indices[n] % 10) return false;
    const float v = static_cast<float>(b.indices[n]) / 255.f;
    for (int64_t j = 0; j < per; ++j) {
      const float x = px[n * per + j];
      if (!(x == v || (augmented && x == 0.f))) return false;
    }
  }
  return true;
}

// The indices of one whole epoch, batch by batch, checking each batch.
std::vector<std::vector<int32_t>> run_epoch(DataLoader& l, int64_t epoch, bool augmented = false) {
  l.start_epoch(epoch);
  std::vector<std::vector<int32_t>> out;
  Batch b;
  while (l.next(b)) {
    REQUIRE(batch_consistent(b, augmented));
    out.push_back(b.indices);
  }
  Batch after;
  CHECK_FALSE(l.next(after));  // stays at the end
  return out;
}

std::vector<int32_t> flat(const std::vector<std::vector<int32_t>>& batches) {
  std::vector<int32_t> v;
  for (const auto& b : batches) v.insert(v.end(), b.begin(), b.end());
  return v;
}

}  // namespace

TEST_CASE("loader: every sample once per epoch, batch counts, drop_last", "[loader][data]") {
  const Dataset d = synthetic(37);
  std::vector<int32_t> all(37);
  std::iota(all.begin(), all.end(), 0);

  SECTION("keep the last partial batch") {
    DataLoader l(d, config(8, true, false));
    CHECK(l.num_batches() == 5);
    CHECK(l.num_samples() == 37);
    const auto batches = run_epoch(l, 0);
    REQUIRE(batches.size() == 5);
    for (int i = 0; i < 4; ++i) CHECK(batches[i].size() == 8);
    CHECK(batches[4].size() == 5);
    std::vector<int32_t> seen = flat(batches);
    CHECK(seen != all);  // shuffled
    std::sort(seen.begin(), seen.end());
    CHECK(seen == all);
  }
  SECTION("drop the last partial batch") {
    DataLoader l(d, config(8, true, true));
    CHECK(l.num_batches() == 4);
    CHECK(l.num_samples() == 32);
    const auto batches = run_epoch(l, 3);
    REQUIRE(batches.size() == 4);
    std::vector<int32_t> seen = flat(batches);
    std::sort(seen.begin(), seen.end());
    CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());  // no repeats
    CHECK(seen.size() == 32);
  }
  SECTION("no shuffle: dataset order") {
    DataLoader l(d, config(10, false, false));
    CHECK(l.num_batches() == 4);
    CHECK(flat(run_epoch(l, 0)) == all);
    CHECK(flat(run_epoch(l, 5)) == all);
  }
  SECTION("batch larger than the dataset") {
    DataLoader keep(d, config(64, true, false));
    CHECK(keep.num_batches() == 1);
    CHECK(flat(run_epoch(keep, 0)).size() == 37);
    DataLoader drop(d, config(64, true, true));
    CHECK(drop.num_batches() == 0);
    CHECK(run_epoch(drop, 0).empty());
  }
}

TEST_CASE("loader: shuffle and augmentation depend only on seed and epoch", "[loader][data]") {
  const Dataset d = synthetic(50);
  LoaderConfig c = config(16, true, false, 11);
  c.augment = true;
  c.cutout = 3;
  DataLoader a(d, c);
  const auto e0 = flat(run_epoch(a, 0, true));
  const auto e1 = flat(run_epoch(a, 1, true));
  CHECK(e0 != e1);

  // A fresh loader jumping straight to epoch 1 (a resumed run) sees the same order and the same
  // augmented pixels.
  a.start_epoch(1);
  DataLoader b(d, c);
  b.start_epoch(1);
  Batch ba, bb;
  int64_t batches = 0;
  while (a.next(ba)) {
    REQUIRE(b.next(bb));
    CHECK(ba.indices == bb.indices);
    CHECK(ba.images.to_vector<float>() == bb.images.to_vector<float>());
    CHECK(ba.labels.to_vector<int32_t>() == bb.labels.to_vector<int32_t>());
    ++batches;
  }
  CHECK(batches == 4);
  CHECK_FALSE(b.next(bb));

  // The augmentation draws change with the epoch, not only the order: sample 0's image differs.
  auto image_of = [&](DataLoader& l, int64_t epoch, int32_t sample) {
    l.start_epoch(epoch);
    Batch x;
    while (l.next(x))
      for (int64_t n = 0; n < x.size; ++n)
        if (x.indices[n] == sample) return x.images.slice(n, n + 1).to_vector<float>();
    return std::vector<float>();
  };
  CHECK(image_of(a, 0, 1) != image_of(a, 1, 1));
  CHECK(image_of(a, 2, 1) == image_of(b, 2, 1));

  // Another seed, another order.
  DataLoader other(d, config(16, true, false, 12));
  CHECK(flat(run_epoch(other, 0)) != e0);
}

// DistributedSampler's semantics (data/loader.h; docs/DISTRIBUTED.md): every rank draws the
// one-process plan, padded with its own first positions to a multiple of the ranks, and takes
// positions rank, rank + world, ...; step k of the ranks together is step k of one process with a
// world times larger batch, augmented pixels included (a padding position repeats a sample with
// the augmentation draws of its own position). Evaluation slices are disjoint, unpadded.
TEST_CASE("loader: ranks take strided, padded slices of one plan", "[loader][data][dist]") {
  const Dataset d = synthetic(37);
  for (const int world : {2, 3, 4}) {
    INFO("world " << world);
    const int64_t B = 3;
    LoaderConfig one = config(B * world, true, false, 5);
    one.augment = true;
    one.cutout = 2;
    one.pad = true;
    DataLoader whole(d, one);
    // The one-process plan padded as the sampler pads it: its first positions again.
    whole.start_epoch(2);
    std::vector<int32_t> plan;
    std::vector<std::vector<float>> pixels;
    Batch b;
    while (whole.next(b))
      for (int64_t n = 0; n < b.size; ++n) {
        plan.push_back(b.indices[n]);
        pixels.push_back(b.images.slice(n, n + 1).to_vector<float>());
      }
    REQUIRE(plan.size() == 37);
    const int64_t total = (37 + world - 1) / world * world;
    for (int64_t i = 37; i < total; ++i) plan.push_back(plan[i - 37]);
    std::vector<int64_t> seen(37, 0);
    for (int r = 0; r < world; ++r) {
      LoaderConfig c = one;
      c.batch_size = B;
      c.rank = r;
      c.world = world;
      DataLoader l(d, c);
      CHECK(l.num_samples() == total / world);  // equal lengths
      CHECK(l.num_batches() == (total / world + B - 1) / B);
      l.start_epoch(2);
      int64_t j = 0;
      while (l.next(b)) {
        REQUIRE(batch_consistent(b, true));
        for (int64_t n = 0; n < b.size; ++n, ++j) {
          const int64_t pos = r + j * world;  // the position in the plan
          CHECK(b.indices[n] == plan[pos]);
          // The padding repeats a sample with augmentation draws of its own position.
          if (pos < 37) CHECK(b.images.slice(n, n + 1).to_vector<float>() == pixels[pos]);
          ++seen[b.indices[n]];
        }
      }
      CHECK(j == total / world);
      // Evaluation: no padding, disjoint.
      c.pad = false;
      c.shuffle = false;
      c.augment = false;
      c.cutout = 0;
      DataLoader e(d, c);
      CHECK(e.num_samples() == (37 - r + world - 1) / world);
      CHECK(flat(run_epoch(e, 0)).front() == r);
    }
    // Every sample once, the padding (total - 37 of them) twice.
    int64_t twice = 0;
    for (int64_t k : seen) {
      CHECK(k >= 1);
      CHECK(k <= 2);
      twice += k == 2;
    }
    CHECK(twice == total - 37);
  }
  LoaderConfig bad = config(4, true, false);
  bad.rank = 2;
  bad.world = 2;
  CHECK_THROWS_WITH(DataLoader(d, bad), Catch::Contains("rank 2 of 2 ranks is not a rank"));
}

TEST_CASE("loader: a batch stays valid until the call after next", "[loader][data][workers]") {
  const Dataset d = synthetic(64);
  for (const int workers : {1, 2, 3, 5}) {
    INFO("workers " << workers);
    LoaderConfig c = config(4, true, false);
    c.workers = workers;
    DataLoader l(d, c);
    l.start_epoch(0);
    Batch prev, cur;
    REQUIRE(l.next(prev));
    while (l.next(cur)) {
      // Give the workers time to run as far ahead as they may; they must not touch `prev`'s slot.
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
      REQUIRE(batch_consistent(prev));
      REQUIRE(batch_consistent(cur));
      prev = cur;
    }
  }
}

// --workers N (data/loader.cpp): W threads prepare batches w, w + W, ... and next() waits for its
// own batch's done flag, so order and content are those of one worker, bit for bit: augmentation
// with cutout on, a dataset size that is not a multiple of the batch (a short last batch), and
// each rank's slice of the plan. The consumer sometimes sleeps (the workers run ahead and finish
// out of order) and sometimes not (it waits on batches still being prepared).
TEST_CASE("loader: batches are bit-identical for 1, 2 and 3 workers", "[loader][data][workers]") {
  const Dataset d = synthetic(203, 9, 7);
  struct Epoch {
    std::vector<std::vector<int32_t>> indices, labels;
    std::vector<std::vector<float>> pixels;
  };
  auto epoch = [&](LoaderConfig c, int workers, int64_t e) {
    c.workers = workers;
    DataLoader l(d, c);
    l.start_epoch(e);
    Epoch out;
    Batch b;
    for (int k = 0; l.next(b); ++k) {
      if (e == 4 && k % 3 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      out.indices.push_back(b.indices);
      out.labels.push_back(b.labels.to_vector<int32_t>());
      out.pixels.push_back(b.images.to_vector<float>());
    }
    return out;
  };
  for (const int world : {1, 3}) {
    for (int rank = 0; rank < world; ++rank) {
      LoaderConfig c = config(8, true, false, 17);
      c.augment = true;
      c.cutout = 3;
      c.world = world;
      c.rank = rank;
      // Epoch 4 with a consumer that sometimes sleeps, epochs 5-9 with one that never does (a
      // batch handed out before it is done shows only when the workers finish out of order,
      // which several epochs make likely).
      for (int64_t e = 4; e < 10; ++e) {
        const Epoch one = epoch(c, 1, e);
        // 203 samples; with 3 ranks the plan is padded to 204, 68 a rank: both end short of 8.
        REQUIRE(one.pixels.size() == static_cast<size_t>((world == 1 ? 203 : 68) + 7) / 8);
        CHECK(one.indices.back().size() == (world == 1 ? 3u : 4u));
        for (const int workers : {2, 3}) {
          INFO("world " << world << ", rank " << rank << ", workers " << workers << ", epoch "
                        << e);
          const Epoch w = epoch(c, workers, e);
          CHECK(w.indices == one.indices);
          CHECK(w.labels == one.labels);
          REQUIRE(w.pixels.size() == one.pixels.size());
          for (size_t k = 0; k < w.pixels.size(); ++k) {
            INFO("batch " << k);
            CHECK(w.pixels[k] == one.pixels[k]);
          }
        }
      }
    }
  }
  LoaderConfig bad = config(4, true, false);
  bad.workers = 0;
  CHECK_THROWS_WITH(DataLoader(d, bad), Catch::Contains("workers must be 1 to 64, got 0"));
}

TEST_CASE("loader: background threads survive early start_epoch and destruction",
          "[loader][data][workers]") {
  // A shutdown that hangs (a worker waiting for room that never sees `stop`) ends the test
  // binary after 60 s with a message, instead of stalling CI until its timeout.
  struct Watchdog {
    std::atomic<bool> done{false};
    std::thread t{[this] {
      for (int k = 0; k < 600 && !done; ++k)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (done) return;
      std::fprintf(stderr, "loader test: start_epoch or the destructor hung for 60 s\n");
      std::_Exit(1);
    }};
    ~Watchdog() {
      done = true;
      t.join();
    }
  } watchdog;
  const Dataset d = synthetic(200);
  std::vector<int32_t> all(200);
  std::iota(all.begin(), all.end(), 0);
  for (int rep = 0; rep < 30; ++rep) {
    LoaderConfig c = config(8, true, false, static_cast<uint64_t>(rep));
    c.workers = 1 + rep % 3;  // 1, 2 and 3 workers
    INFO("rep " << rep << ", workers " << c.workers);
    DataLoader l(d, c);
    l.start_epoch(0);
    Batch b;
    REQUIRE(l.next(b));
    if (rep % 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // Restart mid-epoch: the new epoch is complete and correct.
    std::vector<int32_t> seen = flat(run_epoch(l, 1));
    std::sort(seen.begin(), seen.end());
    CHECK(seen == all);
    // Destruction mid-epoch (the producer waiting for room, or working) must join cleanly.
    l.start_epoch(2);
    if (rep % 3 == 0) REQUIRE(l.next(b));
  }
  {
    DataLoader never_started(d, config(8, true, false));
  }
  DataLoader l(d, config(8, true, false));
  Batch b;
  REQUIRE_THROWS_WITH(l.next(b), Catch::Contains("start_epoch"));
}

TEST_CASE("loader: configuration errors name the setting", "[loader][data][errors]") {
  const Dataset d = synthetic(10);
  LoaderConfig c = config(4, true, false);
  c.cutout = 8;  // without augment
  REQUIRE_THROWS_WITH(DataLoader(d, c), Catch::Contains("cutout 8") && Catch::Contains("augment"));
  c = config(0, true, false);
  REQUIRE_THROWS_WITH(DataLoader(d, c), Catch::Contains("batch_size"));
  c = config(4, true, false);
  c.norm = ChannelStats{};  // std 0: forgot to set the normalisation
  REQUIRE_THROWS_WITH(DataLoader(d, c), Catch::Contains("LoaderConfig::norm"));
  Dataset bad = synthetic(10);
  bad.labels.pop_back();
  REQUIRE_THROWS_WITH(DataLoader(bad, config(4, true, false)),
                      Catch::Contains("10 images and 9 labels"));
}

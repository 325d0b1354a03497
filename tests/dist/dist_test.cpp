// Data-parallel training (dist/): run by CTest under `mpirun -np 2` (1 thread each), and alone as
// one rank (every collective then is the identity, which the same assertions check).
//
//   [allreduce]    odd sizes, every dtype and reduction, against values every rank can compute.
//   [buckets]      the cut of the flat buffer, a bucket boundary inside a tensor, buckets
//                  launched during backward, and the averaged gradient equal to the mean of the
//                  ranks' gradients (each rank computes them all locally).
//   [wait]         a rank waiting for a late peer sleeps instead of spinning on its core.
//   [equivalence]  k SGD steps on N ranks of B images (gradient averaging, --sync-bn) against one
//                  process on the N x B images, with and without BatchNorm.
//
// Every rank must run the same test cases in the same order (collectives): the cases take no
// random seed of their own (fixed seeds, the same on every rank).
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <numeric>
#include <thread>

#include "core/device.h"
#include "dist/comm.h"
#if MINIDL_WITH_NCCL
#include "dist/cuda_streams.h"
#include "dist/nccl.h"
#endif
#include "dist/grad_sync.h"
#include "dist/sync_bn.h"
#include "io/safetensors.h"
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/loss.h"
#include "layers/pooling.h"
#include "support/test_util.h"

namespace minidl {
namespace {

using dist::Reduce;
using namespace test;

dist::Comm& comm() { return dist::world(); }

// A value every rank can compute for any rank: small integers, so sums are exact in float32.
double value(int rank, int64_t i) { return static_cast<double>((i * 7 + rank * 3) % 23) - 11.0; }

}  // namespace

TEST_CASE("dist all-reduce: odd sizes, every dtype, sum / mean / max", "[dist][allreduce]") {
  const int R = comm().size();
  for (const int64_t n : {int64_t{1}, int64_t{3}, int64_t{1001}, int64_t{65537}}) {
    for (const DType dt : {DType::F32, DType::F64, DType::I32}) {
      for (const Reduce op : {Reduce::Sum, Reduce::Mean, Reduce::Max}) {
        INFO("n " << n << " dtype " << dtype_name(dt) << " op " << static_cast<int>(op) << ", "
                  << comm().describe());
        std::vector<double> mine(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) mine[i] = value(comm().rank(), i);
        // A slice in the middle of a larger buffer: the elements around it must not change.
        Tensor buf = Tensor::full(Shape{n + 4}, 99.0, dt);
        Tensor t = buf.slice(2, n + 2);
        if (dt == DType::F32) t.copy_(cast(Tensor::from_vector(mine, Shape{n}), DType::F32));
        if (dt == DType::F64) t.copy_(Tensor::from_vector(mine, Shape{n}));
        if (dt == DType::I32) {
          std::vector<int32_t> m(mine.begin(), mine.end());
          t.copy_(Tensor::from_vector(m, Shape{n}));
        }
        comm().allreduce(t, op);
        const std::vector<double> all = to_doubles(buf);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; ++i) {
          double want = op == Reduce::Max ? -1e300 : 0.0;
          for (int r = 0; r < R; ++r)
            want = op == Reduce::Max ? std::max(want, value(r, i)) : want + value(r, i);
          if (op == Reduce::Mean)
            want =
                dt == DType::I32 ? static_cast<double>(static_cast<int64_t>(want) / R) : want / R;
          // Sums of small integers are exact; a mean divides once (one rounding in float32).
          const double tol = dt == DType::F32 ? std::ldexp(std::fabs(want), -23) : 0.0;
          if (!(std::fabs(all[2 + i] - want) <= tol)) ++bad;
        }
        CHECK(bad == 0);
        CHECK(all[0] == 99.0);
        CHECK(all[1] == 99.0);
        CHECK(all[n + 2] == 99.0);
        CHECK(all[n + 3] == 99.0);
      }
    }
  }
  // Host vectors and the broadcast.
  std::vector<double> d{1.5, static_cast<double>(comm().rank())};
  comm().allreduce(d, Reduce::Sum);
  CHECK(d[0] == 1.5 * R);
  CHECK(d[1] == R * (R - 1) / 2.0);
  std::vector<int64_t> m{comm().rank(), 5};
  comm().allreduce(m, Reduce::Max);
  CHECK(m[0] == R - 1);
  CHECK(m[1] == 5);
  CHECK(comm().broadcast(comm().rank() == 0 ? "from rank 0" : "other") == "from rank 0");
}

// A GPU buffer: ncclAllReduce on the device stream in a build with NCCL, else host-staged (the
// emulator's tree, where cudasim is the GPU, runs this case on the host-staged path).
TEST_CASE("dist all-reduce: a GPU buffer (NCCL or host-staged)", "[dist][allreduce][cuda]") {
  if (!cuda_available()) {
    WARN("no CUDA device: the GPU all-reduce is not run here");
    return;
  }
  const int R = comm().size();
  const int64_t n = 1001;
  std::vector<float> mine(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) mine[i] = static_cast<float>(value(comm().rank(), i));
  Tensor t = Tensor::from_vector(mine, Shape{n}, Device::cuda(0));
  Tensor s = t.slice(1, n - 1);  // a slice inside the buffer
  comm().allreduce(s, Reduce::Mean);
  const std::vector<float> got = t.to_vector<float>();
  int64_t bad = 0;
  for (int64_t i = 1; i < n - 1; ++i) {
    double want = 0;
    for (int r = 0; r < R; ++r) want += value(r, i);
    want /= R;  // one rounding in float32
    if (!(std::fabs(got[i] - want) <= std::ldexp(std::fabs(want), -23))) ++bad;
  }
  CHECK(bad == 0);
  CHECK(got[0] == mine[0]);
  CHECK(got[n - 1] == mine[n - 1]);
}

namespace {
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}
}  // namespace

// The wait of dist/comm.h ("Waiting"): rank 1 reaches a barrier 2 s after rank 0, and rank 0's
// thread must have slept through most of them. The bound: polling with sleeps of about 300 us
// (250 us + Linux's 50 us timer slack) is ~6,000 wake-ups in 2 s, each an MPI_Test and a
// nanosleep: measured 0.08 s of CPU in all (13 us a wake-up) with a load average of 11 on the 2
// cores; 0.3 s leaves almost 4x. A spinning wait takes all the CPU the kernel gives it: 2 s on an
// idle core, 0.64 s measured with the same load of 11 (the bug planted: g_wait_spin true).
TEST_CASE("dist wait: a rank waiting for a late peer does not spin", "[dist][wait]") {
  if (!comm().distributed()) return;
  comm().barrier();
  if (comm().rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(2));
  const double c0 = thread_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  comm().barrier();
  const double cpu = thread_cpu_seconds() - c0;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (comm().rank() == 0) {
    INFO("rank 0 waited " << wall << " s using " << cpu << " s of CPU");
    CHECK(wall > 1.5);  // it did wait for rank 1
    CHECK(cpu < 0.3);
  }
}

// The NCCL path with one rank, what a single lent GPU can run (scripts/gpu-check.sh, dist1; NCCL
// refuses two ranks on one device): a communicator of one rank, made with the id "broadcast" to
// itself, and ncclAllReduce (sum, mean, max) queued on the communication stream behind an event of
// the compute stream, joined back. With one rank every reduction is the identity, so this shows
// that the calls run and leave the buffer and its neighbours intact, not any sum across ranks.
TEST_CASE("dist NCCL: one rank on the communication stream", "[dist][nccl][cuda]") {
#if MINIDL_WITH_NCCL
  if (!cuda_available() || comm().distributed()) {
    WARN("the 1-rank NCCL case runs as one process on a GPU");
    return;
  }
  const int64_t n = 1001;
  std::vector<float> mine(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) mine[i] = static_cast<float>(value(0, i));
  Tensor t = Tensor::from_vector(mine, Shape{n}, Device::cuda(0));
  Tensor s = t.slice(1, n - 1);
  dist::detail::CommStream cs(0, 1);
  for (const Reduce op : {Reduce::Sum, Reduce::Mean, Reduce::Max}) {
    cs.bucket_ready(0);
    dist::detail::nccl_allreduce(
        s, op, 0, 1, [](void*, size_t) {}, cs.stream());
  }
  cs.join();
  CHECK(t.to_vector<float>() == mine);
#else
  WARN("built without NCCL: the NCCL case is not run");
#endif
}

TEST_CASE("dist buckets: cut from the end, inside tensors too", "[dist][buckets]") {
  // 10 float32 elements in buckets of 12 bytes (3 elements): [7,10) [4,7) [1,4) [0,1).
  const auto r = dist::bucket_ranges(10, 4, 12);
  REQUIRE(r.size() == 4);
  CHECK(r[0] == std::pair<int64_t, int64_t>{7, 10});
  CHECK(r[1] == std::pair<int64_t, int64_t>{4, 7});
  CHECK(r[3] == std::pair<int64_t, int64_t>{0, 1});
  CHECK(dist::bucket_ranges(10, 4, 1000).size() == 1);
  CHECK(dist::bucket_ranges(3, 8, 1).size() == 3);  // at least one element per bucket
}

namespace {

// conv(3 -> 4, 3x3, pad 1) [-> BN] -> ReLU -> global average pool -> flatten -> linear(4 -> 3).
std::unique_ptr<Sequential> small_net(bool bn, DType dt) {
  Generator gen(20261205);
  auto net = std::make_unique<Sequential>();
  net->add(std::make_unique<Conv2d>(Conv2dConfig{3, 4, 3, 1, 1, !bn, dt}, gen));
  if (bn) net->add(std::make_unique<BatchNorm2d>(BatchNorm2dConfig{4, 0.1, 1e-5, dt}));
  net->add(std::make_unique<ReLU>());
  net->add(std::make_unique<GlobalAvgPool>());
  net->add(std::make_unique<Flatten>());
  net->add(std::make_unique<Linear>(LinearConfig{4, 3, true, dt}, gen));
  net->flat_parameters();
  return net;
}

// The images and labels of a global batch of n (the same on every rank).
std::pair<Tensor, Tensor> global_batch(int64_t n, DType dt) {
  Generator g(7);
  Tensor x = cast(normal_tensor(Shape{n, 3, 5, 7}, g, 1.0), dt);
  Tensor y = label_tensor(n, 3, g);
  return {x, y};
}

Tensor rows(const Tensor& t, int64_t b, int64_t e) { return t.slice(b, e).clone(); }

// One step's loss and backward on `net` for (x, y); returns nothing, the gradients accumulate.
void loss_backward(Sequential& net, const Tensor& x, const Tensor& y) {
  SoftmaxCrossEntropy xent;
  xent.forward(net.forward(x, Mode::Train), y);
  net.backward(xent.backward());
}

// w -= lr g over the flat buffers (plain SGD: the update is lr times the gradient).
void sgd(Sequential& net, double lr) {
  FlatParameters& f = net.flat_parameters();
  Tensor w = f.values(), g = f.grads();
  if (w.dtype() == DType::F64) {
    for (int64_t i = 0; i < w.numel(); ++i) w.data<double>()[i] -= lr * g.data<double>()[i];
  } else {
    for (int64_t i = 0; i < w.numel(); ++i)
      w.data<float>()[i] -= static_cast<float>(lr) * g.data<float>()[i];
  }
}

}  // namespace

TEST_CASE("dist buckets: the averaged gradient is the mean of every rank's", "[dist][buckets]") {
  const int R = comm().size();
  const int64_t B = 3;  // per rank, odd
  for (const bool overlap : {true, false}) {
    INFO("overlap " << overlap << ", " << comm().describe());
    auto net = small_net(false, DType::F64);
    const auto [x, y] = global_batch(B * R, DType::F64);
    // Every rank's gradient, computed here; their mean is what every rank must end with.
    const int64_t numel = net->flat_parameters().numel();
    std::vector<double> mean(static_cast<size_t>(numel), 0.0);
    for (int r = 0; r < R; ++r) {
      net->zero_grad();
      loss_backward(*net, rows(x, r * B, (r + 1) * B), rows(y, r * B, (r + 1) * B));
      const std::vector<double> g = to_doubles(net->flat_parameters().grads());
      for (int64_t i = 0; i < numel; ++i) mean[i] += g[i];
    }
    for (double& m : mean) m /= R;
    // Buckets of 5 float64 elements: the conv weight (108), bias (4), the linear weight (12) and
    // bias (3) are cut inside, and the last bucket is 127 mod 5 = 2 elements.
    dist::GradSyncConfig gc;
    gc.bucket_bytes = 40;
    gc.overlap = overlap;
    dist::GradientSync sync(*net, comm(), gc);
    CHECK(sync.num_buckets() == static_cast<size_t>((numel + 4) / 5));
    net->zero_grad();
    sync.start();
    const int me = comm().rank();
    loss_backward(*net, rows(x, me * B, (me + 1) * B), rows(y, me * B, (me + 1) * B));
    sync.finish();
    if (overlap && R > 1) {
      CHECK(sync.overlapping());
      // Every bucket was launched during backward (the linear layer's first, the convolution's
      // when its backward returned), none by finish().
      CHECK(sync.launched_early() == sync.num_buckets());
    }
    const std::vector<double> got = to_doubles(net->flat_parameters().grads());
    // Every bucket is the sum of R float64 gradients divided by R: for R = 2 the sum of two terms
    // is one rounding, exactly as mean[] was computed, and the division by 2 is exact; for more
    // ranks MPI may add in another order, R - 1 roundings of at most 2^-53 of the running sum.
    int64_t bad = 0;
    for (int64_t i = 0; i < numel; ++i) {
      const double tol = (R - 1) * std::ldexp(std::fabs(mean[i]) * R, -53);
      if (!(std::fabs(got[i] - mean[i]) <= tol)) ++bad;
    }
    CHECK(bad == 0);
  }
}

// The GPU path of the buckets (dist/cuda_streams.h): each bucket's all-reduce on the
// communication stream after an event of the compute stream, the optimizer's stream after all of
// them. NCCL in a build with it; host-staged (the communication thread's copies on that stream)
// in the emulator's tree, where cudasim runs every stream call at once, so only the result and the
// calls are checked there, not the concurrency.
TEST_CASE("dist buckets: a GPU buffer on the communication stream", "[dist][buckets][cuda]") {
  if (!cuda_available()) {
    WARN("no CUDA device: the GPU buckets are not run here");
    return;
  }
  const int R = comm().size();
  const int64_t B = 3;
  auto net = small_net(false, DType::F32);
  net->to(Device::cuda(0));
  const auto [x_host, y_host] = global_batch(B * R, DType::F32);
  const Tensor x = x_host.to(Device::cuda(0)), y = y_host.to(Device::cuda(0));
  const int64_t numel = net->flat_parameters().numel();
  std::vector<double> mean(static_cast<size_t>(numel), 0.0);
  double gmax = 0;
  for (int r = 0; r < R; ++r) {
    net->zero_grad();
    loss_backward(*net, rows(x, r * B, (r + 1) * B), rows(y, r * B, (r + 1) * B));
    const std::vector<double> g = to_doubles(net->flat_parameters().grads());
    for (int64_t i = 0; i < numel; ++i) mean[i] += g[i] / R;
  }
  for (double m : mean) gmax = std::max(gmax, std::fabs(m));
  dist::GradSyncConfig gc;
  gc.bucket_bytes = 20;  // 5 float32 elements: cuts inside every tensor
  dist::GradientSync sync(*net, comm(), gc);
  if (R > 1) CHECK_THAT(sync.describe(), Catch::Contains("communication stream"));
  for (int step = 0; step < 2; ++step) {  // the second step reuses the events and the stream
    INFO("step " << step << ", " << comm().describe());
    net->zero_grad();
    sync.start();
    const int me = comm().rank();
    loss_backward(*net, rows(x, me * B, (me + 1) * B), rows(y, me * B, (me + 1) * B));
    sync.finish();
    if (R > 1) CHECK(sync.launched_early() == sync.num_buckets());
    const std::vector<double> got = to_doubles(net->flat_parameters().grads());
    // The bound: the float32 gradients of a rank may differ between two backward passes in the
    // order of their sums (a GPU kernel's atomics), at most ~100 terms here (the conv weight's
    // 3 images x 35 positions) x 2^-24 ~ 6e-6 of the largest gradient, plus the float32 sum of R
    // of them (R x 2^-24); 1e-5 of the largest covers both. A bucket not averaged (or not copied
    // back) keeps this rank's own gradient, off by O(1) of it.
    int64_t bad = 0;
    for (int64_t i = 0; i < numel; ++i)
      if (!(std::fabs(got[i] - mean[i]) <= 1e-5 * gmax)) ++bad;
    CHECK(bad == 0);
  }
}

namespace {

struct Trained {
  Tensor params;                // the flat parameter values after k steps
  std::vector<double> running;  // every BN running_mean and running_var
};

std::vector<double> running_stats(Sequential& net) {
  std::vector<double> out;
  for (const NamedBuffer& b : net.named_buffers())
    if (b.name.find("running_") != std::string::npos) {
      const std::vector<double> v = to_doubles(*b.tensor);
      out.insert(out.end(), v.begin(), v.end());
    }
  return out;
}

constexpr int kSteps = 3;
constexpr double kLr = 0.2;

// kSteps of SGD on the rows [b, e) of each step's global batch, averaged over the ranks (dist) or
// alone (one process on the whole batch).
Trained train_steps(bool bn, DType dt, int64_t global, bool distributed) {
  auto net = small_net(bn, dt);
  {
    // The caching allocator hands these NaN-filled blocks to the layers' scratch buffers next: a
    // buffer read before it is written shows up as NaN.
    std::vector<Tensor> junk;
    for (int64_t n = 1; n <= 4096; n *= 2) {
      junk.push_back(Tensor::empty(Shape{n}, dt));
      poison(junk.back());
    }
  }
  std::unique_ptr<dist::GradientSync> sync;
  const int R = distributed ? comm().size() : 1, me = distributed ? comm().rank() : 0;
  if (distributed) {
    if (bn) dist::enable_sync_batchnorm(*net, comm());
    dist::GradSyncConfig gc;
    gc.bucket_bytes = 64;
    sync = std::make_unique<dist::GradientSync>(*net, comm(), gc);
  }
  const int64_t B = global / R;
  for (int s = 0; s < kSteps; ++s) {
    auto [x, y] = global_batch(global, dt);
    x = cast(x, DType::F64);  // a different batch each step: scaled by the step
    std::vector<double> xv = to_doubles(x);
    for (double& v : xv) v *= 1.0 + 0.25 * s;
    x = cast(Tensor::from_vector(xv, x.shape()), dt);
    net->zero_grad();
    if (sync) sync->start();
    loss_backward(*net, rows(x, me * B, (me + 1) * B), rows(y, me * B, (me + 1) * B));
    if (sync) sync->finish();
    sgd(*net, kLr);
  }
  return {net->flat_parameters().values().clone(), running_stats(*net)};
}

double rel_l2(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) d += (a[i] - b[i]) * (a[i] - b[i]), n += b[i] * b[i];
  return std::sqrt(d / std::max(n, 1e-300));
}

}  // namespace

// The bounds. Both runs compute the same k steps; they differ only in the order of the sums
// (each rank sums its own images, then the ranks' sums are added; BN statistics are combined from
// each rank's mean and variance) and in rounding. In float64 that difference is float64 rounding
// amplified by the steps: the float32 one-process run below measures the amplification (its
// distance from float64 divided by float32's unit roundoff 2^-24 is at most ~1e3 here), so a
// float64 distributed run lies within ~1e3 x 2^-53 ~ 1e-13 of the float64 one-process run;
// 1e-10 leaves a factor of 1000. A wrong reduction (a sum not divided by the ranks, a rank's BN
// statistics alone, a dropped bucket) moves the weights by O(lr x gradient) ~ 1e-2 relative.
// In float32, as in tests/cuda/model_cuda_test.cpp: both float32 runs are compared with the
// float64 one-process run, and the distributed one may be no further than
//   max(2 x the one-process float32 run's relative L2, 1e-5),
// the floor being a few roundings (2^-24 ~ 6e-8) amplified as above.
TEST_CASE("dist equivalence: N ranks of B images = one process of N x B", "[dist][equivalence]") {
  const int R = comm().size();
  const int64_t global = 5 * R;  // 5 images per rank
  for (const bool bn : {true, false}) {
    INFO((bn ? "with BatchNorm and --sync-bn" : "without BatchNorm") << ", " << comm().describe());
    const Trained ref64 = train_steps(bn, DType::F64, global, false);
    const Trained dist64 = train_steps(bn, DType::F64, global, true);
    const double d64 = rel_l2(to_doubles(dist64.params), to_doubles(ref64.params));
    INFO("float64: distributed vs one process, relative L2 " << d64);
    CHECK(d64 <= 1e-10);
    if (bn) CHECK(rel_l2(dist64.running, ref64.running) <= 1e-10);

    const Trained ref32 = train_steps(bn, DType::F32, global, false);
    const Trained dist32 = train_steps(bn, DType::F32, global, true);
    const double r32 = rel_l2(to_doubles(ref32.params), to_doubles(ref64.params));
    const double d32 = rel_l2(to_doubles(dist32.params), to_doubles(ref64.params));
    INFO("float32 vs float64 one process: one process " << r32 << ", distributed " << d32);
    CHECK(r32 <= 1e-4);  // the amplification assumed above (1e3 x 2^-24 = 6e-5)
    CHECK(d32 <= std::max(2 * r32, 1e-5));
    if (bn)
      CHECK(rel_l2(dist32.running, ref64.running) <=
            std::max(2 * rel_l2(ref32.running, ref64.running), 1e-5));
  }
}

// The running statistics of --sync-bn are the same on every rank (they come from the global
// statistics): rank 0's, broadcast, equal this rank's bit for bit.
TEST_CASE("dist sync-bn: running statistics identical on every rank", "[dist][equivalence]") {
  auto net = small_net(true, DType::F32);
  dist::enable_sync_batchnorm(*net, comm());
  const int me = comm().rank();
  // Each rank its own images: different local statistics.
  Generator g(100 + me);
  const Tensor x = normal_tensor(Shape{4, 3, 5, 7}, g, 1.0 + me);
  net->forward(cast(x, DType::F32), Mode::Train);
  const std::vector<double> mine = running_stats(*net);
  std::string s;
  for (double v : mine) s += fmt::format("{:a},", v);  // exact (hexadecimal)
  CHECK(comm().broadcast(s) == s);
}

}  // namespace minidl

namespace minidl {

using namespace test;

// Not a test of its own: tests/dist/train_dist_test.sh runs it to compare two runs' checkpoints
// (MINIDL_COMPARE_A and _B, every model weight; MINIDL_COMPARE_REL_L2 the bound on the relative
// L2 distance of all weights together, the script says why).
TEST_CASE("dist: compare two checkpoints", "[.compare]") {
  const char* a = std::getenv("MINIDL_COMPARE_A");
  const char* b = std::getenv("MINIDL_COMPARE_B");
  const char* bound = std::getenv("MINIDL_COMPARE_REL_L2");
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  REQUIRE(bound != nullptr);
  const SafetensorsFile fa = load_safetensors(a), fb = load_safetensors(b);
  std::vector<double> va, vb;
  int64_t tensors = 0;
  for (const auto& [name, t] : fa.tensors) {
    if (name.rfind("optimizer.", 0) == 0 || t.dtype() != DType::F32) continue;
    const Tensor* u = fb.find(name);
    INFO(name);
    REQUIRE(u != nullptr);
    const std::vector<double> x = to_doubles(t), y = to_doubles(*u);
    REQUIRE(x.size() == y.size());
    va.insert(va.end(), x.begin(), x.end());
    vb.insert(vb.end(), y.begin(), y.end());
    ++tensors;
  }
  const double d = rel_l2(va, vb);
  std::printf("compare: %lld tensors, relative L2 distance %.3g (bound %s)\n",
              static_cast<long long>(tensors), d, bound);
  CHECK(tensors > 0);
  CHECK(d <= std::atof(bound));
}

}  // namespace minidl

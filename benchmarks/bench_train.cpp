// bench_train: end-to-end training throughput of a minidl model, the number to put beside
// PyTorch's (benchmarks/pytorch_reference.py --throughput prints the same RESULT line).
//
// One step is the whole of training: zero_grad, forward, loss, backward, optimizer update. Each
// step is timed alone with device events around it (core/timer.h); the host never waits for the
// device inside the timed window, only once at its end. Reported: the median step time and the
// images/s it gives, min/p10/p90, the throughput of the whole window by the host clock (this one
// includes data loading when --data is given), an epoch-time estimate for CIFAR-10's 50,000
// training images, the peak memory minidl's allocator handed out, and the loss before and after
// the window (a sanity check that the steps do train).
//
// Per iteration (fetching the batch and the step, by the host clock) the distribution is printed
// too: median, p90, p99, max and the iterations slower than 3x the median. With --data, --subset
// (short epochs: the loader's producer thread ends and starts at every epoch boundary) and --load
// (busy threads beside the run, as on a shared machine) it shows stalls that the median hides,
// e.g. OpenMP's spinning waits (core/openmp_wait.h):
//
//   bench_train --model resnet20 --batch-size 64 --device cpu --data DIR --subset 1024 --load 2
//   OMP_WAIT_POLICY=active bench_train ...   (libgomp's spinning, for comparison)
//
// Data: by default synthetic batches of CIFAR shape (uniform random pixels, random labels, fixed
// seed), a few of them already on the device and used in turn, so the number measures the model
// and not the loader. With --data DIR, real CIFAR-10 through the DataLoader with augmentation.
//
//   bench_train --model resnet18 --batch-size 128 --kernels cudnn --device cuda
//   bench_train --model resnet18 --batch-size 32 --device cpu --steps 10 --warmup-steps 2
#include <fmt/core.h>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "benchmarks/bench_common.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "core/openmp_wait.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/cifar.h"
#include "data/loader.h"
#include "engine/mixed_precision.h"
#include "kernels/cpu_kernels.h"
#include "kernels/gemm.h"
#include "layers/loss.h"
#include "models/models.h"
#include "optim/optimizer.h"

namespace {

using namespace minidl;

const char* kHelp = R"(bench_train: end-to-end training throughput of one model

  --model NAME          model from the zoo (default resnet18)
  --batch-size N        images per step (default 128)
  --kernels PATH        handwritten | cublas | cudnn (default cudnn; ignored on the CPU)
  --cpu-kernels PATH    onednn | handwritten (default: the fastest this build has; CPU only)
  --device D            cpu | cuda | cuda:N (default cuda when available, else cpu)
  --steps N             timed steps (default 30)
  --warmup-steps N      untimed steps first (default 5)
  --data DIR            real CIFAR-10 (cifar-10-batches-bin) with augmentation instead of
                        synthetic batches
  --optimizer NAME      sgd | adam | adamw | adagrad (default sgd, momentum 0.9, wd 5e-4)
  --lr X                learning rate (default 0.1 for sgd, 1e-3 otherwise)
  --tf32                let cuBLAS use TF32 tensor cores
  --precision P         fp32 | bf16 | fp16: torch.autocast's policy (engine/mixed_precision.h;
                        default fp32)
  --channels-last       NHWC activations (train --channels-last): the batch converted once at
                        the model's input, in the same pass as the 16-bit cast
  --threads N           OpenMP threads on the CPU (default: all)
  --seed N              model and data seed (default 0)
  --subset N            with --data: the first N training images only (short epochs)
  --load N              N busy threads beside the run during the timed steps (a shared machine)
  --csv PATH            append the result as a CSV row (header written when the file is new)
)";

constexpr int64_t kCifarTrainImages = 50000;

int run(int argc, char** argv) {
  const bench::Args args(
      argc, argv,
      {"model", "batch-size", "kernels", "cpu-kernels", "device", "steps", "warmup-steps", "data",
       "optimizer", "lr", "tf32", "precision", "channels-last", "threads", "seed", "csv", "subset", "load"},
      "bench_train");
  if (args.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  const Device device = Device::parse(args.get("device", cuda_available() ? "cuda" : "cpu"));
  require_device(device);
  if (args.has("threads")) omp_set_num_threads(static_cast<int>(args.get_int("threads", 1)));
  const std::string model_name = args.get("model", "resnet18");
  const int64_t batch = args.get_int("batch-size", 128);
  const KernelPath path = kernel_paths().at(args.get("kernels", "cudnn"));
  const int64_t steps = args.get_int("steps", 30), warmup = args.get_int("warmup-steps", 5);
  const std::string data_dir = args.get("data", "");
  const uint64_t seed = static_cast<uint64_t>(args.get_int("seed", 0));
  const bool tf32 = args.has("tf32");
  const Precision precision = precisions().at(args.get("precision", "fp32"));
  const Layout layout = activation_layout(args.has("channels-last"));
  MINIDL_CHECK(batch >= 1, "--batch-size: expected a positive number, got ", batch);
  MINIDL_CHECK(steps >= 1, "--steps: expected at least 1, got ", steps);
  MINIDL_CHECK(warmup >= 0, "--warmup-steps: expected 0 or more, got ", warmup);
  DeviceSettings settings;
  settings.kernels = path;
  if (args.has("cpu-kernels"))
    settings.cpu_kernels = cpu_kernel_paths().at(args.get("cpu-kernels", ""));
  settings.allow_tf32 = tf32;
  set_run_settings(settings);

  ModelConfig mcfg;
  mcfg.name = model_name;
  mcfg.seed = seed;
  std::unique_ptr<Module> model = make_model(mcfg);
  model->to(device);

  OptimizerConfig ocfg;
  ocfg.name = args.get("optimizer", "sgd");
  const double lr = args.get_double("lr", ocfg.name == "sgd" ? 0.1 : 1e-3);
  ocfg.momentum = 0.9;  // read by sgd only
  ocfg.weight_decay = 5e-4;
  std::unique_ptr<Optimizer> opt = make_optimizer(model->flat_parameters(), ocfg);
  SoftmaxCrossEntropy criterion;

  const int64_t params = model->parameter_count();
  const double fwd_flops = static_cast<double>(model->forward_flops(Shape{1, 3, 32, 32}));
  const std::string path_name =
      device.is_cuda() ? kernel_path_name(path) : cpu_kernels_name(settings.cpu_kernels);
  fmt::print("# bench_train: median over steps of the time of one whole training step "
             "(forward, loss, backward, optimizer)\n");
  fmt::print("# device: {}\n", bench::device_summary(device));
  if (device.is_cpu()) fmt::print("# {}\n", cpu_kernels_summary());
  if (device.is_cpu()) fmt::print("# OpenMP waits: {}\n", openmp_wait_policy());
  fmt::print("# commit: {}   date: {}\n", bench::git_commit(), bench::utc_now());
  fmt::print("# command: {}\n", bench::command_line(argc, argv));
  fmt::print("# model {} ({:.2f} M parameters, {:.3f} GFLOP forward per image), batch {}, kernels {}{}, "
             "precision {}, layout {}, optimizer {} lr {} wd {}, data {}\n",
             model_name, params / 1e6, fwd_flops / 1e9, batch, path_name, tf32 ? " +tf32" : "",
             precision_name(precision), layout_name(layout),
             ocfg.name, lr, ocfg.weight_decay, data_dir.empty() ? "synthetic" : data_dir);
  std::fflush(stdout);

  // ---- data
  std::vector<std::pair<Tensor, Tensor>> synthetic;  // (images, labels) on the device
  std::unique_ptr<Dataset> dataset;
  std::unique_ptr<DataLoader> loader;
  int64_t epoch = 0;
  Batch real;
  if (data_dir.empty()) {
    // Four distinct batches used in turn: inputs differ from step to step, and the device memory
    // they take (counted in the peak) is small next to the activations.
    Generator gen(seed + 1);
    for (int b = 0; b < 4; ++b) {
      Tensor x = Tensor::empty(Shape{batch, 3, 32, 32});
      for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(gen.uniform(-2.0, 2.0));
      std::vector<int32_t> y(static_cast<size_t>(batch));
      for (auto& v : y) v = static_cast<int32_t>(gen.below(10));
      synthetic.emplace_back(x.to(device), Tensor::from_vector<int32_t>(y, Shape{batch}).to(device));
    }
  } else {
    dataset =
        std::make_unique<Dataset>(load_cifar10(data_dir, Split::Train, args.get_int("subset", 0)));
    LoaderConfig lcfg;
    lcfg.batch_size = batch;
    lcfg.shuffle = true;
    lcfg.drop_last = true;
    lcfg.augment = true;
    lcfg.norm = channel_stats(*dataset);
    lcfg.seed = seed;
    lcfg.device = device;
    loader = std::make_unique<DataLoader>(*dataset, lcfg);
    loader->start_epoch(epoch);
  }
  auto next_batch = [&](int64_t step) -> std::pair<Tensor, Tensor> {
    if (!loader) return synthetic[static_cast<size_t>(step) % synthetic.size()];
    while (!loader->next(real)) loader->start_epoch(++epoch);
    return {real.images, real.labels};
  };

  // ---- the step
  GradScaler scaler = make_grad_scaler(precision);
  auto train_step = [&](const Tensor& x, const Tensor& y) {
    minidl::train_step(*model, criterion, *opt, scaler, StepPolicy{precision, layout}, x, y, lr);
  };

  for (int64_t s = 0; s < warmup; ++s) {
    auto [x, y] = next_batch(s);
    train_step(x, y);
  }
  cuda_synchronize(device);
  const double loss_before = warmup > 0 ? static_cast<double>(criterion.loss().item<float>()) : NAN;

  // --load: threads that only spin, each wanting a core, as other users' processes do.
  std::atomic<bool> loaded{true};
  std::vector<std::thread> load;
  for (int64_t i = 0; i < args.get_int("load", 0); ++i)
    load.emplace_back([&loaded] {
      volatile uint64_t x = 0;
      while (loaded.load(std::memory_order_relaxed)) x = x + 1;
    });

  std::vector<Timer> timers;
  for (int64_t s = 0; s < steps; ++s) timers.emplace_back(device);
  std::vector<double> iteration_ms;  // host clock: fetching the batch and the step
  const auto wall0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < steps; ++s) {
    const auto it0 = std::chrono::steady_clock::now();
    auto [x, y] = next_batch(warmup + s);
    timers[static_cast<size_t>(s)].start();
    train_step(x, y);
    timers[static_cast<size_t>(s)].stop();
    if (device.is_cpu())  // on a GPU the host only queues: the iteration time means nothing
      iteration_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - it0)
              .count());
  }
  cuda_synchronize(device);
  loaded = false;
  for (std::thread& t : load) t.join();
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  const double loss_after = static_cast<double>(criterion.loss().item<float>());

  std::vector<double> ms;
  for (const Timer& t : timers) ms.push_back(t.elapsed_ms());
  const TimingStats st = summarize_timings(ms);
  const double images_per_s = static_cast<double>(batch) / (st.median * 1e-3);
  const double window_images_per_s = static_cast<double>(batch * steps) / wall_s;
  const int64_t steps_per_epoch = (kCifarTrainImages + batch - 1) / batch;
  const double epoch_s = static_cast<double>(steps_per_epoch) * st.median * 1e-3;
  // Training costs about three forwards (forward, backward data, backward weights).
  const double gflops = 3.0 * fwd_flops * images_per_s * 1e-9;
  const double peak_mib = static_cast<double>(memory_stats(device).peak_in_use) / (1024.0 * 1024.0);

  fmt::print("step ms: median {:.3f}  min {:.3f}  p10 {:.3f}  p90 {:.3f}  ({} steps after {} warm-up)\n",
             st.median, st.min, st.p10, st.p90, steps, warmup);
  if (!iteration_ms.empty()) {
    std::vector<double> sorted = iteration_ms;
    std::sort(sorted.begin(), sorted.end());
    const auto pct = [&](double q) {
      return sorted[std::min(sorted.size() - 1,
                             static_cast<size_t>(q * (sorted.size() - 1) + 0.5))];
    };
    const double med = pct(0.5);
    const auto slow =
        std::count_if(sorted.begin(), sorted.end(), [&](double v) { return v > 3 * med; });
    double slow_ms = 0.0;
    for (double v : sorted) slow_ms += v > 3 * med ? v : 0.0;
    fmt::print(
        "iteration ms (batch + step, host clock{}): median {:.1f}  p90 {:.1f}  p99 {:.1f}  "
        "max {:.1f}  slower than 3x median: {} of {} ({:.1f} s of {:.1f} s)\n",
        args.has("load") ? fmt::format(", {} busy threads beside", args.get_int("load", 0))
                         : std::string(),
        med, pct(0.9), pct(0.99), sorted.back(), slow, sorted.size(), slow_ms * 1e-3,
        std::accumulate(sorted.begin(), sorted.end(), 0.0) * 1e-3);
  }
  fmt::print("throughput: {:.1f} images/s from the median step, {:.1f} images/s over the window "
             "(host clock{}), ~{:.0f} GFLOP/s (3 x forward FLOPs)\n",
             images_per_s, window_images_per_s, loader ? ", data loading included" : "", gflops);
  fmt::print("epoch estimate: {:.1f} s ({} steps of {} images)\n", epoch_s, steps_per_epoch, batch);
  fmt::print("{}\n", memory_report(device));
  // Peak resident set of the whole process (ru_maxrss, KiB on Linux): the same measure
  // pytorch_reference.py prints, so the two can be put side by side on the CPU.
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double peak_rss_mib = static_cast<double>(ru.ru_maxrss) / 1024.0;
  fmt::print("peak resident set: {:.1f} MiB (process, ru_maxrss)\n", peak_rss_mib);
  fmt::print("loss: {:.4f} after warm-up, {:.4f} after the timed steps\n", loss_before, loss_after);
  MINIDL_CHECK(std::isfinite(loss_after), "bench_train: the loss is ", loss_after,
               " after the timed steps: the training step is broken");
  const std::string data = loader ? "cifar10" : "synthetic";
  fmt::print("RESULT framework=minidl model={} device={} kernels={} tf32={} precision={} channels_last={} batch={} "
             "data={} steps={} "
             "median_step_ms={:.4f} p10_step_ms={:.4f} p90_step_ms={:.4f} images_per_s={:.2f} "
             "window_images_per_s={:.2f} epoch_estimate_s={:.2f} peak_mem_mib={:.1f} peak_rss_mib={:.1f} "
             "loss_first={:.4f} loss_last={:.4f}\n",
             model_name, device.is_cuda() ? "cuda" : "cpu", path_name, int(tf32),
             precision_name(precision), int(layout == Layout::NHWC), batch, data, steps, st.median, st.p10, st.p90, images_per_s, window_images_per_s, epoch_s, peak_mib,
             peak_rss_mib, loss_before, loss_after);

  if (args.has("csv")) {
    const std::string p = args.get("csv", "");
    const bool fresh = !std::ifstream(p).good();
    std::ofstream f(p, std::ios::app);
    MINIDL_CHECK(f.good(), "--csv: cannot write '", p, "'");
    if (fresh)
      f << "framework,model,device,kernels,tf32,batch,data,steps,median_step_ms,p10_step_ms,"
           "p90_step_ms,images_per_s,window_images_per_s,epoch_estimate_s,peak_mem_mib,commit\n";
    f << fmt::format("minidl,{},{},{},{},{},{},{},{:.4f},{:.4f},{:.4f},{:.2f},{:.2f},{:.2f},{:.1f},{}\n",
                     model_name, device.is_cuda() ? "cuda" : "cpu", path_name, int(tf32), batch, data,
                     steps, st.median, st.p10, st.p90, images_per_s, window_images_per_s, epoch_s,
                     peak_mib, bench::git_commit());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  minidl::use_bounded_openmp_spins(argv);  // as train does (core/openmp_wait.h)
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_train: " << e.what() << "\n";
    return 2;
  }
}

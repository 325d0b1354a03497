// dist_bench: data-parallel training on the CPU, run under mpirun (benchmarks/dist_bench.sh runs
// it with 1 and 2 ranks and prints the scaling ratio; docs/DISTRIBUTED.md, docs/BENCHMARKS.md).
//
//   1. all-reduce bandwidth against message size: MPI_Allreduce (mean) of float32 buffers of
//      4 KB to 64 MB, median of --repeats timings (each after a barrier); algorithm bandwidth
//      bytes / time and bus bandwidth 2 (N - 1) / N x bytes / time (NCCL's convention: what each
//      link carries in a ring all-reduce);
//   2. training steps of --model at --batch per rank on synthetic CIFAR-shaped data, with the
//      gradient buckets overlapped with backward and without (--no-overlap's single all-reduce),
//      interleaved in --repeats rounds: images/s over all ranks, and the communication time that
//      backward did not hide (GradientSync::exposed_seconds, the wait after backward), per step.
//
//   mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 build/dist_bench --model resnet20 --batch 32
//       [--steps 10 --warmup 2 --repeats 3 --max-mb 64 --bucket-mb 25]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "bench_common.h"
#include "core/rng.h"
#include "dist/comm.h"
#include "dist/grad_sync.h"
#include "layers/loss.h"
#include "models/models.h"
#include "optim/optimizer.h"

using namespace minidl;
using namespace minidl::bench;
using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct StepTimes {
  double images_per_second = 0;
  double exposed_ms = 0;  // per step, median
  double step_ms = 0;     // per step, median
};

}  // namespace

int main(int argc, char** argv) {
  try {
    dist::init();
    dist::Comm& comm = dist::world();
    const Args args(argc, argv,
                    {"model", "batch", "steps", "warmup", "repeats", "max-mb", "bucket-mb"},
                    "dist_bench");
    const std::string model_name = args.get("model", "resnet20");
    const int64_t batch = args.get_int("batch", 32), steps = args.get_int("steps", 10);
    const int64_t warmup = args.get_int("warmup", 2), repeats = args.get_int("repeats", 3);
    const int64_t max_mb = args.get_int("max-mb", 64);
    const double bucket_mb = args.get_double("bucket-mb", 25.0);
    const bool root = comm.rank() == 0;
    if (root) {
      std::printf("dist_bench: %s, commit %s, %s\n%s, %d rank(s)\ncommand: %s\n\n",
                  utc_now().c_str(), git_commit().c_str(), cpu_summary().c_str(),
                  comm.describe().c_str(), comm.size(), command_line(argc, argv).c_str());
    }

    // 1. All-reduce bandwidth.
    if (comm.distributed()) {
      if (root)
        std::printf("all-reduce (mean) of float32 buffers, median of %lld\n%12s %12s %12s %12s\n",
                    static_cast<long long>(std::max<int64_t>(repeats * 3, 5)), "bytes", "ms",
                    "algbw GB/s", "busbw GB/s");
      for (int64_t bytes = 4096; bytes <= max_mb * (int64_t{1} << 20); bytes *= 4) {
        Tensor t = Tensor::full(Shape{bytes / 4}, 1.0);
        comm.allreduce(t, dist::Reduce::Mean);  // warm-up
        std::vector<double> ts;
        for (int64_t r = 0; r < std::max<int64_t>(repeats * 3, 5); ++r) {
          comm.barrier();
          const auto t0 = Clock::now();
          comm.allreduce(t, dist::Reduce::Mean);
          ts.push_back(seconds(t0));
        }
        std::vector<double> worst{median(ts)};  // the slowest rank's median
        comm.allreduce(worst, dist::Reduce::Max);
        const double s = worst[0], n = comm.size();
        if (root)
          std::printf("%12lld %12.3f %12.3f %12.3f\n", static_cast<long long>(bytes), s * 1e3,
                      bytes / s / 1e9, 2 * (n - 1) / n * bytes / s / 1e9);
      }
      if (root) std::printf("\n");
    }

    // 2. Training steps, overlap on and off, interleaved.
    ModelConfig mc;
    mc.name = model_name;
    mc.num_classes = 10;
    mc.seed = 1;
    std::unique_ptr<Module> model = make_model(mc);
    OptimizerConfig oc;
    oc.name = "sgd";
    std::unique_ptr<Optimizer> opt = make_optimizer(model->flat_parameters(), oc);
    SoftmaxCrossEntropy xent;
    Generator gen(1000 + comm.rank());
    Tensor x = Tensor::empty(Shape{batch, 3, 32, 32});
    for (int64_t i = 0; i < x.numel(); ++i)
      x.data<float>()[i] = static_cast<float>(gen.uniform(-2.0, 2.0));
    std::vector<int32_t> labels(static_cast<size_t>(batch));
    for (auto& l : labels) l = static_cast<int32_t>(gen.below(10));
    const Tensor y = Tensor::from_vector(labels, Shape{batch});

    std::map<bool, std::vector<StepTimes>> rounds;
    for (int64_t r = 0; r < repeats; ++r) {
      for (const bool overlap : {true, false}) {
        dist::GradSyncConfig gc;
        gc.overlap = overlap;
        gc.bucket_bytes = static_cast<int64_t>(bucket_mb * 1e6);
        dist::GradientSync sync(*model, comm, gc);
        if (root && r == 0) std::printf("%s\n", sync.describe().c_str());
        std::vector<double> step_s, exposed_s;
        comm.barrier();
        const auto t_all = Clock::now();
        for (int64_t s = 0; s < warmup + steps; ++s) {
          if (s == warmup) comm.barrier();
          const auto t0 = Clock::now();
          model->zero_grad();
          xent.forward(model->forward(x, Mode::Train), y);
          sync.start();
          model->backward(xent.backward());
          sync.finish();
          opt->step(0.01);
          if (s >= warmup) {
            step_s.push_back(seconds(t0));
            exposed_s.push_back(sync.exposed_seconds());
          }
        }
        (void)t_all;
        StepTimes st;
        st.step_ms = median(step_s) * 1e3;
        st.exposed_ms = median(exposed_s) * 1e3;
        std::vector<double> worst{st.step_ms};
        comm.allreduce(worst, dist::Reduce::Max);  // the step takes as long as the slowest rank
        st.step_ms = worst[0];
        st.images_per_second = static_cast<double>(batch * comm.size()) / (st.step_ms / 1e3);
        rounds[overlap].push_back(st);
      }
    }
    if (root) {
      std::printf(
          "\n%s, %lld images per rank per step, %d rank(s); median over %lld rounds of the "
          "per-step medians of %lld steps\n",
          model_name.c_str(), static_cast<long long>(batch), comm.size(),
          static_cast<long long>(repeats), static_cast<long long>(steps));
      std::printf("%-12s %12s %12s %22s\n", "buckets", "step ms", "images/s",
                  "exposed comm ms/step");
      for (const bool overlap : {true, false}) {
        std::vector<double> ms, ips, ex;
        for (const StepTimes& s : rounds[overlap]) {
          ms.push_back(s.step_ms);
          ips.push_back(s.images_per_second);
          ex.push_back(s.exposed_ms);
        }
        std::printf("%-12s %12.1f %12.1f %22.2f\n", overlap ? "overlapped" : "after (off)",
                    median(ms), median(ips), median(ex));
        std::printf("RESULT ranks=%d overlap=%d images_per_second=%.2f exposed_ms=%.3f\n",
                    comm.size(), overlap ? 1 : 0, median(ips), median(ex));
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dist_bench (%s): error: %s\n", minidl::dist::world().describe().c_str(),
                 e.what());
    return 1;
  }
}

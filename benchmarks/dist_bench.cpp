// dist_bench: data-parallel training on the CPU, run under mpirun (benchmarks/dist_bench.sh runs
// it with 1 and 2 ranks in interleaved rounds and prints the scaling ratio; docs/DISTRIBUTED.md,
// docs/BENCHMARKS.md).
//
//   1. all-reduce bandwidth against message size: dist::Comm::allreduce (mean; MPI_Iallreduce
//      waited for as training waits) of float32 buffers of 4 KB to --max-mb MB, median of
//      max(3 x --repeats, 5) timings (each after a barrier), the slowest rank's; algorithm
//      bandwidth bytes / time and bus bandwidth 2 (N - 1) / N x bytes / time (NCCL's convention:
//      what each link carries in a ring all-reduce);
//   2. training steps of --model at --batch per rank on synthetic CIFAR-shaped data, in
//      --repeats rounds, each round running every mode once: the buckets of --bucket-mb
//      overlapped with backward ("overlap", train's default), the same with the wait spinning as
//      a blocking MPI call does ("overlap-spin"), buckets of --small-bucket-mb both ways ("small",
//      "small-spin": many collectives during backward), and one all-reduce after backward
//      ("no-overlap", train --no-overlap). Per rank: step, compute (forward + backward), exposed
//      communication (the wait after backward, GradientSync::exposed_seconds) and the process's
//      CPU time per step; for the job, images/s over all ranks at the slowest rank's step.
//
//   mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 build/dist_bench --model resnet20 --batch 32
//       [--steps 10 --warmup 2 --repeats 3 --max-mb 64 --bucket-mb 25 --small-bucket-mb 0.25]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

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

double cpu_seconds() {  // CPU time of every thread of this process
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// One way of averaging the gradients, timed in every round.
struct SyncMode {
  const char* name;
  bool overlap;
  bool spin;  // dist::WaitConfig::spin: poll MPI without sleeping (a blocking MPI call's way)
  double bucket_mb;
};

// Per-step medians of one rank in one round.
struct RankTimes {
  double step_ms = 0, compute_ms = 0, exposed_ms = 0, cpu_ms = 0;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    dist::init();
    dist::Comm& comm = dist::world();
    const Args args(
        argc, argv,
        {"model", "batch", "steps", "warmup", "repeats", "max-mb", "bucket-mb", "small-bucket-mb"},
        "dist_bench");
    const std::string model_name = args.get("model", "resnet20");
    const int64_t batch = args.get_int("batch", 32), steps = args.get_int("steps", 10);
    const int64_t warmup = args.get_int("warmup", 2), repeats = args.get_int("repeats", 3);
    const int64_t max_mb = args.get_int("max-mb", 64);
    const double bucket_mb = args.get_double("bucket-mb", 25.0);
    const double small_mb = args.get_double("small-bucket-mb", 0.25);
    const bool root = comm.rank() == 0;
    if (root) {
      std::printf("dist_bench: %s, commit %s, %s\n%s, %d rank(s)\ncommand: %s\n\n",
                  utc_now().c_str(), git_commit().c_str(), cpu_summary().c_str(),
                  comm.describe().c_str(), comm.size(), command_line(argc, argv).c_str());
    }

    // 1. All-reduce bandwidth: spinning (the transport's own speed: each timing starts after a
    // barrier that the ranks leave together) and polling with sleeps (training's wait; the
    // ranks leave the barrier up to a sleep apart, which small messages show).
    if (comm.distributed() && max_mb > 0) {
      const dist::WaitConfig wait0 = dist::wait_config();
      if (root)
        std::printf(
            "all-reduce (mean) of float32 buffers, median of %lld, the slowest rank's; bus "
            "bandwidth "
            "2 (N - 1) / N x bytes / time\n%12s %12s %12s %14s %14s\n",
            static_cast<long long>(std::max<int64_t>(repeats * 3, 5)), "bytes", "spin ms",
            "busbw GB/s", "polling ms", "busbw GB/s");
      for (int64_t bytes = 4096; bytes <= max_mb * (int64_t{1} << 20); bytes *= 4) {
        Tensor t = Tensor::full(Shape{bytes / 4}, 1.0);
        double s[2] = {0, 0};
        for (const bool spin : {true, false}) {
          dist::WaitConfig wc = wait0;
          wc.spin = spin;
          dist::set_wait(wc);
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
          s[spin ? 0 : 1] = worst[0];
        }
        const double n = comm.size(), bus = 2 * (n - 1) / n * static_cast<double>(bytes) / 1e9;
        if (root)
          std::printf("%12lld %12.3f %12.3f %14.3f %14.3f\n", static_cast<long long>(bytes),
                      s[0] * 1e3, bus / s[0], s[1] * 1e3, bus / s[1]);
      }
      dist::set_wait(wait0);
      if (root) std::printf("\n");
    }

    // 2. Training steps: each mode once per round, the rounds interleaved.
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

    // One rank has nothing to average: one mode. With several, the default (buckets overlapped,
    // the wait polling with a sleep), the same spinning as a blocking MPI call does, small
    // buckets (many collectives during backward) both ways, and one all-reduce after backward.
    std::vector<SyncMode> modes{{"overlap", true, false, bucket_mb}};
    if (comm.distributed()) {
      modes.push_back({"overlap-spin", true, true, bucket_mb});
      modes.push_back({"small", true, false, small_mb});
      modes.push_back({"small-spin", true, true, small_mb});
      modes.push_back({"no-overlap", false, false, bucket_mb});
    }
    const dist::WaitConfig wait0 = dist::wait_config();
    // rounds[mode][round][rank]
    std::vector<std::vector<std::vector<RankTimes>>> rounds(modes.size());
    for (int64_t r = 0; r < repeats; ++r) {
      for (size_t m = 0; m < modes.size(); ++m) {
        const SyncMode& mode = modes[m];
        dist::GradSyncConfig gc;
        gc.overlap = mode.overlap;
        gc.bucket_bytes = static_cast<int64_t>(mode.bucket_mb * 1e6);
        dist::WaitConfig wc = wait0;
        wc.spin = mode.spin;
        dist::set_wait(wc);
        dist::GradientSync sync(*model, comm, gc);
        if (root && r == 0) std::printf("%-13s %s\n", mode.name, sync.describe().c_str());
        std::vector<double> step_s, compute_s, exposed_s, cpu_s;
        comm.barrier();
        for (int64_t s = 0; s < warmup + steps; ++s) {
          if (s == warmup) comm.barrier();
          const auto t0 = Clock::now();
          const double c0 = cpu_seconds();
          model->zero_grad();
          xent.forward(model->forward(x, Mode::Train), y);
          sync.start();
          model->backward(xent.backward());
          const double compute = seconds(t0);
          sync.finish();
          opt->step(0.01);
          if (s >= warmup) {
            step_s.push_back(seconds(t0));
            compute_s.push_back(compute);
            exposed_s.push_back(sync.exposed_seconds());
            cpu_s.push_back(cpu_seconds() - c0);
          }
        }
        // Every rank's medians, gathered by a sum of slots.
        std::vector<double> all(4 * static_cast<size_t>(comm.size()), 0.0);
        double* mine = all.data() + 4 * comm.rank();
        mine[0] = median(step_s) * 1e3;
        mine[1] = median(compute_s) * 1e3;
        mine[2] = median(exposed_s) * 1e3;
        mine[3] = median(cpu_s) * 1e3;
        comm.allreduce(all, dist::Reduce::Sum);
        std::vector<RankTimes> per_rank(static_cast<size_t>(comm.size()));
        for (size_t k = 0; k < per_rank.size(); ++k)
          per_rank[k] = {all[4 * k], all[4 * k + 1], all[4 * k + 2], all[4 * k + 3]};
        rounds[m].push_back(per_rank);
      }
    }
    dist::set_wait(wait0);
    if (root) {
      std::printf(
          "\n%s, %lld images per rank per step, %d rank(s); median over %lld round(s) of the "
          "per-step medians of %lld steps.\ncompute = forward + backward (with the buckets "
          "launched in it); exposed = the wait for the all-reduces after backward; CPU = the "
          "process's CPU time per step (all its threads): above the step time, a thread spun\n",
          model_name.c_str(), static_cast<long long>(batch), comm.size(),
          static_cast<long long>(repeats), static_cast<long long>(steps));
      std::printf("%-13s %5s %10s %11s %11s %10s %10s\n", "mode", "rank", "step ms", "compute ms",
                  "exposed ms", "CPU ms", "images/s");
      for (size_t m = 0; m < modes.size(); ++m) {
        std::vector<double> ips;  // the job's: the slowest rank's step
        for (const auto& round : rounds[m]) {
          double slowest = 0;
          for (const RankTimes& t : round) slowest = std::max(slowest, t.step_ms);
          ips.push_back(static_cast<double>(batch * comm.size()) / (slowest / 1e3));
        }
        std::vector<double> exposed_all, cpu_max;  // cpu_max: the busiest rank's, per round
        for (const auto& round : rounds[m]) {
          double c = 0;
          for (const RankTimes& t : round) c = std::max(c, t.cpu_ms);
          cpu_max.push_back(c);
        }
        for (int k = 0; k < comm.size(); ++k) {
          std::vector<double> st, co, ex, cpu;
          for (const auto& round : rounds[m]) {
            st.push_back(round[k].step_ms);
            co.push_back(round[k].compute_ms);
            ex.push_back(round[k].exposed_ms);
            cpu.push_back(round[k].cpu_ms);
            exposed_all.push_back(round[k].exposed_ms);
          }
          std::printf("%-13s %5d %10.1f %11.1f %11.2f %10.1f %10s\n", k == 0 ? modes[m].name : "",
                      k, median(st), median(co), median(ex), median(cpu),
                      k == 0 ? fmt::format("{:.1f}", median(ips)).c_str() : "");
        }
        std::printf("RESULT ranks=%d mode=%s images_per_second=%.2f exposed_ms=%.3f cpu_ms=%.3f\n",
                    comm.size(), modes[m].name, median(ips), median(exposed_all), median(cpu_max));
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dist_bench (%s): error: %s\n", minidl::dist::world().describe().c_str(),
                 e.what());
    return 1;
  }
}

// `train --seeds N` (trainer.h): the same recipe with N seeds, and the spread of the accuracies.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "dist/comm.h"
#include "engine/metrics.h"
#include "engine/setup.h"
#include "engine/trainer.h"

namespace minidl {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Mean and sample standard deviation (n - 1; 0 for a single value).
void mean_std(const std::vector<double>& v, double& mean, double& sd) {
  mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  double ss = 0.0;
  for (double x : v) ss += (x - mean) * (x - mean);
  sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
}

}  // namespace

SeedsSummary run_seeds(const TrainConfig& cfg, std::ostream& log_in) {
  SeedsSummary sum;
  // Under mpirun only rank 0 prints and writes seeds.json (as run_train); every rank takes rank
  // 0's directory, whose timestamp another rank may have read a second later.
  dist::Comm& comm = dist::world();
  std::ostream null_log(nullptr);
  std::ostream& log = comm.rank() == 0 ? log_in : null_log;
  const fs::path base = comm.broadcast(
      cfg.out.empty()
          ? (fs::path("runs") / (cfg.model + "-seeds-" + timestamp("%Y%m%d-%H%M%S"))).string()
          : cfg.out);
  std::vector<double> finals, bests;
  for (int k = 0; k < cfg.seeds; ++k) {
    TrainConfig c = cfg;
    c.seeds = 1;
    c.seed = cfg.seed + static_cast<uint64_t>(k);
    c.out = (base / ("seed-" + std::to_string(c.seed))).string();
    log << fmt::format("=== seed {} ({} of {}) in {}\n", c.seed, k + 1, cfg.seeds, c.out);
    RunResult r = run_train(c, log);
    if (r.status == RunStatus::Interrupted) {
      sum.runs.push_back(std::move(r));
      log << "stopped: the remaining seeds were not run\n";
      return sum;
    }
    MINIDL_CHECK(!r.history.empty(), "--seeds: the run with seed ", c.seed, " trained no epoch");
    finals.push_back(r.history.back().test_acc);
    double best_test = r.history.back().test_acc;  // the test accuracy of the best checkpoint
    for (const EpochMetrics& m : r.history)
      if (m.epoch == r.best_epoch) best_test = m.test_acc;
    bests.push_back(best_test);
    sum.runs.push_back(std::move(r));
  }
  mean_std(finals, sum.final_mean, sum.final_std);
  mean_std(bests, sum.best_mean, sum.best_std);
  json runs = json::array();
  for (size_t k = 0; k < sum.runs.size(); ++k)
    runs.push_back({{"seed", cfg.seed + k},
                    {"out", sum.runs[k].out_dir},
                    {"final_test_accuracy", finals[k]},
                    {"best_epoch", sum.runs[k].best_epoch},
                    {"best_checkpoint_test_accuracy", bests[k]}});
  const json j{{"seeds", cfg.seeds},
               {"runs", runs},
               {"final_test_accuracy", {{"mean", sum.final_mean}, {"std", sum.final_std}}},
               {"best_checkpoint_test_accuracy", {{"mean", sum.best_mean}, {"std", sum.best_std}}}};
  if (comm.rank() == 0) write_file_atomic((base / "seeds.json").string(), j.dump(2) + "\n");
  log << fmt::format(
      "{} seeds ({}..{}): final test accuracy {:.2f} +- {:.2f}%, best checkpoint's test accuracy "
      "{:.2f} +- {:.2f}% (mean +- sample std); {}\n",
      cfg.seeds, cfg.seed, cfg.seed + cfg.seeds - 1, sum.final_mean, sum.final_std, sum.best_mean,
      sum.best_std, (base / "seeds.json").string());
  return sum;
}

}  // namespace minidl

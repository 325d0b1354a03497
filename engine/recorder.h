// What a training run leaves in its directory (docs/TRAINING.md, "The run directory"):
//
//   command.txt       the command line, one line per invocation
//   config.json       the configuration (rewritten with every last.safetensors)
//   metrics.csv       one row per completed epoch
//   last.safetensors  the state after the latest epoch, or at a stop in the middle of one
//   best.safetensors  the state of the epoch with the best validation (else test) accuracy
//   init.safetensors  with --save-init: the weights before the first step
//   report.html       the report, rewritten after every epoch and when the run stops
//   events.out.tfevents.*  with --tensorboard: the metrics.csv scalars per epoch and the
//                     per-layer gradient norms of each epoch's last step (io/tensorboard.h)
//
// Every file is written to a temporary file and renamed over the old one, so a crash or a second
// Ctrl-C never leaves half a file. The RunRecorder knows the paths and what each file holds; the
// training loop (trainer.cpp) says when. Under mpirun only rank 0 writes (every rank holds the same
// weights); on the other ranks every method writes nothing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "engine/report.h"
#include "engine/setup.h"
#include "engine/trainer.h"
#include "io/checkpoint.h"
#include "optim/grad_scaler.h"
#include "io/tensorboard.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace minidl {

class RunRecorder {
 public:
  RunRecorder(const Setup& s, const LrSchedule& schedule, int64_t batches_per_epoch);

  // Adds this invocation's command line to command.txt; a fresh run also writes config.json (a
  // resumed one rewrites it only with its first checkpoint, so that a resume that fails at once
  // leaves the run's description as it was). `start_epoch`: the epochs completed by the
  // checkpoint a --resume started from (0 when fresh).
  void start(int64_t start_epoch);
  // init.safetensors: the weights and optimizer state before the first step. Returns its path.
  std::string save_init(Module& model, const Optimizer& opt);
  // last.safetensors (and config.json): `completed` epochs done, plus `step_in_epoch` steps of
  // the next one when `interrupted` (a stop in the middle of an epoch). Returns what was saved.
  // `scaler`: the float16 loss scaler whose state goes into the checkpoint (nullptr or disabled:
  // none).
  TrainState save_last(Module& model, const Optimizer& opt, const RunResult& res,
                       int64_t global_step, int64_t completed, bool interrupted,
                       int64_t step_in_epoch, const GradScaler* scaler = nullptr);
  // best.safetensors, with the state save_last just wrote.
  void save_best(Module& model, const Optimizer& opt, const TrainState& state);
  void write_metrics(const std::vector<EpochMetrics>& history);
  // The latest test-set evaluation, shown by the next report.
  void set_latest_evaluation(const EvalResult& ev);
  // The per-layer gradient norms (layer_grad_norms, engine/trace.h) at the end of `epoch`: for
  // the report, and with --tensorboard as scalars "grad_norm/<layer>" at step `epoch`.
  void add_layer_grad_norms(double epoch, const std::vector<std::pair<std::string, double>>& norms);
  // report.html: the run so far under `status` ("training: epoch 3 of 30 done", "finished").
  void write_report(const RunResult& res, const std::string& status, bool in_progress);
  // report.html after an error. A resumed run keeps the report of the run it resumed (header and
  // all) unless this invocation has already rewritten it.
  void write_failure_report(const RunResult& res, const std::string& message);

  // For error messages: "<last> still holds the last good state (epoch 3)", or that no
  // checkpoint was written.
  std::string kept_message() const;
  // "resume with: <program> --resume <last>"
  std::string resume_hint() const;
  const std::string& last_path() const { return last_path_; }

 private:
  const Setup& s_;
  const bool writes_;  // rank 0 (dist/comm.h)
  int64_t batches_per_epoch_;
  bool fresh_;  // not a --resume
  std::string config_path_, last_path_, best_path_;
  int64_t last_saved_epoch_ = -1;  // the epoch last.safetensors holds; -1: none
  ReportData report_;
  bool wrote_report_ = false;  // by this invocation
  std::unique_ptr<EventWriter> events_;  // --tensorboard
  int64_t events_through_ = 0;           // epochs already written as events
};

// Pieces of the report that `train --evaluate` (evaluate.cpp) shares with the training run.
// The header: title, model, dataset, date, device, command, class names.
ReportData base_report(const Setup& s);
// The latest evaluation: loss, accuracy, confusion matrix and the first test images with their
// predictions.
void set_eval(ReportData& r, const EvalResult& ev, const Dataset& test);
// The rows of <dir>/metrics.csv up to `up_to_epoch` (none when the file is missing).
std::vector<EpochMetrics> earlier_history(const std::filesystem::path& dir, int64_t up_to_epoch);

}  // namespace minidl

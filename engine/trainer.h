// The training engine behind `train`: builds the model, data, optimizer and schedule from a
// TrainConfig, runs the epochs, evaluates on the test set after each one, and writes the run
// directory (metrics.csv, command.txt, config.json, last/best checkpoints, report.html).
//
// One training step, on whatever device the tensors live (this file never branches on it):
//
//   lr = schedule.lr_at(epoch + i / steps)   model.zero_grad()       (one memset of its flat grads)
//   logits = model.forward(x, Train)         loss = xent.forward(logits, labels)
//   model.backward(xent.backward())          optimizer.step(lr)      (one pass over all parameters)
//
// The pieces: setup.h (prepare: configuration, device, run directory, data, model), trainer.cpp
// (the epochs: train_epoch, then finish_epoch's evaluations), recorder.h (the run directory's
// files), evaluate.h (`train --evaluate`), stop_signal.h (Ctrl-C and SIGTERM).
//
// The host never waits for the device inside an epoch: each step's loss and correct-count
// (1-element device tensors) are copied into slot i of per-epoch device tensors, and read back
// only when the progress line is refreshed (every --print-freq steps) and at the end of the epoch.
// That read is where a NaN/infinite loss is detected: training stops with a message naming the
// epoch and step, and last.safetensors keeps the last good epoch.
//
// Resuming. The data loader's order and augmentation are a pure function of (seed, epoch), and a
// checkpoint holds the model, the optimizer state and the epoch/step counters, so a run resumed at
// an epoch boundary repeats the uninterrupted run exactly (bit for bit on the CPU). Ctrl-C saves
// last.safetensors mid-epoch, marked interrupted with the steps done in that epoch; --resume then
// skips those batches and continues with the next one (that epoch's train loss and accuracy then
// cover only the steps after the resume).
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "data/loader.h"
#include "engine/config.h"
#include "engine/metrics.h"
#include "layers/loss.h"
#include "layers/module.h"

namespace minidl {

struct TrainHooks {
  // Called after every training step with the 1-based epoch and step (tests interrupt with it).
  std::function<void(int64_t epoch, int64_t step)> after_step;
  // Called before every training step with the dataset indices of its batch.
  std::function<void(int64_t epoch, int64_t step, const std::vector<int32_t>& indices)> on_batch;
  // Called after an epoch's last step, before its evaluation (tests damage the model with it).
  std::function<void(Module& model)> before_evaluation;
  // Treat the log as a terminal (progress redrawn in place) even when it is not std::cout on a
  // tty: tests check what a terminal would show.
  bool terminal = false;
};

struct EvalResult {
  double loss = 0.0;
  double accuracy = 0.0;  // percent
  double top5 = 0.0;      // percent of images whose label is among the 5 largest logits
  ConfusionMatrix confusion;
  std::vector<int32_t> predictions;  // per test image, in dataset order
  std::vector<float> logits;         // with EvalOptions::keep_logits: images x classes, same order
};

struct EvalOptions {
  bool keep_logits = false;
  // The layout the batches enter the model in (train --channels-last: NHWC; model_input,
  // engine/mixed_precision.h). Evaluation is float32 whatever --precision trained.
  Layout layout = Layout::NCHW;
  // Called after each batch is queued, with the batches done and the total (the progress line).
  std::function<void(int64_t done, int64_t total)> progress;
};

enum class RunStatus { Finished, Interrupted, Evaluated };

struct RunResult {
  RunStatus status = RunStatus::Finished;
  std::string out_dir;
  std::vector<EpochMetrics> history;  // every completed epoch of the run, resumed ones included
  double best_accuracy = 0.0;
  int64_t best_epoch = -1;
  double seconds = 0.0;  // wall time of this call
  EvalResult last_eval;  // the latest test-set evaluation
  int stop_signal = 0;   // Interrupted: SIGINT or SIGTERM
  bool best_on_val = false;  // best_accuracy is the validation accuracy (--val-split)
};

// Trains (or, with cfg.evaluate, evaluates a checkpoint), printing progress to `log`. The progress
// line is redrawn in place only when `log` is std::cout and stdout is a terminal. Installs SIGINT
// and SIGTERM handlers for its duration. Throws UsageError for bad settings and minidl::Error for
// the rest (missing files, a diverged loss).
RunResult run_train(const TrainConfig& cfg, std::ostream& log, const TrainHooks& hooks = {});

// --seeds N: run_train N times with seeds seed, seed+1, ..., each in <out>/seed-<S>, then print the
// final and best accuracies of every run and their mean +- sample std (and write seeds.json).
struct SeedsSummary {
  std::vector<RunResult> runs;
  double final_mean = 0.0, final_std = 0.0;  // test accuracy after the last epoch
  double best_mean = 0.0, best_std = 0.0;    // test accuracy of the best checkpoint
};
SeedsSummary run_seeds(const TrainConfig& cfg, std::ostream& log);

// Loss, accuracy, confusion matrix and predictions of `model` over one pass of `loader`.
EvalResult evaluate(Module& model, DataLoader& loader, SoftmaxCrossEntropy& criterion,
                    int num_classes, const EvalOptions& options = {});

// What the SIGINT handler does: ask the running training loop to save and stop after its step.
void request_interrupt();
bool interrupt_requested();

}  // namespace minidl

// Evaluation passes of `train` beside the training loop: the progress line of a pass, and the
// whole of `train --evaluate` (a checkpoint's test loss, accuracy, per-class accuracy and
// confusion matrix, written to eval.json and report.html). evaluate() itself, one pass of a
// model over a loader, is declared in trainer.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>

#include "engine/progress.h"
#include "engine/setup.h"
#include "engine/trainer.h"

namespace minidl {

// The progress line of one evaluation pass, for EvalOptions::progress (pass it with std::ref):
// drawn on a terminal only, a log gets no lines from it. A Ctrl-C or SIGTERM during the pass is
// acknowledged at once (once per epoch: `told` is shared by the epoch's passes); the run stops
// only after the pass.
class EvalProgress {
 public:
  EvalProgress(std::ostream& log, bool tty, std::string label, bool& told);
  void operator()(int64_t done, int64_t total);

 private:
  std::ostream& log_;
  bool tty_;
  std::string label_;
  bool& told_;
  std::unique_ptr<ProgressBar> bar_;  // made at the first update
};

// train --evaluate, after prepare(): loads the checkpoint into s.model, evaluates it on the test
// set, prints the results and writes eval.json and report.html (and --dump-logits). `t0`: when the
// invocation started.
RunResult run_evaluate(Setup& s, std::ostream& log, std::chrono::steady_clock::time_point t0,
                       bool tty);

}  // namespace minidl

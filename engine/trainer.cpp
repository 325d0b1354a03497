// The training loop of `train` (trainer.h). The pieces, in the order a run meets them:
//
//   prepare (setup.cpp)       configuration, device, run directory, data, model
//   Training                  what the epochs share: optimizer, schedule, loaders, the recorder
//   resume                    --resume: model, optimizer state and counters from the checkpoint
//   train_epoch               the steps of one epoch (train_step each), the progress line, and
//                             the stops in the middle of an epoch (--max-steps, Ctrl-C, SIGTERM)
//   finish_epoch              the evaluations after the epoch, its checkpoints, metrics.csv and
//                             report (RunRecorder, recorder.cpp), the epoch line
//   run_evaluate (evaluate.cpp)  `train --evaluate` instead of all of the above
#include "engine/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>

#include "core/allocator.h"
#include "dist/comm.h"
#include "dist/grad_sync.h"
#include "dist/sync_bn.h"
#include "engine/evaluate.h"
#include "engine/mixed_precision.h"
#include "engine/progress.h"
#include "engine/recorder.h"
#include "engine/setup.h"
#include "engine/stop_signal.h"
#include "engine/trace.h"
#include "io/checkpoint.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace minidl {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// ------------------------------------------------------------------------------------ StepLog

// One epoch's per-step loss and correct count. They stay on the device (slot i of two tensors)
// and are read back only when the progress line is refreshed, so the host never waits for the
// device inside an epoch (see trainer.h); reading is where a NaN or infinite loss is found.
class StepLog {
 public:
  StepLog(int64_t steps, Device dev)
      : loss_(Tensor::zeros(Shape{steps}, DType::F32, dev)),
        correct_(Tensor::zeros(Shape{steps}, DType::I32, dev)),
        batch_size_(static_cast<size_t>(steps), 0) {}

  // A new epoch whose steps before `first` were trained before a resume (they are not counted).
  void start(int64_t first) {
    loss_sum_ = 0.0;
    correct_sum_ = 0;
    images_ = 0;
    read_ = first;
  }
  // Step i's loss and correct count, copied on the device from the loss layer.
  void record(int64_t i, const SoftmaxCrossEntropy& criterion, int64_t batch_size) {
    loss_.slice(i, i + 1).copy_(criterion.loss());
    correct_.slice(i, i + 1).copy_(criterion.correct());
    batch_size_[static_cast<size_t>(i)] = batch_size;
  }

  struct BadLoss {
    int64_t step;  // 0-based step of the epoch
    float loss;    // NaN or infinite
  };
  // Reads steps [read, upto) from the device into the sums; stops at the first non-finite loss.
  std::optional<BadLoss> read(int64_t upto) {
    if (upto <= read_) return std::nullopt;
    const std::vector<float> l = loss_.slice(read_, upto).to_vector<float>();
    const std::vector<int32_t> c = correct_.slice(read_, upto).to_vector<int32_t>();
    for (int64_t k = 0; k < upto - read_; ++k) {
      if (!std::isfinite(l[k])) return BadLoss{read_ + k, l[k]};
      const int64_t n = batch_size_[static_cast<size_t>(read_ + k)];
      loss_sum_ += static_cast<double>(l[k]) * static_cast<double>(n);
      correct_sum_ += c[k];
      images_ += n;
    }
    read_ = upto;
    return std::nullopt;
  }

  // Over the steps read so far: the mean loss per image, the accuracy in percent, the images.
  double mean_loss() const { return loss_sum_ / static_cast<double>(images_); }
  double accuracy() const {
    return 100.0 * static_cast<double>(correct_sum_) / static_cast<double>(images_);
  }
  int64_t images() const { return images_; }
  // Under mpirun: the sums over every rank's steps (at the end of an epoch).
  void sum_over_ranks(dist::Comm& comm) {
    std::vector<double> v{loss_sum_, static_cast<double>(correct_sum_),
                          static_cast<double>(images_)};
    comm.allreduce(v, dist::Reduce::Sum);
    loss_sum_ = v[0];
    correct_sum_ = static_cast<int64_t>(v[1]);
    images_ = static_cast<int64_t>(v[2]);
  }

 private:
  Tensor loss_, correct_;             // per step, on the device
  std::vector<int64_t> batch_size_;   // per step
  double loss_sum_ = 0.0;             // sum over images of the loss
  int64_t correct_sum_ = 0, images_ = 0;
  int64_t read_ = 0;                  // steps [0, read_) are in the sums
};

// ------------------------------------------------------------------------------------ Training

// Everything the steps and epochs of one run share.
struct Training {
  Training(Setup& setup, std::ostream& log, const TrainHooks& hooks, bool tty,
           Clock::time_point t0);

  Setup& s;
  const TrainConfig& cfg;
  Module& model;
  std::ostream& log;     // what a run always prints: warnings, epoch lines, stops, the result
  std::ostream& chatty;  // the rest (progress, setup details): nothing with --quiet
  const TrainHooks& hooks;
  const bool tty;               // redraw the progress line in place
  const Clock::time_point t0;   // when this invocation started
  const bool use_val;           // --val-split: the best epoch is chosen on the validation set
  std::unique_ptr<Optimizer> opt;  // on the model's flat parameter buffers
  const LrSchedule schedule;       // owns the base learning rate
  SoftmaxCrossEntropy criterion, eval_criterion;
  const Precision precision;  // --precision: autocast's policy (engine/mixed_precision.h)
  GradScaler scaler;          // float16 loss scaling (disabled otherwise)
  DataLoader train_loader, test_loader;
  std::unique_ptr<DataLoader> val_loader;  // with --val-split
  const int64_t steps;                     // per epoch
  StepLog step_log;
  RunRecorder recorder;
  RunResult res;
  dist::Comm& comm;  // dist::world(): this process alone without mpirun
  std::unique_ptr<dist::GradientSync> grad_sync;  // under mpirun: averages the gradients

  int64_t start_epoch = 0;  // epochs completed before this invocation
  int64_t skip = 0;         // steps of epoch start_epoch trained before this invocation
  int64_t global_step = 0;  // optimizer steps in all
  double lr = 0.0;          // the learning rate of the latest step
  bool max_steps_reached = false;
  bool header_printed = false;     // the epoch lines' column header
  double epoch_seconds_sum = 0.0;  // of the epochs completed by this invocation, for the run's ETA
  int64_t epochs_timed = 0;
};

// Where --quiet sends what it does not print.
std::ostream& null_stream() {
  static std::ostream null(nullptr);
  return null;
}

Training::Training(Setup& setup, std::ostream& log_, const TrainHooks& hooks_, bool tty_,
                   Clock::time_point t0_)
    : s(setup),
      cfg(setup.cfg),
      model(*setup.model),
      log(log_),
      chatty(setup.cfg.quiet ? null_stream() : log_),
      hooks(hooks_),
      tty(tty_),
      t0(t0_),
      use_val(setup.cfg.val_split > 0),
      opt(make_optimizer(setup.model->flat_parameters(), optimizer_config(setup.cfg))),
      schedule(schedule_config(setup.cfg)),
      precision(precisions().at(setup.cfg.precision)),
      scaler(make_grad_scaler(precision)),
      criterion(setup.cfg.label_smoothing),
      eval_criterion(setup.cfg.label_smoothing),
      train_loader(setup.train, loader_config(setup, true)),
      test_loader(setup.test, loader_config(setup, false)),
      steps(train_loader.num_batches()),
      step_log(steps, setup.device.device),
      recorder(setup, schedule, steps),
      comm(dist::world()) {
  if (use_val) val_loader = std::make_unique<DataLoader>(s.val, loader_config(s, false));
  res.out_dir = s.out.string();
  res.best_on_val = use_val;
}

const char* best_on(const Training& t) { return t.use_val ? "validation" : "test"; }

void print_determinism_notes(std::ostream& log) {
  for (const std::string& note : take_determinism_notes()) log << "deterministic: " << note << '\n';
}

// --resume: the model, the optimizer state and the counters from the checkpoint, and the history
// of the epochs it completed (from its directory's metrics.csv).
void resume(Training& t) {
  if (t.s.checkpoint.empty()) return;
  const TrainState st = load_checkpoint(t.s.checkpoint, t.model, t.opt.get());
  if (t.scaler.enabled() && st.loss_scale > 0)
    t.scaler.load_state({st.loss_scale, st.loss_scale_growth_tracker});
  if (!st.verified) t.log << unverified_note(t.s.checkpoint);
  t.start_epoch = st.epoch;
  t.global_step = st.global_step;
  t.res.best_accuracy = st.best_accuracy;
  t.res.best_epoch = st.best_epoch;
  const SavedRun& saved = t.s.saved;
  if (saved.step_in_epoch > 0) {
    // Its steps cover the same images as ours when the global batch (ranks x --batch-size) is the
    // same (data/loader.h: rank r takes positions r, r + ranks, ... of one plan).
    const bool same_batches =
        saved.batches_per_epoch == t.steps &&
        saved.ranks * saved.config.batch_size == t.comm.size() * t.cfg.batch_size;
    if (same_batches) {
      t.skip = saved.step_in_epoch;
    } else {
      t.log << fmt::format(
          "note: the checkpoint was saved at step {} of {} of epoch {}, but this run has {} steps "
          "per epoch; epoch {} starts from its first step\n",
          saved.step_in_epoch, saved.batches_per_epoch, st.epoch + 1, t.steps, st.epoch + 1);
    }
  }
  t.res.history = earlier_history(fs::absolute(t.s.checkpoint).parent_path(), st.epoch);
  t.chatty << fmt::format(
      "resumed from {}: {} epoch(s) completed{}, {}\n", t.s.checkpoint, st.epoch,
      t.skip > 0 ? fmt::format(", continuing epoch {} at step {}", st.epoch + 1, t.skip + 1) : "",
      st.best_epoch >= 0 ? fmt::format("best {} accuracy {:.2f}% (epoch {})", best_on(t),
                                       st.best_accuracy, st.best_epoch)
                         : std::string("no epoch evaluated yet"));
}

// --pretrained: a fresh run starts from a checkpoint's model weights (its optimizer state, epoch
// and best accuracy stay behind).
void load_pretrained(Training& t) {
  if (t.cfg.pretrained.empty()) return;
  if (!fs::is_regular_file(t.cfg.pretrained))
    throw Error(str("--pretrained ", t.cfg.pretrained, ": no such file"));
  const TrainState st = load_checkpoint(t.cfg.pretrained, t.model, nullptr);
  if (!st.verified) t.log << unverified_note(t.cfg.pretrained);
  t.chatty << fmt::format(
      "pretrained: the model starts from the weights of {} (saved after epoch {}); training "
      "starts at epoch 1 with a new optimizer\n",
      t.cfg.pretrained, st.epoch);
}

// ------------------------------------------------------------------------------------ one epoch

// One training step at `epoch_position` (completed epochs + fraction of this one), on whatever
// device the model lives.
void train_step(Training& t, const Batch& b, double epoch_position) {
  t.lr = t.schedule.lr_at(epoch_position);
  // --trace-steps: the first steps watched layer by layer (engine/trace.h).
  std::optional<StepTracer> tracer;
  if (t.global_step < t.cfg.trace_steps) tracer.emplace(t.model);
  if (tracer) tracer->before_forward();
  StepHooks hooks;
  if (t.grad_sync) {  // the mean over ranks (dist/grad_sync.h), overlapped with backward
    hooks.before_backward = [&] { t.grad_sync->start(); };
    hooks.after_backward = [&] { t.grad_sync->finish(); };
  }
  if (tracer) hooks.before_update = [&] { tracer->after_backward(); };
  // zero_grad, forward, loss, backward, optimizer step under --precision's policy and
  // --channels-last's layout; an fp16 step with an overflowing gradient is skipped (and still
  // counted, as torch's scheduler counts it).
  minidl::train_step(t.model, t.criterion, *t.opt, t.scaler,
                     StepPolicy{t.precision, activation_layout(t.cfg.channels_last)}, b.images,
                     b.labels, t.lr, hooks);
  ++t.global_step;
  if (tracer) {
    tracer->after_step();
    t.log << tracer->table(t.global_step) << std::flush;
  }
}

// Reads the step log up to `upto`; a NaN or infinite loss ends the run here, with the report
// saying why.
void read_steps(Training& t, int64_t epoch, int64_t upto) {
  const std::optional<StepLog::BadLoss> bad = t.step_log.read(upto);
  if (!bad) return;
  const std::string msg = fmt::format(
      "loss is {} at epoch {} step {}/{}: training stopped; {}. Try a lower --lr (now {}) or "
      "--warmup.",
      bad->loss, epoch + 1, bad->step + 1, t.steps, t.recorder.kept_message(), t.cfg.lr);
  t.recorder.write_failure_report(t.res, msg);
  throw Error(msg);
}

// The progress line after `done` steps of the epoch (its steps timed from `started`).
// The time left: in the epoch from its speed so far, and in the run adding the epochs after this
// one at the mean time of those this invocation completed (evaluations included), or at this
// epoch's speed before one has.
void show_progress(const Training& t, ProgressBar& bar, int64_t epoch, int64_t done,
                   Clock::time_point started) {
  const StepLog& sl = t.step_log;
  // Under mpirun: this rank's loss and accuracy, the images of all ranks.
  const double ips =
      static_cast<double>(sl.images() * t.comm.size()) / std::max(seconds_since(started), 1e-9);
  const double left = static_cast<double>((t.steps - done) * t.cfg.batch_size * t.comm.size()) /
                      std::max(ips, 1e-9);
  const double per_epoch =
      t.epochs_timed > 0
          ? t.epoch_seconds_sum / static_cast<double>(t.epochs_timed)
          : static_cast<double>(t.steps * t.cfg.batch_size * t.comm.size()) / std::max(ips, 1e-9);
  const double run_left = left + per_epoch * static_cast<double>(t.cfg.epochs - epoch - 1);
  bar.update(done,
             fmt::format("loss {:.4f}  acc {:6.2f}%  {:.0f} img/s  ETA {} (run {})", sl.mean_loss(),
                         sl.accuracy(), ips, format_duration(left), format_duration(run_left)));
}

// --max-steps reached after `done` steps of the epoch: a resumable last.safetensors, and done.
void stop_at_max_steps(Training& t, ProgressBar& bar, int64_t epoch, int64_t done) {
  bar.finish();
  t.recorder.save_last(t.model, *t.opt, t.res, t.global_step, epoch, true, done, &t.scaler);
  t.recorder.write_report(t.res,
                          fmt::format("stopped after --max-steps {} (epoch {}, step {}/{})",
                                      t.cfg.max_steps, epoch + 1, done, t.steps),
                          false);
  t.log << fmt::format(
      "stopped after --max-steps {} (epoch {}, step {}/{}): saved {}.\n{} (and a larger "
      "--max-steps, or none)\n",
      t.cfg.max_steps, epoch + 1, done, t.steps, t.recorder.last_path(), t.recorder.resume_hint());
  print_determinism_notes(t.log);
  t.res.seconds = seconds_since(t.t0);
}

// Ctrl-C or SIGTERM after `done` steps of the epoch: a resumable last.safetensors, and stop.
void stop_on_signal(Training& t, ProgressBar& bar, int64_t epoch, int64_t done) {
  read_steps(t, epoch, done);  // never save a state whose loss went bad
  bar.finish();
  t.recorder.save_last(t.model, *t.opt, t.res, t.global_step, epoch, true, done, &t.scaler);
  t.recorder.write_report(t.res,
                          fmt::format("interrupted ({}) in epoch {} at step {}/{}", stop_reason(),
                                      epoch + 1, done, t.steps),
                          false);
  t.log << fmt::format(
      "interrupted ({}) in epoch {} at step {}/{}: saved {} ({} epoch(s) completed).\n{}\n",
      stop_reason(), epoch + 1, done, t.steps, t.recorder.last_path(), epoch,
      t.recorder.resume_hint());
  t.res.status = RunStatus::Interrupted;
  t.res.stop_signal = stop_signal();
  t.res.seconds = seconds_since(t.t0);
}

// A stop asked for on any rank (Ctrl-C, SIGTERM) stops every rank at the same step: under
// mpirun the ranks agree after every step (a one-element all-reduce), and take on the signal.
bool stop_agreed(Training& t) {
  if (!t.comm.distributed()) return stop_requested();
  std::vector<int64_t> v{stop_requested() ? 1 : 0, stop_signal()};
  t.comm.allreduce(v, dist::Reduce::Max);
  if (v[0] != 0 && !stop_requested()) note_stop(static_cast<int>(v[1]));
  return v[0] != 0;
}

struct EpochTraining {
  bool completed = false;  // false: stopped in the middle (saved, said so, t.res is final)
  double seconds = 0.0;    // wall time of the steps
};

// The steps of epoch `epoch` (0-based) from step `first` (> 0 when a resume continues it).
EpochTraining train_epoch(Training& t, int64_t epoch, int64_t first) {
  t.train_loader.start_epoch(epoch);
  Batch b;
  for (int64_t i = 0; i < first; ++i) t.train_loader.next(b);  // trained before the interruption
  t.step_log.start(first);

  ProgressBar bar(t.chatty, t.tty, fmt::format("epoch {}/{}", epoch + 1, t.cfg.epochs), t.steps);
  const Clock::time_point started = Clock::now();
  int64_t i = first;
  for (; t.train_loader.next(b); ++i) {
    if (t.hooks.on_batch) t.hooks.on_batch(epoch + 1, i + 1, b.indices);
    train_step(t, b, static_cast<double>(epoch) + static_cast<double>(i) / static_cast<double>(t.steps));
    t.step_log.record(i, t.criterion, b.size);
    if (i + 1 == t.steps)  // the report's per-layer gradient norms, from the epoch's last step
      t.recorder.add_layer_grad_norms(double(epoch + 1), layer_grad_norms(t.model));
    if (i == first && epoch == t.start_epoch) print_determinism_notes(t.log);  // the first step
    if (t.hooks.after_step) t.hooks.after_step(epoch + 1, i + 1);
    t.max_steps_reached = t.cfg.max_steps > 0 && t.global_step >= t.cfg.max_steps;

    const bool last = i + 1 == t.steps;
    if ((i + 1 - first) % t.cfg.print_freq == 0 || last || t.max_steps_reached) {
      read_steps(t, epoch, i + 1);
      show_progress(t, bar, epoch, i + 1, started);
    }
    if (t.max_steps_reached && !last) {
      stop_at_max_steps(t, bar, epoch, i + 1);
      return {};
    }
    if (stop_agreed(t) && !last) {
      stop_on_signal(t, bar, epoch, i + 1);
      return {};
    }
  }
  MINIDL_ASSERT(i == t.steps, "the loader gave ", i, " of ", t.steps, " batches");
  read_steps(t, epoch, t.steps);
  bar.finish();
  t.step_log.sum_over_ranks(t.comm);
  return {true, seconds_since(started)};
}

// ------------------------------------------------------------------------------------ after it

// The epoch lines are a table under one header, so that a line stays within 100 columns with
// every column (--val-split, top-5): "epoch", the lr at the epoch's end, loss and accuracy of the
// training steps, of the validation set and of the test set (with top-5), wall time, img/s.
std::string epoch_header(int epochs, bool has_val) {
  const int w = 2 * static_cast<int>(std::to_string(epochs).size()) + 1;
  return fmt::format("{:>{}} {:>9}  {:>7} {:>7}  {}{:>7} {:>7} {:>7}  {:>7} {:>6}", "epoch",
                     std::max(w, 5), "lr", "train", "acc",
                     has_val ? fmt::format("{:>7} {:>7}  ", "val", "acc") : "", "test", "acc",
                     "top-5", "time", "img/s");
}

std::string epoch_line(const EpochMetrics& m, int epochs, bool best) {
  const int digits = static_cast<int>(std::to_string(epochs).size());
  const std::string e = fmt::format("{:>{}}/{}", m.epoch, digits, epochs);
  return fmt::format(
      "{:>{}} {:>9.3g}  {:>7.4f} {:>6.2f}%  {}{:>7.4f} {:>6.2f}% {:>6.2f}%  {:>7} {:>6.0f}{}{}", e,
      std::max(2 * digits + 1, 5), m.lr, m.train_loss, m.train_acc,
      m.has_val ? fmt::format("{:>7.4f} {:>6.2f}%  ", m.val_loss, m.val_acc) : "", m.test_loss,
      m.test_acc, m.test_top5, format_duration(m.epoch_seconds), m.images_per_second,
      best ? "  *best*" : "",
      m.resumed_at_step > 0 ? fmt::format("  (train: steps after {})", m.resumed_at_step) : "");
}

// The evaluations after epoch `epoch`: validation (with --val-split) and test, into m. A model
// whose training loss stayed finite can still evaluate to NaN or inf (weights or BatchNorm
// statistics that overflowed in the epoch's last steps): that state is not saved, and certainly
// not as the best; the run stops.
void evaluate_epoch(Training& t, int64_t epoch, EpochMetrics& m) {
  bool told = false;  // of a stop asked for during the evaluations
  EvalOptions eo;
  eo.layout = activation_layout(t.cfg.channels_last);
  if (t.use_val) {
    EvalProgress progress(t.log, t.tty, "validation", told);
    eo.progress = std::ref(progress);
    const EvalResult v = evaluate(t.model, *t.val_loader, t.eval_criterion, t.s.num_classes, eo);
    m.has_val = true;
    m.val_loss = v.loss;
    m.val_acc = v.accuracy;
    m.val_top5 = v.top5;
  }
  EvalProgress progress(t.log, t.tty, "test", told);
  eo.progress = std::ref(progress);
  t.res.last_eval = evaluate(t.model, t.test_loader, t.eval_criterion, t.s.num_classes, eo);
  m.test_loss = t.res.last_eval.loss;
  m.test_acc = t.res.last_eval.accuracy;
  m.test_top5 = t.res.last_eval.top5;
  for (const auto& [what, loss] : {std::pair<const char*, double>{"validation", m.val_loss},
                                   std::pair<const char*, double>{"test", m.test_loss}}) {
    if (std::isfinite(loss)) continue;
    const std::string msg = fmt::format(
        "{} loss is {} after epoch {}: the weights diverged and training stopped; {}. Try a "
        "lower --lr (now {}) or --warmup.",
        what, loss, epoch + 1, t.recorder.kept_message(), t.cfg.lr);
    t.recorder.write_failure_report(t.res, msg);
    throw Error(msg);
  }
}

// After the steps of epoch `epoch` (started at `began`): evaluations, the epoch's row, the
// checkpoints, metrics.csv, the report and the epoch line. Returns false when the run stops here
// (Ctrl-C or SIGTERM during the epoch; t.res is final).
bool finish_epoch(Training& t, int64_t epoch, Clock::time_point began, double train_seconds) {
  if (t.hooks.before_evaluation) t.hooks.before_evaluation(t.model);
  EpochMetrics m;
  m.epoch = epoch + 1;
  m.lr = t.lr;  // of the epoch's last step
  m.train_loss = t.step_log.mean_loss();
  m.train_acc = t.step_log.accuracy();
  m.resumed_at_step = epoch == t.start_epoch ? t.skip : 0;
  evaluate_epoch(t, epoch, m);
  m.epoch_seconds = seconds_since(began);
  m.images_per_second = static_cast<double>(t.step_log.images()) / std::max(train_seconds, 1e-9);

  RunResult& res = t.res;
  res.history.push_back(m);
  const double score = t.use_val ? m.val_acc : m.test_acc;
  const bool best = res.best_epoch < 0 || score > res.best_accuracy;
  if (best) {
    res.best_accuracy = score;
    res.best_epoch = m.epoch;
  }
  // The epoch's numbers first (the line, then metrics.csv), so that a checkpoint that cannot be
  // written (a full disk) loses none of them.
  if (!t.header_printed) t.log << epoch_header(t.cfg.epochs, t.use_val) << '\n';
  t.header_printed = true;
  t.log << epoch_line(m, t.cfg.epochs, best) << std::endl;
  t.epoch_seconds_sum += m.epoch_seconds;
  ++t.epochs_timed;
  t.recorder.write_metrics(res.history);
  const TrainState st = t.recorder.save_last(t.model, *t.opt, res, t.global_step, epoch + 1, false,
                                             0, &t.scaler);
  if (best) t.recorder.save_best(t.model, *t.opt, st);
  t.recorder.set_latest_evaluation(res.last_eval);
  const bool more = epoch + 1 < t.cfg.epochs && !t.max_steps_reached;
  const bool cut_short = t.max_steps_reached && epoch + 1 < t.cfg.epochs;
  t.recorder.write_report(
      res,
      more ? fmt::format("training: epoch {} of {} done", epoch + 1, t.cfg.epochs)
           : (cut_short ? fmt::format("stopped after --max-steps {}", t.cfg.max_steps)
                        : std::string("finished")),
      more);
  print_determinism_notes(t.log);  // the evaluation's batch sizes may have chosen new algorithms

  if (stop_agreed(t) && more) {
    t.recorder.write_report(
        res, fmt::format("interrupted ({}) after epoch {}", stop_reason(), epoch + 1), false);
    t.log << fmt::format("interrupted ({}) after epoch {}: {} holds it.\n{}\n", stop_reason(),
                         epoch + 1, t.recorder.last_path(), t.recorder.resume_hint());
    res.status = RunStatus::Interrupted;
    res.stop_signal = stop_signal();
    res.seconds = seconds_since(t.t0);
    return false;
  }
  if (cut_short)
    t.log << fmt::format("stopped after --max-steps {} at the end of epoch {}: saved {}.\n",
                         t.cfg.max_steps, epoch + 1, t.recorder.last_path());
  return true;
}

// The summary lines at the end of a run that trained every epoch (or reached --max-steps).
void finish_run(Training& t) {
  RunResult& res = t.res;
  res.seconds = seconds_since(t.t0);
  if (res.best_epoch >= 0) {
    std::string test_there;
    if (t.use_val)
      for (const EpochMetrics& m : res.history)
        if (m.epoch == res.best_epoch)
          test_there = fmt::format(", test accuracy {:.2f}% there", m.test_acc);
    t.log << fmt::format("best {} accuracy {:.2f}% (epoch {}{}); total time {}\n", best_on(t),
                         res.best_accuracy, res.best_epoch, test_there,
                         format_duration(res.seconds));
  }
  t.chatty << memory_report(t.s.device.device) << '\n';
  std::string files;
  for (const char* f : {"report.html", "metrics.csv", "last.safetensors", "best.safetensors"})
    if (fs::exists(t.s.out / f)) files += (files.empty() ? "" : ", ") + std::string(f);
  t.log << "run directory: " << t.s.out.string() << " (" << files << ")\n";
}

}  // namespace

// ------------------------------------------------------------------------------------ the run

namespace {

// The training run after prepare(): optimizer, resume, the epochs, the summary.
RunResult train_run(Setup& s, std::ostream& log, const TrainHooks& hooks, bool tty,
                    Clock::time_point t0) {
  Training t(s, log, hooks, tty, t0);
  const TrainConfig& cfg = t.cfg;
  t.chatty << fmt::format("optimizer: {}; schedule: {}; {} steps of {} per epoch{}\n",
                          describe_optimizer(t.opt->config()), t.schedule.describe(), t.steps,
                          std::min<int64_t>(cfg.batch_size, t.train_loader.num_samples()),
                          cfg.shuffle ? "" : " (not shuffled)");
  dist::Comm& comm = t.comm;
  if (comm.distributed()) {
    t.chatty << fmt::format(
        "data-parallel: {} ranks, {} images per rank per step (--batch-size), {} per step in all; "
        "{} training images per rank per epoch (padded to a multiple of {})\n",
        comm.size(), cfg.batch_size, cfg.batch_size * comm.size(), t.train_loader.num_samples(),
        comm.size());
    const int synced = cfg.sync_bn ? dist::enable_sync_batchnorm(t.model, comm) : 0;
    if (cfg.sync_bn)
      t.chatty << fmt::format(
          "--sync-bn: {} BatchNorm layer(s) use the statistics of the global batch\n", synced);
    dist::GradSyncConfig gc;
    gc.bucket_bytes = static_cast<int64_t>(cfg.bucket_mb * 1e6);
    gc.overlap = cfg.overlap;
    t.grad_sync = std::make_unique<dist::GradientSync>(t.model, comm, gc);
    t.chatty << t.grad_sync->describe() << '\n';
  } else if (cfg.sync_bn) {
    // Only from the checkpoint of a run on several ranks: a given --sync-bn is refused here.
    log << "note: the checkpoint's --sync-bn has no effect in one process (start train with "
           "mpirun -np N)\n";
  }
  resume(t);
  load_pretrained(t);

  // A resumed run with nothing left to do writes nothing (command.txt included).
  std::string nothing;
  if (t.start_epoch >= cfg.epochs)
    nothing =
        fmt::format("the checkpoint has completed {} of --epochs {}", t.start_epoch, cfg.epochs);
  else if (cfg.max_steps > 0 && t.global_step >= cfg.max_steps)
    nothing = fmt::format("the checkpoint has taken {} of --max-steps {} steps", t.global_step,
                          cfg.max_steps);
  if (!nothing.empty()) {
    log << "nothing to train: " << nothing << "; " << s.out.string() << " is unchanged\n";
    t.res.seconds = seconds_since(t0);
    return t.res;
  }

  t.recorder.start(t.start_epoch);
  if (cfg.save_init && s.checkpoint.empty())
    t.chatty << fmt::format("saved the initial weights (step 0) to {}\n",
                            t.recorder.save_init(t.model, *t.opt));
  for (int64_t epoch = t.start_epoch; epoch < cfg.epochs && !t.max_steps_reached; ++epoch) {
    const Clock::time_point began = Clock::now();
    const EpochTraining trained = train_epoch(t, epoch, epoch == t.start_epoch ? t.skip : 0);
    if (!trained.completed) return t.res;
    if (!finish_epoch(t, epoch, began, trained.seconds)) return t.res;
  }
  finish_run(t);
  return t.res;
}

}  // namespace

RunResult run_train(const TrainConfig& cli, std::ostream& log_in, const TrainHooks& hooks) {
  const Clock::time_point t0 = Clock::now();
  StopSignalGuard stop_signals;
  dist::WaitConfig wait = dist::wait_config();
  wait.timeout_seconds = cli.dist_timeout;
  dist::set_wait(wait);
  // Under mpirun only rank 0 prints (and writes: RunRecorder).
  std::ostream null_log(nullptr);
  std::ostream& log = dist::world().rank() == 0 ? log_in : null_log;
  // Progress bars are redrawn on a terminal; --quiet shows none, for training or evaluation
  // (the progress line goes to `chatty` anyway; EvalProgress writes to `log`, so it is told).
  const bool tty = (hooks.terminal || (&log == &std::cout && stdout_is_tty())) && !cli.quiet;
  Setup s = prepare(cli, log);
  try {
    return s.cfg.evaluate ? run_evaluate(s, log, t0, tty) : train_run(s, log, hooks, tty, t0);
  } catch (...) {
    // A run directory this invocation made and nothing was written to goes again.
    std::error_code ec;
    if (s.created_out && fs::is_empty(s.out, ec)) fs::remove(s.out, ec);
    throw;
  }
}

}  // namespace minidl

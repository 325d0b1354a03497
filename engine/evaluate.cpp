// One evaluation pass (evaluate), its progress line, and `train --evaluate`.
#include "engine/evaluate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "dist/comm.h"
#include "engine/mixed_precision.h"
#include "engine/recorder.h"
#include "engine/stop_signal.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "kernels/softmax_xent.h"

namespace minidl {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

EvalResult evaluate(Module& model, DataLoader& loader, SoftmaxCrossEntropy& criterion,
                    int num_classes, const EvalOptions& options) {
  const Device dev = model.device();
  const int64_t steps = loader.num_batches(), n = loader.num_samples();
  // Per-batch losses and per-image predictions stay on the device until the pass is over.
  Tensor losses = Tensor::empty(Shape{steps}, DType::F32, dev);
  Tensor preds = Tensor::empty(Shape{n}, DType::I32, dev);
  // Every image's logits, kept on the device and read once at the end for top-5 (and
  // EvalOptions::keep_logits): n x classes floats, 4 MB for CIFAR-100's test set.
  Tensor all_logits = Tensor::empty(Shape{n, num_classes}, DType::F32, dev);
  std::vector<int32_t> order;
  std::vector<int64_t> sizes;
  order.reserve(static_cast<size_t>(n));

  loader.start_epoch(0);
  Batch b;
  int64_t offset = 0;
  for (int64_t i = 0; loader.next(b); ++i) {
    const Tensor logits =
        model.forward(model_input(b.images, b.images.dtype(), options.layout), Mode::Eval);
    criterion.forward(logits, b.labels);
    losses.slice(i, i + 1).copy_(criterion.loss());
    Tensor p = preds.slice(offset, offset + b.size);
    argmax_rows(p, logits);
    all_logits.slice(offset, offset + b.size).copy_(logits);
    order.insert(order.end(), b.indices.begin(), b.indices.end());
    sizes.push_back(b.size);
    offset += b.size;
    if (options.progress) options.progress(i + 1, steps);
  }
  MINIDL_ASSERT(offset == n && static_cast<int64_t>(sizes.size()) == steps,
                "evaluate: loader gave ", offset, " images in ", sizes.size(), " batches");

  const std::vector<float> loss_v = losses.to_vector<float>();
  const std::vector<int32_t> pred_v = preds.to_vector<int32_t>();
  EvalResult r;
  double loss_sum = 0.0;
  for (size_t i = 0; i < sizes.size(); ++i)
    loss_sum += static_cast<double>(loss_v[i]) * static_cast<double>(sizes[i]);
  const std::vector<int32_t>& labels = loader.dataset().labels;
  r.predictions.assign(labels.size(), -1);
  for (size_t k = 0; k < order.size(); ++k) r.predictions[order[k]] = pred_v[k];
  const std::vector<float> l = all_logits.to_vector<float>();
  const auto k = static_cast<size_t>(num_classes);
  // Top-5: the label's logit has fewer than 5 logits above it (ties count for the label, as a
  // NaN logit never ranks above it; with 5 classes or fewer every image counts).
  int64_t top5 = 0;
  for (size_t j = 0; j < order.size(); ++j) {
    const float* row = l.data() + j * k;
    const float mine = row[labels[order[j]]];
    int above = 0;
    for (size_t c = 0; c < k; ++c) above += row[c] > mine;
    top5 += above < 5;
  }
  if (options.keep_logits) {
    r.logits.assign(labels.size() * k, 0.0f);
    for (size_t j = 0; j < order.size(); ++j)
      std::copy(l.begin() + j * k, l.begin() + (j + 1) * k, r.logits.begin() + order[j] * k);
  }
  // Under mpirun each rank evaluated a disjoint slice (data/loader.h): sum the loss, and fill in
  // the other ranks' predictions (and logits), so that every rank has the whole pass.
  dist::Comm& comm = dist::world();
  int64_t count = n;
  if (comm.distributed()) {
    std::vector<double> sums{loss_sum, static_cast<double>(n), static_cast<double>(top5)};
    comm.allreduce(sums, dist::Reduce::Sum);
    loss_sum = sums[0];
    count = static_cast<int64_t>(sums[1]);
    top5 = static_cast<int64_t>(sums[2]);
    std::vector<int64_t> p1(r.predictions.size());  // prediction + 1, 0 where another rank's
    for (size_t i = 0; i < p1.size(); ++i) p1[i] = r.predictions[i] + 1;
    comm.allreduce(p1, dist::Reduce::Sum);
    for (size_t i = 0; i < p1.size(); ++i) r.predictions[i] = static_cast<int32_t>(p1[i] - 1);
    if (options.keep_logits) {
      std::vector<double> l(r.logits.begin(), r.logits.end());  // zeros where another rank's
      comm.allreduce(l, dist::Reduce::Sum);
      r.logits.assign(l.begin(), l.end());
    }
  }
  r.loss = loss_sum / static_cast<double>(count);
  r.top5 = count > 0 ? 100.0 * static_cast<double>(top5) / static_cast<double>(count) : 0.0;
  r.confusion = ConfusionMatrix(num_classes);
  for (size_t i = 0; i < labels.size(); ++i)
    if (r.predictions[i] >= 0) r.confusion.add(labels[i], r.predictions[i]);
  r.accuracy = r.confusion.accuracy();
  return r;
}

EvalProgress::EvalProgress(std::ostream& log, bool tty, std::string label, bool& told)
    : log_(log), tty_(tty), label_(std::move(label)), told_(told) {}

void EvalProgress::operator()(int64_t done, int64_t total) {
  if (stop_requested() && !told_) {
    if (bar_) bar_->finish();
    log_ << stop_reason() << ": stopping after evaluation\n" << std::flush;
    told_ = true;
  }
  if (!tty_) return;
  if (!bar_) bar_ = std::make_unique<ProgressBar>(log_, true, label_, total);
  bar_->update(done, "");
  if (done == total) bar_->finish();
}

RunResult run_evaluate(Setup& s, std::ostream& log, Clock::time_point t0, bool tty) {
  const TrainState state = load_checkpoint(s.checkpoint, *s.model, nullptr);
  if (!state.verified) log << unverified_note(s.checkpoint);
  DataLoader test_loader(s.test, loader_config(s, false));
  SoftmaxCrossEntropy criterion(s.cfg.label_smoothing);
  RunResult res;
  res.status = RunStatus::Evaluated;
  res.out_dir = s.out.string();
  bool told = false;
  EvalProgress progress(log, tty, "evaluating", told);
  EvalOptions eo;
  eo.keep_logits = !s.cfg.dump_logits.empty();
  eo.layout = activation_layout(s.cfg.channels_last);
  eo.progress = std::ref(progress);
  res.last_eval = evaluate(*s.model, test_loader, criterion, s.num_classes, eo);
  if (!std::isfinite(res.last_eval.loss))
    throw Error(fmt::format(
        "checkpoint {}: the test loss is {} (accuracy {:.2f}%): the model's outputs overflow, so "
        "its accuracy means nothing; no eval.json was written. Evaluate an earlier checkpoint",
        s.checkpoint, res.last_eval.loss, res.last_eval.accuracy));
  res.best_accuracy = state.best_accuracy;
  res.best_epoch = state.best_epoch;
  const EvalResult& ev = res.last_eval;

  ReportData r = base_report(s);
  log << fmt::format(
      "checkpoint {} (epoch {})\ntest: loss {:.4f}  accuracy {:.2f}%  top-5 {:.2f}% ({} images)\n",
      s.checkpoint, state.epoch, ev.loss, ev.accuracy, ev.top5, ev.confusion.total());
  log << "per-class accuracy:\n" << format_per_class(ev.confusion, r.class_names);
  log << "confusion matrix:\n" << ev.confusion.format(r.class_names);

  json per_class = json::object();
  const std::vector<double> acc = ev.confusion.per_class_accuracy();
  json matrix = json::array();
  for (int t = 0; t < s.num_classes; ++t) {
    per_class[r.class_names[t]] = std::isnan(acc[t]) ? json(nullptr) : json(acc[t]);
    json row = json::array();
    for (int p = 0; p < s.num_classes; ++p) row.push_back(ev.confusion.count(t, p));
    matrix.push_back(row);
  }
  const json out{{"checkpoint", s.checkpoint},
                 {"epoch", state.epoch},
                 {"model", s.cfg.model},
                 {"dataset", s.cfg.dataset},
                 {"test_images", ev.confusion.total()},
                 {"test_loss", ev.loss},
                 {"test_accuracy", ev.accuracy},
                 {"test_top5", ev.top5},
                 {"normalisation", {{"mean", s.cfg.norm_mean}, {"std", s.cfg.norm_std}}},
                 {"per_class_accuracy", per_class},
                 {"class_names", r.class_names},
                 {"confusion_matrix", matrix},
                 // Per test image, in the order of the test files (of --test-subset).
                 {"labels", s.test.labels},
                 {"predictions", ev.predictions}};
  const bool writes = dist::world().rank() == 0;  // under mpirun rank 0 writes
  if (writes) write_file_atomic((s.out / "eval.json").string(), out.dump(2) + "\n");
  if (writes && !s.cfg.dump_logits.empty()) {
    const int64_t n = s.test.size();
    save_safetensors(
        s.cfg.dump_logits,
        {{"logits", Tensor::from_vector(ev.logits, Shape{n, s.num_classes})},
         {"labels", Tensor::from_vector(s.test.labels, Shape{n})},
         {"predictions", Tensor::from_vector(ev.predictions, Shape{n})}},
        {{"checkpoint", s.checkpoint}, {"model", s.cfg.model}, {"dataset", s.cfg.dataset}});
    log << fmt::format("wrote the logits of the {} test images to {}\n", n, s.cfg.dump_logits);
  }

  r.status = fmt::format("evaluation of a checkpoint saved after epoch {}", state.epoch);
  r.checkpoint = s.checkpoint;
  r.best_accuracy = state.best_accuracy;
  r.best_epoch = state.best_epoch;
  r.history = earlier_history(fs::absolute(s.checkpoint).parent_path(), state.epoch);
  set_eval(r, ev, s.test);
  r.total_seconds = seconds_since(t0);
  if (writes) write_report((s.out / "report.html").string(), r);
  log << fmt::format("wrote {} and {}\n", (s.out / "eval.json").string(),
                     (s.out / "report.html").string());
  res.seconds = seconds_since(t0);
  return res;
}

}  // namespace minidl

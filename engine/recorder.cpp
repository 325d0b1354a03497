// The run directory's files (recorder.h).
#include "engine/recorder.h"

#include "data/folder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "dist/comm.h"
#include "engine/cli.h"
#include "engine/metrics.h"

namespace minidl {

namespace fs = std::filesystem;

namespace {

// The first images of the test set with their latest predictions, for the report.
std::vector<SampleImage> sample_images(const Dataset& test, const std::vector<int32_t>& predictions,
                                       int count) {
  std::vector<SampleImage> out;
  const int64_t n = std::min<int64_t>(count, test.size());
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<size_t>(i) >= predictions.size() || predictions[i] < 0) break;
    std::vector<uint8_t> chw(3 * 32 * 32);
    if (test.files) {  // a folder dataset: a 32x32 thumbnail of the file (unreadable: left out)
      try {
        resize_center_crop(decode_image(test.files->paths[static_cast<size_t>(i)]), 32, 32,
                           chw.data());
      } catch (const Error&) {
        continue;
      }
    } else {
      const int64_t per_image = test.images.numel() / test.size();
      const uint8_t* px = test.images.data<uint8_t>() + i * per_image;
      chw.assign(px, px + per_image);
    }
    out.push_back({std::move(chw), test.labels[i], predictions[i]});
  }
  return out;
}

// The schedule sampled finely enough to show warm-up ramps and steps (at most ~1000 points).
std::vector<std::pair<double, double>> lr_curve(const LrSchedule& s, int epochs) {
  const int per_epoch = std::max(1, 1000 / std::max(epochs, 1));
  std::vector<std::pair<double, double>> pts;
  for (int i = 0; i < epochs * per_epoch; ++i) {
    const double e = static_cast<double>(i) / per_epoch;
    pts.push_back({e, s.lr_at(e)});
  }
  pts.push_back({static_cast<double>(epochs), s.lr_at(std::max(0.0, epochs - 1e-9))});
  return pts;
}

void append_line(const fs::path& path, const std::string& line) {
  std::ofstream f(path, std::ios::app);
  MINIDL_CHECK(f.good(), "cannot write ", path.string());
  f << line << '\n';
}

}  // namespace

std::vector<EpochMetrics> earlier_history(const fs::path& dir, int64_t up_to_epoch) {
  std::vector<EpochMetrics> rows;
  const fs::path csv = dir / "metrics.csv";
  if (!fs::is_regular_file(csv)) return rows;
  for (const EpochMetrics& m : read_metrics_csv(csv.string()))
    if (m.epoch <= up_to_epoch) rows.push_back(m);
  return rows;
}

ReportData base_report(const Setup& s) {
  ReportData r;
  r.title = s.cfg.model + " on " + s.cfg.dataset;
  r.model = s.cfg.model + " (" + std::to_string(s.model->parameter_count()) + " parameters)";
  r.dataset = fmt::format(
      "{}: {} training / {}{} test images, {} classes", s.cfg.dataset, s.train.size(),
      s.cfg.val_split > 0
          ? fmt::format("{} validation (--val-split: they choose the best checkpoint) / ",
                        s.val.size())
          : std::string(),
      s.test.size(), s.train.num_classes);
  r.date = timestamp("%Y-%m-%d %H:%M:%S");
  r.device = s.device.line.substr(std::string("device: ").size());
  r.command = s.cfg.command;
  r.class_names = s.train.class_names;
  r.class_names.resize(
      static_cast<size_t>(s.num_classes));  // --num-classes may add unnamed outputs
  for (int k = s.train.num_classes; k < s.num_classes; ++k)
    r.class_names[k] = "class " + std::to_string(k);
  return r;
}

void set_eval(ReportData& r, const EvalResult& ev, const Dataset& test) {
  r.test_loss = ev.loss;
  r.test_acc = ev.accuracy;
  r.test_top5 = ev.top5;
  r.confusion = ev.confusion;
  r.samples = sample_images(test, ev.predictions, 32);
}

// ------------------------------------------------------------------------------------ RunRecorder

RunRecorder::RunRecorder(const Setup& s, const LrSchedule& schedule, int64_t batches_per_epoch)
    : s_(s),
      writes_(dist::world().rank() == 0),
      batches_per_epoch_(batches_per_epoch),
      fresh_(s.checkpoint.empty()),
      config_path_((s.out / "config.json").string()),
      last_path_((s.out / "last.safetensors").string()),
      best_path_((s.out / "best.safetensors").string()),
      report_(base_report(s)) {
  report_.lr_curve = lr_curve(schedule, s.cfg.epochs);
  report_.best_label = str("best ", s.cfg.val_split > 0 ? "validation" : "test", " accuracy");
}

void RunRecorder::start(int64_t start_epoch) {
  last_saved_epoch_ = fs::exists(last_path_) ? start_epoch : -1;
  if (!writes_) return;
  append_line(s_.out / "command.txt", s_.cfg.command);
  // The report shows every invocation of the run: a resumed run's original command included.
  std::ifstream f(s_.out / "command.txt");
  std::stringstream all;
  all << f.rdbuf();
  report_.command = all.str();
  while (!report_.command.empty() && report_.command.back() == '\n') report_.command.pop_back();
  if (fresh_) write_file_atomic(config_path_, config_file_json(s_));
  if (s_.cfg.tensorboard) {
    events_ = std::make_unique<EventWriter>(s_.out.string());
    events_through_ = start_epoch;
  }
}

std::string RunRecorder::save_init(Module& model, const Optimizer& opt) {
  TrainState st;
  st.model_name = s_.cfg.model;
  st.config_json = saved_run_json(s_.cfg, s_.effective, false, 0, batches_per_epoch_);
  const std::string init_path = (s_.out / "init.safetensors").string();
  if (!writes_) return init_path;
  save_checkpoint(init_path, model, &opt, st);
  return init_path;
}

TrainState RunRecorder::save_last(Module& model, const Optimizer& opt, const RunResult& res,
                                  int64_t global_step, int64_t completed, bool interrupted,
                                  int64_t step_in_epoch, const GradScaler* scaler) {
  TrainState st;
  if (scaler != nullptr && scaler->enabled()) {
    st.loss_scale = scaler->state().scale;
    st.loss_scale_growth_tracker = scaler->state().growth_tracker;
  }
  st.epoch = completed;
  st.global_step = global_step;
  st.best_accuracy = res.best_accuracy;
  st.best_epoch = res.best_epoch;
  st.model_name = s_.cfg.model;
  st.config_json =
      saved_run_json(s_.cfg, s_.effective, interrupted, step_in_epoch, batches_per_epoch_);
  if (writes_) {
    save_checkpoint(last_path_, model, &opt, st);
    write_file_atomic(config_path_, config_file_json(s_));
  }
  last_saved_epoch_ = completed;
  return st;
}

void RunRecorder::save_best(Module& model, const Optimizer& opt, const TrainState& state) {
  if (!writes_) return;
  save_checkpoint(best_path_, model, &opt, state);
}

void RunRecorder::write_metrics(const std::vector<EpochMetrics>& history) {
  if (!writes_) return;
  write_metrics_csv((s_.out / "metrics.csv").string(), history);
  if (!events_) return;
  for (const EpochMetrics& m : history) {
    if (m.epoch <= events_through_) continue;
    events_->scalar("train/loss", m.epoch, m.train_loss);
    events_->scalar("train/accuracy", m.epoch, m.train_acc);
    events_->scalar("test/loss", m.epoch, m.test_loss);
    events_->scalar("test/accuracy", m.epoch, m.test_acc);
    if (m.has_val) {
      events_->scalar("val/loss", m.epoch, m.val_loss);
      events_->scalar("val/accuracy", m.epoch, m.val_acc);
    }
    events_->scalar("lr", m.epoch, m.lr);
    events_->scalar("images_per_second", m.epoch, m.images_per_second);
    events_through_ = m.epoch;
  }
  events_->flush();
}

void RunRecorder::set_latest_evaluation(const EvalResult& ev) { set_eval(report_, ev, s_.test); }

void RunRecorder::add_layer_grad_norms(double epoch,
                                       const std::vector<std::pair<std::string, double>>& norms) {
  auto& curves = report_.layer_grad_norms;
  for (const auto& [layer, norm] : norms) {
    auto it = std::find_if(curves.begin(), curves.end(), [&](const auto& c) { return c.first == layer; });
    if (it == curves.end()) {
      curves.emplace_back(layer, std::vector<std::pair<double, double>>{});
      it = curves.end() - 1;
    }
    it->second.push_back({epoch, norm});
  }
  // TensorBoard: one scalar per layer, "grad_norm/<layer path>", at the epoch (a step of the
  // run's x axis, as the metrics.csv scalars); flushed with the epoch's metrics.
  if (writes_ && events_)
    for (const auto& [layer, norm] : norms)
      events_->scalar("grad_norm/" + layer, std::llround(epoch), norm);
}

void RunRecorder::write_report(const RunResult& res, const std::string& status, bool in_progress) {
  if (!writes_) return;
  report_.status = status;
  report_.in_progress = in_progress;
  report_.history = res.history;
  report_.best_accuracy = res.best_accuracy;
  report_.best_epoch = res.best_epoch;
  report_.total_seconds = 0.0;
  for (const EpochMetrics& m : res.history) report_.total_seconds += m.epoch_seconds;
  minidl::write_report((s_.out / "report.html").string(), report_);
  wrote_report_ = true;
}

void RunRecorder::write_failure_report(const RunResult& res, const std::string& message) {
  if (fresh_ || wrote_report_) write_report(res, "stopped: " + message, false);
}

std::string RunRecorder::kept_message() const {
  return last_saved_epoch_ >= 0
             ? fmt::format("{} still holds the last good state (epoch {})", last_path_,
                           last_saved_epoch_)
             : std::string("no checkpoint was written (no epoch had completed)");
}

std::string RunRecorder::resume_hint() const {
  const char* argv[] = {s_.cfg.program.c_str()};  // the program as it was started, shell-quoted
  return fmt::format("resume with: {} --resume {}", shell_command(1, argv), last_path_);
}

}  // namespace minidl

#include "engine/trainer.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>

#include "core/allocator.h"
#include "core/device.h"
#include "data/cifar.h"
#include "engine/choices.h"
#include "engine/cli.h"
#include "engine/progress.h"
#include "engine/report.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "kernels/cpu_kernels.h"
#include "kernels/gemm.h"
#include "kernels/kernel_path.h"
#include "kernels/softmax_xent.h"
#include "models/models.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace minidl {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------------------------ Ctrl-C
namespace {

// Lock-free, so setting them is async-signal-safe. g_signal: the signal that asked to stop.
std::atomic<bool> g_interrupt{false};
std::atomic<int> g_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int sig) {
  g_signal.store(sig);
  g_interrupt.store(true);
}

// Installs on_stop_signal for SIGINT (Ctrl-C) and SIGTERM (kill, a batch system's time limit) for
// the life of the object. SA_RESETHAND restores the default action after the first signal, so a
// second one ends the process at once if saving hangs.
class StopSignalGuard {
 public:
  StopSignalGuard() {
    g_interrupt.store(false);
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignalGuard(const StopSignalGuard&) = delete;
  StopSignalGuard& operator=(const StopSignalGuard&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// "Ctrl-C" or "SIGTERM", for the messages.
std::string stop_reason() { return g_signal.load() == SIGTERM ? "SIGTERM" : "Ctrl-C"; }

}  // namespace

void request_interrupt() { g_interrupt.store(true); }

bool interrupt_requested() { return g_interrupt.load(); }

// ------------------------------------------------------------------------------------ evaluation
EvalResult evaluate(Module& model, DataLoader& loader, SoftmaxCrossEntropy& criterion,
                    int num_classes, const EvalOptions& options) {
  const Device dev = model.device();
  const int64_t steps = loader.num_batches(), n = loader.num_samples();
  // Per-batch losses and per-image predictions stay on the device until the pass is over.
  Tensor losses = Tensor::empty(Shape{steps}, DType::F32, dev);
  Tensor preds = Tensor::empty(Shape{n}, DType::I32, dev);
  Tensor all_logits;
  if (options.keep_logits) all_logits = Tensor::empty(Shape{n, num_classes}, DType::F32, dev);
  std::vector<int32_t> order;
  std::vector<int64_t> sizes;
  order.reserve(static_cast<size_t>(n));

  loader.start_epoch(0);
  Batch b;
  int64_t offset = 0;
  for (int64_t i = 0; loader.next(b); ++i) {
    const Tensor logits = model.forward(b.images, Mode::Eval);
    criterion.forward(logits, b.labels);
    losses.slice(i, i + 1).copy_(criterion.loss());
    Tensor p = preds.slice(offset, offset + b.size);
    argmax_rows(p, logits);
    if (options.keep_logits) all_logits.slice(offset, offset + b.size).copy_(logits);
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
  r.loss = loss_sum / static_cast<double>(n);
  const std::vector<int32_t>& labels = loader.dataset().labels;
  r.confusion = ConfusionMatrix(num_classes);
  r.predictions.assign(labels.size(), -1);
  for (size_t k = 0; k < order.size(); ++k) {
    r.confusion.add(labels[order[k]], pred_v[k]);
    r.predictions[order[k]] = pred_v[k];
  }
  r.accuracy = r.confusion.accuracy();
  if (options.keep_logits) {
    const std::vector<float> l = all_logits.to_vector<float>();
    const auto k = static_cast<size_t>(num_classes);
    r.logits.assign(labels.size() * k, 0.0f);
    for (size_t j = 0; j < order.size(); ++j)
      std::copy(l.begin() + j * k, l.begin() + (j + 1) * k, r.logits.begin() + order[j] * k);
  }
  return r;
}

// ------------------------------------------------------------------------------------ the run
namespace {

std::string timestamp(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// What a checkpoint's "config_json" holds: the run's configuration plus where in an epoch it was
// saved (nonzero step_in_epoch for a Ctrl-C in the middle of an epoch).
struct SavedRun {
  bool has_config = false;
  TrainConfig config;
  bool interrupted = false;
  int64_t step_in_epoch = 0;
  int64_t batches_per_epoch = 0;
};

std::string saved_run_json(const TrainConfig& cfg, bool interrupted, int64_t step_in_epoch,
                           int64_t batches) {
  return json{{"config", to_json(cfg)},
              {"interrupted", interrupted},
              {"step_in_epoch", step_in_epoch},
              {"batches_per_epoch", batches}}
      .dump();
}

// Reads the run description from a checkpoint without building a model (the model to build is
// in it). A checkpoint written by other code may have none: then the command line decides.
SavedRun read_saved_run(const std::string& path) {
  if (!fs::is_regular_file(path)) throw UsageError(str("checkpoint ", path, ": no such file"));
  const SafetensorsFile f = load_safetensors(path);
  SavedRun s;
  const auto it = f.metadata.find("config_json");
  if (it == f.metadata.end() || it->second.empty()) return s;
  const json j = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("config")) return s;
  s.has_config = true;
  s.config = config_from_json(j["config"]);
  s.interrupted = j.value("interrupted", false);
  s.step_in_epoch = j.value("step_in_epoch", int64_t{0});
  s.batches_per_epoch = j.value("batches_per_epoch", int64_t{0});
  return s;
}

struct PickedDevice {
  Device device;
  std::string line;  // what the log says about it
};

PickedDevice pick_device(const std::string& flag) {
  PickedDevice p;
  std::string why;
  if (flag == "auto") {
    p.device = cuda_available() ? Device::cuda(0) : Device::cpu();
    why = p.device.is_cuda() ? "default: a CUDA device is available" : "default: no GPU found";
  } else {
    p.device = Device::parse(flag);
    why = "--device " + flag;
    if (p.device.is_cuda() && !cuda_available())
      throw Error(str("--device ", flag, ": no GPU found (", cuda_device_summary(),
                      "); use --device cpu or --device auto"));
  }
  require_device(p.device);
  const std::string what = p.device.is_cuda() ? str(p.device, ", ", cuda_device_summary())
                                              : str("cpu (", omp_get_max_threads(), " threads)");
  p.line = str("device: ", what, " [", why, "]");
  return p;
}

std::string format_stats(double loss, double acc, double images_per_second, double eta_seconds) {
  return fmt::format("loss {:.4f}  acc {:6.2f}%  {:.0f} img/s  ETA {}", loss, acc,
                     images_per_second, format_duration(eta_seconds));
}

std::string epoch_line(const EpochMetrics& m, int epochs, bool best) {
  return fmt::format(
      "epoch {:>{}}/{}  lr {:.4g}  train loss {:.4f} acc {:6.2f}%  {}test loss {:.4f} acc "
      "{:6.2f}%  {:.1f} s  {:.0f} img/s{}",
      m.epoch, std::to_string(epochs).size(), epochs, m.lr, m.train_loss, m.train_acc,
      m.has_val ? fmt::format("val loss {:.4f} acc {:6.2f}%  ", m.val_loss, m.val_acc) : "",
      m.test_loss, m.test_acc, m.epoch_seconds, m.images_per_second, best ? "  *best*" : "");
}

// One word for a shell (the program path in the commands train suggests).
std::string shell_word(const std::string& w) {
  const char* argv[] = {w.c_str()};
  return shell_command(1, argv);
}

// The first images of the test set with their latest predictions, for the report.
std::vector<SampleImage> sample_images(const Dataset& test, const std::vector<int32_t>& predictions,
                                       int count) {
  std::vector<SampleImage> out;
  const int64_t n = std::min<int64_t>(count, test.size());
  const uint8_t* px = test.images.data<uint8_t>();
  const int64_t per_image = test.images.numel() / test.size();
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<size_t>(i) >= predictions.size() || predictions[i] < 0) break;
    out.push_back({std::vector<uint8_t>(px + i * per_image, px + (i + 1) * per_image),
                   test.labels[i], predictions[i]});
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

std::vector<EpochMetrics> earlier_history(const fs::path& dir, int64_t up_to_epoch) {
  std::vector<EpochMetrics> rows;
  const fs::path csv = dir / "metrics.csv";
  if (!fs::is_regular_file(csv)) return rows;
  for (const EpochMetrics& m : read_metrics_csv(csv.string()))
    if (m.epoch <= up_to_epoch) rows.push_back(m);
  return rows;
}

void append_line(const fs::path& path, const std::string& line) {
  std::ofstream f(path, std::ios::app);
  MINIDL_CHECK(f.good(), "cannot write ", path.string());
  f << line << '\n';
}

// Everything a run sets up before its first step.
struct Setup {
  TrainConfig cfg;
  std::string checkpoint;  // to resume from or to evaluate ("" for a fresh run)
  SavedRun saved;
  PickedDevice device;
  fs::path out;
  Dataset train, val, test;  // val: the last --val-split training images (empty without)
  ChannelStats norm;
  int num_classes = 0;
  std::unique_ptr<Module> model;
};

// Moves the last n images of `d` into a new dataset (the --val-split hold-out).
Dataset split_off_tail(Dataset& d, int64_t n) {
  const int64_t m = d.size() - n;
  Dataset tail;
  tail.name = d.name;
  tail.class_names = d.class_names;
  tail.num_classes = d.num_classes;
  tail.images = d.images.slice(m, d.size()).clone();
  tail.labels.assign(d.labels.begin() + m, d.labels.end());
  d.images = d.images.slice(0, m).clone();
  d.labels.resize(static_cast<size_t>(m));
  return tail;
}

// The files a training run writes to its directory; an evaluation writes the last two.
const std::vector<std::string> kRunFiles{"metrics.csv",      "config.json",      "command.txt",
                                         "last.safetensors", "best.safetensors", "init.safetensors",
                                         "report.html",      "eval.json"};

// Refuses to write over a run in `out` (unless --overwrite, which removes its files first). A
// --resume continuing in its own directory is not writing over anything; the checkpoint being
// read is never removed.
void claim_out_dir(const fs::path& out, const TrainConfig& cfg, const std::string& checkpoint,
                   std::ostream& log) {
  std::error_code ec;
  if (!fs::is_directory(out, ec)) return;
  if (!cfg.evaluate && !cfg.resume.empty() &&
      fs::equivalent(out, fs::absolute(cfg.resume).parent_path(), ec))
    return;
  const std::vector<std::string> written =
      cfg.evaluate ? std::vector<std::string>{"eval.json", "report.html"} : kRunFiles;
  std::vector<fs::path> present;
  std::string names;
  for (const std::string& f : written) {
    const fs::path p = out / f;
    if (!fs::exists(p, ec)) continue;
    if (!checkpoint.empty() && fs::equivalent(p, checkpoint, ec)) continue;
    present.push_back(p);
    names += (names.empty() ? "" : ", ") + f;
  }
  if (present.empty()) return;
  if (!cfg.overwrite) {
    const std::string hint =
        cfg.evaluate
            ? "add --overwrite to replace them, or give another --out"
            : fmt::format("continue it with --resume {}, add --overwrite to replace it, or give "
                          "another --out",
                          (out / "last.safetensors").string());
    throw UsageError(
        fmt::format("--out {} already holds a run ({}): {}", out.string(), names, hint));
  }
  for (const fs::path& p : present) fs::remove(p);
  log << fmt::format("--overwrite: removed {} from {}\n", names, out.string());
}

Setup prepare(const TrainConfig& cli, std::ostream& log) {
  Setup s;
  s.cfg = cli;
  s.checkpoint = cli.evaluate && !cli.checkpoint.empty() ? cli.checkpoint : cli.resume;
  if (!s.checkpoint.empty()) {
    s.saved = read_saved_run(s.checkpoint);
    if (s.saved.has_config) s.cfg = merge_resumed(s.saved.config, cli);
  }
  TrainConfig& cfg = s.cfg;
  if (cfg.data.empty()) {  // a --resume command line whose checkpoint names no --data
    const fs::path d = fs::path("..") / "shared" / "data" / dataset_default_dir(cfg.dataset);
    if (fs::is_directory(d)) cfg.data = d.string();
  }
  validate(cfg);
  cfg.data = fs::absolute(cfg.data).lexically_normal().string();

  s.device = pick_device(cfg.device);
  set_allow_tf32(cfg.tf32);
  set_deterministic(cfg.deterministic);

  if (!cfg.out.empty()) {
    s.out = cfg.out;
  } else if (!cfg.evaluate && !cfg.resume.empty()) {
    s.out = fs::absolute(cfg.resume).parent_path();  // continue in the run's own directory
  } else {
    s.out = fs::path("runs") /
            (cfg.model + (cfg.evaluate ? "-eval-" : "-") + timestamp("%Y%m%d-%H%M%S"));
  }
  claim_out_dir(s.out, cfg, s.checkpoint, log);
  {
    std::error_code ec;
    fs::create_directories(s.out, ec);
    if (ec || !fs::is_directory(s.out))
      throw Error(str("--out ", s.out.string(), ": cannot create the run directory (",
                      ec ? ec.message() : std::string("a file of that name exists"), ")"));
  }
  cfg.out = s.out.string();

  log << s.device.line << '\n';
  if (cfg.deterministic)
    log << (s.device.device.is_cuda()
                ? "deterministic: cuDNN convolutions use deterministic algorithms in a fixed "
                  "order (not timed); each change of algorithm is reported\n"
                : "deterministic: the CPU path has no non-deterministic algorithms (results are "
                  "bit-identical for a seed and thread count)\n");
  s.train = load_dataset(cfg.dataset, cfg.data, Split::Train, cfg.subset);
  if (cfg.val_split > 0) {
    if (cfg.val_split >= s.train.size())
      throw UsageError(str("--val-split ", cfg.val_split, " leaves none of the ", s.train.size(),
                           " training images to train on"));
    s.val = split_off_tail(s.train, cfg.val_split);
  }
  s.test = load_dataset(cfg.dataset, cfg.data, Split::Test, cfg.test_subset);
  std::string norm_source;
  if (!cfg.norm_mean.empty()) {
    std::copy(cfg.norm_mean.begin(), cfg.norm_mean.end(), s.norm.mean.begin());
    std::copy(cfg.norm_std.begin(), cfg.norm_std.end(), s.norm.std.begin());
    norm_source = s.checkpoint.empty() ? "given" : "stored in the checkpoint";
  } else {
    s.norm = channel_stats(s.train);
    cfg.norm_mean.assign(s.norm.mean.begin(), s.norm.mean.end());
    cfg.norm_std.assign(s.norm.std.begin(), s.norm.std.end());
    norm_source = fmt::format("computed on the {} training images{}", s.train.size(),
                              s.checkpoint.empty() ? ""
                                                   : "; the checkpoint predates stored constants");
  }
  s.num_classes = cfg.num_classes > 0 ? cfg.num_classes : s.train.num_classes;
  log << fmt::format("data: {} from {}: {} training{} / {} test images, {} classes\n", cfg.dataset,
                     cfg.data, s.train.size(),
                     cfg.val_split > 0
                         ? fmt::format(" / {} validation (the last of the training files)",
                                       s.val.size())
                         : std::string(),
                     s.test.size(), s.train.num_classes);
  // Full precision (shortest text that reads back exactly), as config.json stores them.
  log << fmt::format("normalisation ({}): mean ({}, {}, {}) std ({}, {}, {})\n", norm_source,
                     s.norm.mean[0], s.norm.mean[1], s.norm.mean[2], s.norm.std[0], s.norm.std[1],
                     s.norm.std[2]);
  if (!cfg.evaluate && cfg.batch_size > s.train.size())
    log << fmt::format(
        "warning: --batch-size {} is larger than the {} training images: each step uses all {}\n",
        cfg.batch_size, s.train.size(), s.train.size());

  ModelConfig mc;
  mc.name = cfg.model;
  mc.num_classes = s.num_classes;
  mc.imagenet_stem = cfg.imagenet_stem;
  mc.zero_init_residual = cfg.zero_init_residual;
  mc.dropout = cfg.dropout;
  mc.seed = cfg.seed;
  s.model = make_model(mc);
  s.model->to(s.device.device);
  s.model->set_kernel_path(kernel_paths().at(cfg.kernels));
  if (!cfg.cpu_kernels.empty()) set_cpu_kernels(cpu_kernel_paths().at(cfg.cpu_kernels));
  log << "model: " << cfg.model << '\n' << model_summary(*s.model);
  return s;
}

LoaderConfig loader_config(const Setup& s, bool training) {
  LoaderConfig l;
  l.batch_size = s.cfg.batch_size;
  l.shuffle = training && s.cfg.shuffle;
  l.augment = training && s.cfg.augment;
  l.cutout = training ? s.cfg.cutout : 0;
  l.norm = s.norm;
  l.seed = s.cfg.seed;
  l.device = s.device.device;
  return l;
}

ReportData base_report(const Setup& s) {
  ReportData r;
  r.title = s.cfg.model + " on " + s.cfg.dataset;
  r.model = s.cfg.model + " (" + std::to_string(s.model->parameter_count()) + " parameters)";
  r.dataset = fmt::format("{}: {} training / {} test images, {} classes", s.cfg.dataset,
                          s.train.size(), s.test.size(), s.train.num_classes);
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
  r.confusion = ev.confusion;
  r.samples = sample_images(test, ev.predictions, 32);
}

// A progress line for an evaluation pass (redrawn on a terminal only: a log gets no lines from
// it). Ctrl-C or SIGTERM during the pass is acknowledged at once: the run stops only after it.
std::function<void(int64_t, int64_t)> eval_progress(std::unique_ptr<ProgressBar>& bar,
                                                    std::ostream& log, bool tty,
                                                    const std::string& label, bool& told) {
  return [&bar, &log, tty, label, &told](int64_t done, int64_t total) {
    if (g_interrupt.load() && !told) {
      if (bar) bar->finish();
      log << stop_reason() << ": stopping after evaluation\n" << std::flush;
      told = true;
    }
    if (!tty) return;
    if (!bar) bar = std::make_unique<ProgressBar>(log, true, label, total);
    bar->update(done, "");
    if (done == total) bar->finish();
  };
}

// --evaluate: the checkpoint's test loss, accuracy, per-class accuracy and confusion matrix.
RunResult run_evaluate(Setup& s, std::ostream& log, Clock::time_point t0, bool tty) {
  const TrainState state = load_checkpoint(s.checkpoint, *s.model, nullptr);
  DataLoader test_loader(s.test, loader_config(s, false));
  SoftmaxCrossEntropy criterion(s.cfg.label_smoothing);
  RunResult res;
  res.status = RunStatus::Evaluated;
  res.out_dir = s.out.string();
  std::unique_ptr<ProgressBar> bar;
  bool told = false;
  EvalOptions eo;
  eo.keep_logits = !s.cfg.dump_logits.empty();
  eo.progress = eval_progress(bar, log, tty, "evaluating", told);
  res.last_eval = evaluate(*s.model, test_loader, criterion, s.num_classes, eo);
  res.best_accuracy = state.best_accuracy;
  res.best_epoch = state.best_epoch;
  const EvalResult& ev = res.last_eval;

  ReportData r = base_report(s);
  log << fmt::format("checkpoint {} (epoch {})\ntest: loss {:.4f}  accuracy {:.2f}% ({} images)\n",
                     s.checkpoint, state.epoch, ev.loss, ev.accuracy, ev.confusion.total());
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
                 {"normalisation", {{"mean", s.cfg.norm_mean}, {"std", s.cfg.norm_std}}},
                 {"per_class_accuracy", per_class},
                 {"class_names", r.class_names},
                 {"confusion_matrix", matrix},
                 // Per test image, in the order of the test files (of --test-subset).
                 {"labels", s.test.labels},
                 {"predictions", ev.predictions}};
  write_file_atomic((s.out / "eval.json").string(), out.dump(2) + "\n");
  if (!s.cfg.dump_logits.empty()) {
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
  write_report((s.out / "report.html").string(), r);
  log << fmt::format("wrote {} and {}\n", (s.out / "eval.json").string(),
                     (s.out / "report.html").string());
  res.seconds = seconds_since(t0);
  return res;
}

}  // namespace

RunResult run_train(const TrainConfig& cli, std::ostream& log, const TrainHooks& hooks) {
  const Clock::time_point t0 = Clock::now();
  StopSignalGuard stop_signals;
  const bool tty = &log == &std::cout && stdout_is_tty();
  Setup s = prepare(cli, log);
  if (s.cfg.evaluate) return run_evaluate(s, log, t0, tty);
  const TrainConfig& cfg = s.cfg;
  Module& model = *s.model;
  const Device dev = s.device.device;
  const bool use_val = cfg.val_split > 0;
  const std::string best_on = use_val ? "validation" : "test";
  // The command that continues this run, with the program as it was started.
  auto resume_hint = [&](const std::string& path) {
    return fmt::format("resume with: {} --resume {}", shell_word(cfg.program), path);
  };

  std::unique_ptr<Optimizer> opt = make_optimizer(model.flat_parameters(), optimizer_config(cfg));
  const LrSchedule schedule(schedule_config(cfg));
  SoftmaxCrossEntropy criterion(cfg.label_smoothing), eval_criterion(cfg.label_smoothing);
  DataLoader train_loader(s.train, loader_config(s, true));
  DataLoader test_loader(s.test, loader_config(s, false));
  std::unique_ptr<DataLoader> val_loader;
  if (use_val) val_loader = std::make_unique<DataLoader>(s.val, loader_config(s, false));
  const int64_t steps = train_loader.num_batches();
  log << fmt::format("optimizer: {}; schedule: {}; {} steps of {} per epoch{}\n",
                     describe_optimizer(opt->config()), schedule.describe(), steps,
                     std::min<int64_t>(cfg.batch_size, s.train.size()),
                     cfg.shuffle ? "" : " (not shuffled)");

  RunResult res;
  res.out_dir = s.out.string();
  res.best_on_val = use_val;
  int64_t start_epoch = 0, global_step = 0, skip = 0;
  double lr = cfg.lr;  // of the latest step
  if (!s.checkpoint.empty()) {
    const TrainState st = load_checkpoint(s.checkpoint, model, opt.get());
    start_epoch = st.epoch;
    global_step = st.global_step;
    res.best_accuracy = st.best_accuracy;
    res.best_epoch = st.best_epoch;
    if (s.saved.step_in_epoch > 0) {
      if (s.saved.batches_per_epoch == steps) {
        skip = s.saved.step_in_epoch;
      } else {
        log << fmt::format(
            "note: the checkpoint was saved at step {} of {} of epoch {}, but this run has {} "
            "steps "
            "per epoch; epoch {} starts from its first step\n",
            s.saved.step_in_epoch, s.saved.batches_per_epoch, st.epoch + 1, steps, st.epoch + 1);
      }
    }
    res.history = earlier_history(fs::absolute(s.checkpoint).parent_path(), st.epoch);
    log << fmt::format(
        "resumed from {}: {} epoch(s) completed{}, best {} accuracy {:.2f}%\n", s.checkpoint,
        st.epoch,
        skip > 0 ? fmt::format(", continuing epoch {} at step {}", st.epoch + 1, skip + 1) : "",
        best_on, st.best_accuracy);
  }

  append_line(s.out / "command.txt", cfg.command);
  const std::string config_path = (s.out / "config.json").string();
  // A resumed run rewrites config.json only once it has saved a checkpoint, so that a resume that
  // fails (a diverged loss at once) leaves the run's description as it was.
  const bool fresh = s.checkpoint.empty();
  if (fresh) write_file_atomic(config_path, to_json(cfg).dump(2) + "\n");
  const std::string last_path = (s.out / "last.safetensors").string();
  const std::string best_path = (s.out / "best.safetensors").string();
  int64_t last_saved_epoch = fs::exists(last_path) ? start_epoch : -1;

  ReportData report = base_report(s);
  report.lr_curve = lr_curve(schedule, cfg.epochs);
  report.best_label = "best " + best_on + " accuracy";
  bool wrote_report = false;  // by this invocation
  auto write_run_report = [&](const std::string& status, bool in_progress) {
    report.status = status;
    report.in_progress = in_progress;
    report.history = res.history;
    report.best_accuracy = res.best_accuracy;
    report.best_epoch = res.best_epoch;
    report.total_seconds = 0.0;
    for (const EpochMetrics& m : res.history) report.total_seconds += m.epoch_seconds;
    write_report((s.out / "report.html").string(), report);
    wrote_report = true;
  };
  // After a failure: a resumed run keeps the report of the run it resumed (header and all) unless
  // this invocation has already rewritten it.
  auto report_failure = [&](const std::string& msg) {
    if (fresh || wrote_report) write_run_report("stopped: " + msg, false);
  };
  auto save_last = [&](int64_t completed, bool interrupted, int64_t step_in_epoch) {
    TrainState st;
    st.epoch = completed;
    st.global_step = global_step;
    st.best_accuracy = res.best_accuracy;
    st.best_epoch = res.best_epoch;
    st.model_name = cfg.model;
    st.config_json = saved_run_json(cfg, interrupted, step_in_epoch, steps);
    save_checkpoint(last_path, model, opt.get(), st);
    write_file_atomic(config_path, to_json(cfg).dump(2) + "\n");
    last_saved_epoch = completed;
    return st;
  };
  auto kept_message = [&]() {
    return last_saved_epoch >= 0
               ? fmt::format("{} still holds the last good state (epoch {})", last_path,
                             last_saved_epoch)
               : std::string("no checkpoint was written (no epoch had completed)");
  };
  auto print_determinism_notes = [&]() {
    for (const std::string& note : take_determinism_notes())
      log << "deterministic: " << note << '\n';
  };

  if (cfg.save_init && fresh) {
    TrainState st;
    st.model_name = cfg.model;
    st.config_json = saved_run_json(cfg, false, 0, steps);
    const std::string init_path = (s.out / "init.safetensors").string();
    save_checkpoint(init_path, model, opt.get(), st);
    log << fmt::format("saved the initial weights (step 0) to {}\n", init_path);
  }

  // Per-step loss and correct count, on the device for a whole epoch (see trainer.h).
  Tensor step_loss = Tensor::zeros(Shape{steps}, DType::F32, dev);
  Tensor step_correct = Tensor::zeros(Shape{steps}, DType::I32, dev);
  std::vector<int64_t> step_size(static_cast<size_t>(steps), 0);

  if (start_epoch >= cfg.epochs)
    log << fmt::format("nothing to train: the checkpoint has completed {} of --epochs {}\n",
                       start_epoch, cfg.epochs);
  if (cfg.max_steps > 0 && global_step >= cfg.max_steps && start_epoch < cfg.epochs)
    log << fmt::format("nothing to train: the checkpoint has taken {} of --max-steps {} steps\n",
                       global_step, cfg.max_steps);
  bool max_steps_reached = cfg.max_steps > 0 && global_step >= cfg.max_steps;
  for (int64_t epoch = start_epoch; epoch < cfg.epochs && !max_steps_reached; ++epoch) {
    const Clock::time_point te = Clock::now();
    const int64_t first = epoch == start_epoch ? skip : 0;
    train_loader.start_epoch(epoch);
    Batch b;
    for (int64_t i = 0; i < first; ++i)
      train_loader.next(b);  // already trained before the interruption

    double loss_sum = 0.0;  // sum over images of the loss, from the steps read so far
    int64_t correct = 0, seen = 0, read = first;
    // Reads steps [read, upto) from the device; a NaN or infinite loss ends the run here.
    auto read_steps = [&](int64_t upto) {
      if (upto <= read) return;
      const std::vector<float> l = step_loss.slice(read, upto).to_vector<float>();
      const std::vector<int32_t> c = step_correct.slice(read, upto).to_vector<int32_t>();
      for (int64_t k = 0; k < upto - read; ++k) {
        if (!std::isfinite(l[k])) {
          const std::string msg = fmt::format(
              "loss is {} at epoch {} step {}/{}: training stopped; {}. Try a lower --lr (now {}) "
              "or --warmup.",
              l[k], epoch + 1, read + k + 1, steps, kept_message(), cfg.lr);
          report_failure(msg);
          throw Error(msg);
        }
        const int64_t n = step_size[static_cast<size_t>(read + k)];
        loss_sum += static_cast<double>(l[k]) * static_cast<double>(n);
        correct += c[k];
        seen += n;
      }
      read = upto;
    };

    ProgressBar bar(log, tty, fmt::format("epoch {}/{}", epoch + 1, cfg.epochs), steps);
    const Clock::time_point tt = Clock::now();
    int64_t i = first;
    for (; train_loader.next(b); ++i) {
      if (hooks.on_batch) hooks.on_batch(epoch + 1, i + 1, b.indices);
      lr = schedule.lr_at(static_cast<double>(epoch) +
                          static_cast<double>(i) / static_cast<double>(steps));
      model.zero_grad();
      const Tensor logits = model.forward(b.images, Mode::Train);
      criterion.forward(logits, b.labels);
      model.backward(criterion.backward());
      opt->step(lr);
      ++global_step;
      step_loss.slice(i, i + 1).copy_(criterion.loss());
      step_correct.slice(i, i + 1).copy_(criterion.correct());
      step_size[static_cast<size_t>(i)] = b.size;
      if (i == first && epoch == start_epoch) print_determinism_notes();  // this run's first step
      if (hooks.after_step) hooks.after_step(epoch + 1, i + 1);
      max_steps_reached = cfg.max_steps > 0 && global_step >= cfg.max_steps;

      if ((i + 1 - first) % cfg.print_freq == 0 || i + 1 == steps || max_steps_reached) {
        read_steps(i + 1);
        const double t = seconds_since(tt), ips = static_cast<double>(seen) / std::max(t, 1e-9);
        const int64_t left = (steps - i - 1) * cfg.batch_size;
        bar.update(i + 1, format_stats(loss_sum / static_cast<double>(seen), 100.0 * correct / seen,
                                       ips, static_cast<double>(left) / std::max(ips, 1e-9)));
      }
      if (max_steps_reached && i + 1 < steps) {
        bar.finish();
        save_last(epoch, true, i + 1);
        write_run_report(fmt::format("stopped after --max-steps {} (epoch {}, step {}/{})",
                                     cfg.max_steps, epoch + 1, i + 1, steps),
                         false);
        log << fmt::format(
            "stopped after --max-steps {} (epoch {}, step {}/{}): saved {}.\n{} (and a larger "
            "--max-steps, or none)\n",
            cfg.max_steps, epoch + 1, i + 1, steps, last_path, resume_hint(last_path));
        print_determinism_notes();
        res.seconds = seconds_since(t0);
        return res;
      }
      if (g_interrupt.load() && i + 1 < steps) {
        read_steps(i + 1);  // never save a state whose loss went bad
        bar.finish();
        save_last(epoch, true, i + 1);
        write_run_report(fmt::format("interrupted ({}) in epoch {} at step {}/{}", stop_reason(),
                                     epoch + 1, i + 1, steps),
                         false);
        log << fmt::format(
            "interrupted ({}) in epoch {} at step {}/{}: saved {} ({} epoch(s) completed).\n{}\n",
            stop_reason(), epoch + 1, i + 1, steps, last_path, epoch, resume_hint(last_path));
        res.status = RunStatus::Interrupted;
        res.stop_signal = g_signal.load();
        res.seconds = seconds_since(t0);
        return res;
      }
    }
    MINIDL_ASSERT(i == steps, "the loader gave ", i, " of ", steps, " batches");
    read_steps(steps);
    bar.finish();
    const double train_seconds = seconds_since(tt);
    if (hooks.before_evaluation) hooks.before_evaluation(model);

    EpochMetrics m;
    m.epoch = epoch + 1;
    m.lr = lr;
    m.train_loss = loss_sum / static_cast<double>(seen);
    m.train_acc = 100.0 * static_cast<double>(correct) / static_cast<double>(seen);
    std::unique_ptr<ProgressBar> eval_bar;
    bool told = false;
    EvalOptions eo;
    if (use_val) {
      eo.progress = eval_progress(eval_bar, log, tty, "validation", told);
      const EvalResult v = evaluate(model, *val_loader, eval_criterion, s.num_classes, eo);
      eval_bar.reset();
      m.has_val = true;
      m.val_loss = v.loss;
      m.val_acc = v.accuracy;
    }
    eo.progress = eval_progress(eval_bar, log, tty, "test", told);
    res.last_eval = evaluate(model, test_loader, eval_criterion, s.num_classes, eo);
    m.test_loss = res.last_eval.loss;
    m.test_acc = res.last_eval.accuracy;
    // A model whose training loss stayed finite can still evaluate to NaN or inf (weights or
    // BatchNorm statistics that overflowed in the epoch's last steps): that state is not saved,
    // and certainly not as the best.
    for (const auto& [what, loss] : {std::pair<const char*, double>{"validation", m.val_loss},
                                     std::pair<const char*, double>{"test", m.test_loss}}) {
      if (std::isfinite(loss)) continue;
      const std::string msg = fmt::format(
          "{} loss is {} after epoch {}: the weights diverged and training stopped; {}. Try a "
          "lower --lr (now {}) or --warmup.",
          what, loss, epoch + 1, kept_message(), cfg.lr);
      report_failure(msg);
      throw Error(msg);
    }
    m.epoch_seconds = seconds_since(te);
    m.images_per_second = static_cast<double>(seen) / std::max(train_seconds, 1e-9);
    res.history.push_back(m);
    const double score = use_val ? m.val_acc : m.test_acc;
    const bool best = res.best_epoch < 0 || score > res.best_accuracy;
    if (best) {
      res.best_accuracy = score;
      res.best_epoch = m.epoch;
    }

    const TrainState st = save_last(epoch + 1, false, 0);
    if (best) save_checkpoint(best_path, model, opt.get(), st);
    write_metrics_csv((s.out / "metrics.csv").string(), res.history);
    set_eval(report, res.last_eval, s.test);
    const bool more = epoch + 1 < cfg.epochs && !max_steps_reached;
    write_run_report(
        more ? fmt::format("training: epoch {} of {} done", epoch + 1, cfg.epochs)
             : (max_steps_reached && epoch + 1 < cfg.epochs
                    ? fmt::format("stopped after --max-steps {}", cfg.max_steps)
                    : std::string("finished")),
        more);
    log << epoch_line(m, cfg.epochs, best) << std::endl;
    print_determinism_notes();  // the evaluation's batch sizes may have chosen new algorithms

    if (g_interrupt.load() && more) {
      write_run_report(fmt::format("interrupted ({}) after epoch {}", stop_reason(), epoch + 1),
                       false);
      log << fmt::format("interrupted ({}) after epoch {}: {} holds it.\n{}\n", stop_reason(),
                         epoch + 1, last_path, resume_hint(last_path));
      res.status = RunStatus::Interrupted;
      res.stop_signal = g_signal.load();
      res.seconds = seconds_since(t0);
      return res;
    }
    if (max_steps_reached && epoch + 1 < cfg.epochs)
      log << fmt::format("stopped after --max-steps {} at the end of epoch {}: saved {}.\n",
                         cfg.max_steps, epoch + 1, last_path);
  }

  res.seconds = seconds_since(t0);
  if (res.best_epoch >= 0) {
    std::string test_there;
    if (use_val)
      for (const EpochMetrics& m : res.history)
        if (m.epoch == res.best_epoch)
          test_there = fmt::format(", test accuracy {:.2f}% there", m.test_acc);
    log << fmt::format("best {} accuracy {:.2f}% (epoch {}{}); total time {}\n", best_on,
                       res.best_accuracy, res.best_epoch, test_there,
                       format_duration(res.seconds));
  }
  log << memory_report(dev) << '\n';
  log << "run directory: " << s.out.string()
      << " (report.html, metrics.csv, last/best.safetensors)\n";
  return res;
}

SeedsSummary run_seeds(const TrainConfig& cfg, std::ostream& log) {
  SeedsSummary sum;
  const fs::path base =
      cfg.out.empty() ? fs::path("runs") / (cfg.model + "-seeds-" + timestamp("%Y%m%d-%H%M%S"))
                      : fs::path(cfg.out);
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
  // Mean and sample standard deviation (n - 1; 0 for a single run).
  auto mean_std = [](const std::vector<double>& v, double& mean, double& sd) {
    mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
    double ss = 0.0;
    for (double x : v) ss += (x - mean) * (x - mean);
    sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
  };
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
  write_file_atomic((base / "seeds.json").string(), j.dump(2) + "\n");
  log << fmt::format(
      "{} seeds ({}..{}): final test accuracy {:.2f} +- {:.2f}%, best checkpoint's test accuracy "
      "{:.2f} +- {:.2f}% (mean +- sample std); {}\n",
      cfg.seeds, cfg.seed, cfg.seed + cfg.seeds - 1, sum.final_mean, sum.final_std, sum.best_mean,
      sum.best_std, (base / "seeds.json").string());
  return sum;
}

}  // namespace minidl

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

#include "core/allocator.h"
#include "core/device.h"
#include "data/cifar.h"
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

// Lock-free, so setting it is async-signal-safe.
std::atomic<bool> g_interrupt{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_sigint(int) { g_interrupt.store(true); }

// Installs on_sigint for the life of the object. SA_RESETHAND restores the default action after
// the first signal, so a second Ctrl-C ends the process at once if saving hangs.
class SigintGuard {
 public:
  SigintGuard() {
    g_interrupt.store(false);
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_);
  }
  ~SigintGuard() { sigaction(SIGINT, &old_, nullptr); }
  SigintGuard(const SigintGuard&) = delete;
  SigintGuard& operator=(const SigintGuard&) = delete;

 private:
  struct sigaction old_ {};
};

}  // namespace

void request_interrupt() { g_interrupt.store(true); }

// ------------------------------------------------------------------------------------ evaluation
EvalResult evaluate(Module& model, DataLoader& loader, SoftmaxCrossEntropy& criterion,
                    int num_classes) {
  const Device dev = model.device();
  const int64_t steps = loader.num_batches(), n = loader.num_samples();
  // Per-batch losses and per-image predictions stay on the device until the pass is over.
  Tensor losses = Tensor::empty(Shape{steps}, DType::F32, dev);
  Tensor preds = Tensor::empty(Shape{n}, DType::I32, dev);
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
    order.insert(order.end(), b.indices.begin(), b.indices.end());
    sizes.push_back(b.size);
    offset += b.size;
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
    why = p.device.is_cuda() ? "default: a CUDA device is available"
                             : "default: " + cuda_device_summary();
  } else {
    p.device = Device::parse(flag);
    why = "--device " + flag;
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
      "epoch {:>{}}/{}  lr {:.4g}  train loss {:.4f} acc {:6.2f}%  test loss {:.4f} acc {:6.2f}%  "
      "{:.1f} s  {:.0f} img/s{}",
      m.epoch, std::to_string(epochs).size(), epochs, m.lr, m.train_loss, m.train_acc, m.test_loss,
      m.test_acc, m.epoch_seconds, m.images_per_second, best ? "  *best*" : "");
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

OptimizerConfig optimizer_config(const TrainConfig& c) {
  OptimizerConfig o;
  o.name = c.optimizer;
  o.lr = c.lr;
  o.momentum = c.optimizer == "sgd" ? c.momentum : 0.0;
  o.nesterov = c.nesterov;
  o.weight_decay = c.weight_decay;
  return o;
}

ScheduleConfig schedule_config(const TrainConfig& c) {
  ScheduleConfig s;
  s.name = c.schedule;
  s.base_lr = c.lr;
  s.step_size = c.step_size;
  s.gamma = c.gamma;
  s.milestones = c.milestones;
  s.total_epochs = std::max(1, c.epochs - static_cast<int>(std::ceil(c.warmup)));
  s.warmup_epochs = c.warmup;
  return s;
}

// Everything a run sets up before its first step.
struct Setup {
  TrainConfig cfg;
  std::string checkpoint;  // to resume from or to evaluate ("" for a fresh run)
  SavedRun saved;
  PickedDevice device;
  fs::path out;
  Dataset train, test;
  ChannelStats norm;
  int num_classes = 0;
  std::unique_ptr<Module> model;
};

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

  if (!cfg.out.empty()) {
    s.out = cfg.out;
  } else if (!cfg.evaluate && !cfg.resume.empty()) {
    s.out = fs::absolute(cfg.resume).parent_path();  // continue in the run's own directory
  } else {
    s.out = fs::path("runs") /
            (cfg.model + (cfg.evaluate ? "-eval-" : "-") + timestamp("%Y%m%d-%H%M%S"));
  }
  fs::create_directories(s.out);
  cfg.out = s.out.string();

  log << s.device.line << '\n';
  s.train = load_dataset(cfg.dataset, cfg.data, Split::Train, cfg.subset);
  s.test = load_dataset(cfg.dataset, cfg.data, Split::Test, cfg.test_subset);
  s.norm = channel_stats(s.train);
  s.num_classes = cfg.num_classes > 0 ? cfg.num_classes : s.train.num_classes;
  log << fmt::format(
      "data: {} from {}: {} training / {} test images, {} classes; normalisation (computed "
      "on the training images) mean ({:.4f}, {:.4f}, {:.4f}) std ({:.4f}, {:.4f}, {:.4f})\n",
      cfg.dataset, cfg.data, s.train.size(), s.test.size(), s.train.num_classes, s.norm.mean[0],
      s.norm.mean[1], s.norm.mean[2], s.norm.std[0], s.norm.std[1], s.norm.std[2]);

  ModelConfig mc;
  mc.name = cfg.model;
  mc.num_classes = s.num_classes;
  mc.imagenet_stem = cfg.imagenet_stem;
  mc.zero_init_residual = cfg.zero_init_residual;
  mc.dropout = cfg.dropout;
  mc.seed = cfg.seed;
  s.model = make_model(mc);
  s.model->to(s.device.device);
  s.model->set_kernel_path(parse_kernel_path(cfg.kernels));
  if (!cfg.cpu_kernels.empty()) set_cpu_kernels(parse_cpu_kernels(cfg.cpu_kernels));
  log << "model: " << cfg.model << '\n' << model_summary(*s.model);
  return s;
}

LoaderConfig loader_config(const Setup& s, bool training) {
  LoaderConfig l;
  l.batch_size = s.cfg.batch_size;
  l.shuffle = training;
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

// --evaluate: the checkpoint's test loss, accuracy, per-class accuracy and confusion matrix.
RunResult run_evaluate(Setup& s, std::ostream& log, Clock::time_point t0) {
  const TrainState state = load_checkpoint(s.checkpoint, *s.model, nullptr);
  DataLoader test_loader(s.test, loader_config(s, false));
  SoftmaxCrossEntropy criterion(s.cfg.label_smoothing);
  RunResult res;
  res.status = RunStatus::Evaluated;
  res.out_dir = s.out.string();
  res.last_eval = evaluate(*s.model, test_loader, criterion, s.num_classes);
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
                 {"per_class_accuracy", per_class},
                 {"class_names", r.class_names},
                 {"confusion_matrix", matrix}};
  write_file_atomic((s.out / "eval.json").string(), out.dump(2) + "\n");

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
  SigintGuard sigint;
  Setup s = prepare(cli, log);
  if (s.cfg.evaluate) return run_evaluate(s, log, t0);
  const TrainConfig& cfg = s.cfg;
  Module& model = *s.model;
  const Device dev = s.device.device;

  // The optimizer re-points the parameters into its flat buffers: create it after model.to(dev).
  std::unique_ptr<Optimizer> opt = make_optimizer(model.named_parameters(), optimizer_config(cfg));
  const LrSchedule schedule(schedule_config(cfg));
  SoftmaxCrossEntropy criterion(cfg.label_smoothing), eval_criterion(cfg.label_smoothing);
  DataLoader train_loader(s.train, loader_config(s, true));
  DataLoader test_loader(s.test, loader_config(s, false));
  const int64_t steps = train_loader.num_batches();
  log << fmt::format(
      "optimizer: {} (lr {}, momentum {}, weight decay {}{}); schedule: {}; {} steps of {} per "
      "epoch\n",
      cfg.optimizer, cfg.lr, cfg.optimizer == "sgd" ? cfg.momentum : 0.0, cfg.weight_decay,
      cfg.nesterov ? ", nesterov" : "", schedule.describe(), steps, cfg.batch_size);

  RunResult res;
  res.out_dir = s.out.string();
  int64_t start_epoch = 0, global_step = 0, skip = 0;
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
        "resumed from {}: {} epoch(s) completed{}, best test accuracy {:.2f}%\n", s.checkpoint,
        st.epoch,
        skip > 0 ? fmt::format(", continuing epoch {} at step {}", st.epoch + 1, skip + 1) : "",
        st.best_accuracy);
  }

  append_line(s.out / "command.txt", cfg.command);
  write_file_atomic((s.out / "config.json").string(), to_json(cfg).dump(2) + "\n");
  const std::string last_path = (s.out / "last.safetensors").string();
  const std::string best_path = (s.out / "best.safetensors").string();
  int64_t last_saved_epoch = fs::exists(last_path) ? start_epoch : -1;

  ReportData report = base_report(s);
  report.lr_curve = lr_curve(schedule, cfg.epochs);
  auto write_run_report = [&](const std::string& status, bool in_progress) {
    report.status = status;
    report.in_progress = in_progress;
    report.history = res.history;
    report.best_accuracy = res.best_accuracy;
    report.best_epoch = res.best_epoch;
    report.total_seconds = 0.0;
    for (const EpochMetrics& m : res.history) report.total_seconds += m.epoch_seconds;
    write_report((s.out / "report.html").string(), report);
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
    last_saved_epoch = completed;
    return st;
  };

  const bool tty = &log == &std::cout && stdout_is_tty();
  // Per-step loss and correct count, on the device for a whole epoch (see trainer.h).
  Tensor step_loss = Tensor::zeros(Shape{steps}, DType::F32, dev);
  Tensor step_correct = Tensor::zeros(Shape{steps}, DType::I32, dev);
  std::vector<int64_t> step_size(static_cast<size_t>(steps), 0);

  if (start_epoch >= cfg.epochs)
    log << fmt::format("nothing to train: the checkpoint has completed {} of --epochs {}\n",
                       start_epoch, cfg.epochs);
  for (int64_t epoch = start_epoch; epoch < cfg.epochs; ++epoch) {
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
          const std::string kept =
              last_saved_epoch >= 0
                  ? fmt::format("{} still holds the last good state (epoch {})", last_path,
                                last_saved_epoch)
                  : std::string("no checkpoint was written (no epoch had completed)");
          const std::string msg = fmt::format(
              "loss is {} at epoch {} step {}/{}: training stopped; {}. Try a lower --lr (now {}) "
              "or --warmup.",
              l[k], epoch + 1, read + k + 1, steps, kept, cfg.lr);
          write_run_report("stopped: " + msg, false);
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
      opt->set_lr(schedule.lr_at(static_cast<double>(epoch) +
                                 static_cast<double>(i) / static_cast<double>(steps)));
      opt->zero_grad();
      const Tensor logits = model.forward(b.images, Mode::Train);
      criterion.forward(logits, b.labels);
      model.backward(criterion.backward());
      opt->step();
      ++global_step;
      step_loss.slice(i, i + 1).copy_(criterion.loss());
      step_correct.slice(i, i + 1).copy_(criterion.correct());
      step_size[static_cast<size_t>(i)] = b.size;
      if (hooks.after_step) hooks.after_step(epoch + 1, i + 1);

      if ((i + 1 - first) % cfg.print_freq == 0 || i + 1 == steps) {
        read_steps(i + 1);
        const double t = seconds_since(tt), ips = static_cast<double>(seen) / std::max(t, 1e-9);
        const int64_t left = (steps - i - 1) * cfg.batch_size;
        bar.update(i + 1, format_stats(loss_sum / static_cast<double>(seen), 100.0 * correct / seen,
                                       ips, static_cast<double>(left) / std::max(ips, 1e-9)));
      }
      if (g_interrupt.load() && i + 1 < steps) {
        read_steps(i + 1);  // never save a state whose loss went bad
        bar.finish();
        save_last(epoch, true, i + 1);
        write_run_report(
            fmt::format("interrupted in epoch {} at step {}/{}", epoch + 1, i + 1, steps), false);
        log << fmt::format(
            "interrupted in epoch {} at step {}/{}: saved {} ({} epoch(s) completed).\n"
            "resume with: train --resume {}\n",
            epoch + 1, i + 1, steps, last_path, epoch, last_path);
        res.status = RunStatus::Interrupted;
        res.seconds = seconds_since(t0);
        return res;
      }
    }
    MINIDL_ASSERT(i == steps, "the loader gave ", i, " of ", steps, " batches");
    read_steps(steps);
    bar.finish();
    const double train_seconds = seconds_since(tt);

    EpochMetrics m;
    m.epoch = epoch + 1;
    m.lr = opt->lr();
    m.train_loss = loss_sum / static_cast<double>(seen);
    m.train_acc = 100.0 * static_cast<double>(correct) / static_cast<double>(seen);
    res.last_eval = evaluate(model, test_loader, eval_criterion, s.num_classes);
    m.test_loss = res.last_eval.loss;
    m.test_acc = res.last_eval.accuracy;
    m.epoch_seconds = seconds_since(te);
    m.images_per_second = static_cast<double>(seen) / std::max(train_seconds, 1e-9);
    res.history.push_back(m);
    const bool best = res.best_epoch < 0 || m.test_acc > res.best_accuracy;
    if (best) {
      res.best_accuracy = m.test_acc;
      res.best_epoch = m.epoch;
    }

    const TrainState st = save_last(epoch + 1, false, 0);
    if (best) save_checkpoint(best_path, model, opt.get(), st);
    write_metrics_csv((s.out / "metrics.csv").string(), res.history);
    set_eval(report, res.last_eval, s.test);
    const bool more = epoch + 1 < cfg.epochs;
    write_run_report(
        more ? fmt::format("training: epoch {} of {} done", epoch + 1, cfg.epochs) : "finished",
        more);
    log << epoch_line(m, cfg.epochs, best) << std::endl;

    if (g_interrupt.load() && more) {
      write_run_report(fmt::format("interrupted after epoch {}", epoch + 1), false);
      log << fmt::format(
          "interrupted after epoch {}: {} holds it.\nresume with: train --resume {}\n", epoch + 1,
          last_path, last_path);
      res.status = RunStatus::Interrupted;
      res.seconds = seconds_since(t0);
      return res;
    }
  }

  res.seconds = seconds_since(t0);
  if (res.best_epoch >= 0)
    log << fmt::format("best test accuracy {:.2f}% (epoch {}); total time {}\n", res.best_accuracy,
                       res.best_epoch, format_duration(res.seconds));
  log << memory_report(dev) << '\n';
  log << "run directory: " << s.out.string()
      << " (report.html, metrics.csv, last/best.safetensors)\n";
  return res;
}

}  // namespace minidl

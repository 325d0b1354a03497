// Setting up a run (setup.h): configuration, device, run directory, data, model.
#include "engine/setup.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "core/device.h"
#include "core/device_settings.h"
#include "core/openmp_wait.h"
#include "core/version.h"
#include "dist/comm.h"
#include "io/safetensors.h"
#include "kernels/cpu_kernels.h"
#include "kernels/gemm.h"
#include "models/models.h"

namespace minidl {

namespace fs = std::filesystem;
using nlohmann::json;

std::string timestamp(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

std::string unverified_note(const std::string& checkpoint) {
  return fmt::format(
      "note: {} has no content hashes (written before checkpoint format 3, or by other code): "
      "its tensors could not be checked for corruption\n",
      checkpoint);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string saved_run_json(const TrainConfig& cfg, const json& effective, bool interrupted,
                           int64_t step_in_epoch, int64_t batches) {
  return json{{"config", to_json(cfg)},
              {"effective", effective},
              {"interrupted", interrupted},
              {"step_in_epoch", step_in_epoch},
              {"batches_per_epoch", batches},
              {"ranks", dist::world().size()}}
      .dump();
}

// A checkpoint written by other code may have no run description: then the command line decides.
SavedRun read_saved_run(const std::string& path) {
  if (!fs::is_regular_file(path)) throw Error(str("checkpoint ", path, ": no such file"));
  const SafetensorsFile f = load_safetensors(path);
  SavedRun s;
  const auto it = f.metadata.find("config_json");
  if (it == f.metadata.end() || it->second.empty()) return s;
  const json j = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("config")) return s;
  s.has_config = true;
  s.config = config_from_json(j["config"]);
  if (j.contains("effective")) s.effective = j["effective"];
  s.interrupted = j.value("interrupted", false);
  s.step_in_epoch = j.value("step_in_epoch", int64_t{0});
  s.batches_per_epoch = j.value("batches_per_epoch", int64_t{0});
  s.ranks = j.value("ranks", 1);
  return s;
}

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
  // Under mpirun each rank of a machine takes its own GPU: cuda:<local rank>.
  const dist::Comm& comm = dist::world();
  if (p.device.is_cuda() && comm.distributed() && (flag == "auto" || flag == "cuda")) {
    p.device = Device::cuda(comm.local_rank());
    why += str("; cuda:<local rank> of ", comm.describe());
  }
  require_device(p.device);
  const std::string what = p.device.is_cuda()
                               ? str(p.device, ", ", cuda_device_summary())
                               : str("cpu (", omp_get_max_threads(), " threads, OpenMP waits ",
                                     openmp_wait_policy(), ")");
  p.line = str("device: ", what, " [", why, "]");
  return p;
}

std::unique_ptr<Module> build_run_model(const TrainConfig& cfg, int num_classes) {
  ModelConfig mc;
  mc.name = cfg.model;
  mc.num_classes = num_classes;
  mc.imagenet_stem = cfg.imagenet_stem;
  mc.zero_init_residual = cfg.zero_init_residual;
  mc.dropout = cfg.dropout;
  mc.seed = cfg.seed;
  return make_model(mc);
}

namespace {

// The files a training run writes to its directory; an evaluation writes the last two.
const std::vector<std::string> kRunFiles{"metrics.csv",      "config.json",      "command.txt",
                                         "last.safetensors", "best.safetensors", "init.safetensors",
                                         "report.html",      "eval.json"};

// Refuses to write over a run in `out` (unless --overwrite: then returns its files, which
// make_run_dir removes once everything else has checked out). A --resume continuing in its own
// directory is not writing over anything; the checkpoint being read is never removed.
std::vector<fs::path> claim_out_dir(const fs::path& out, const TrainConfig& cfg,
                                    const std::string& checkpoint) {
  std::error_code ec;
  if (!fs::is_directory(out, ec)) return {};
  if (!cfg.evaluate && !cfg.resume.empty() &&
      fs::equivalent(out, fs::absolute(cfg.resume).parent_path(), ec))
    return {};
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
  // A training run's TensorBoard files (--tensorboard, io/tensorboard.h), one per invocation:
  // replaced with the rest, or TensorBoard would draw the old run's curves beside the new ones.
  // Only names of that pattern: other files in the directory are the user's.
  if (!cfg.evaluate) {
    size_t events = 0;
    for (const fs::directory_entry& e : fs::directory_iterator(out, ec))
      if (e.is_regular_file(ec) &&
          e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
        present.push_back(e.path());
        ++events;
      }
    if (events > 0)
      names += fmt::format("{}events.out.tfevents.* ({} file{})", names.empty() ? "" : ", ",
                           events, events == 1 ? "" : "s");
  }
  if (present.empty() || cfg.overwrite) return present;
  const std::string hint =
      cfg.evaluate ? "add --overwrite to replace them, or give another --out"
                   : fmt::format(
                         "continue it with --resume {}, add --overwrite to replace it, or give "
                         "another --out",
                         (out / "last.safetensors").string());
  throw UsageError(fmt::format("--out {} already holds a run ({}): {}", out.string(), names, hint));
}

// Under mpirun: every rank runs rank 0's configuration; a rank whose own differs (another command
// line, another working directory) stops the job, naming the settings.
void check_ranks_agree(const TrainConfig& cfg) {
  dist::Comm& comm = dist::world();
  if (!comm.distributed()) return;
  json mine = to_json(cfg);
  mine.erase("command");  // the same settings may be typed in another order
  const json root = json::parse(comm.broadcast(mine.dump()));
  if (root == mine) return;
  std::string diff;
  for (const auto& [key, value] : root.items())
    if (!mine.contains(key) || mine[key] != value)
      diff += fmt::format("{}--{}: {} here, {} on rank 0", diff.empty() ? "" : "; ", key,
                          mine.contains(key) ? mine[key].dump() : "unset", value.dump());
  throw UsageError(
      fmt::format("{}: this rank's configuration differs from rank 0's ({}); every "
                  "rank must run the same command in the same directory",
                  comm.describe(), diff));
}

// The configuration of the run: the command line's, or for --resume/--evaluate the checkpoint's
// overlaid with the flags given; validated, with --data made absolute.
void resolve_config(Setup& s, const TrainConfig& cli) {
  s.cfg = cli;
  s.checkpoint = cli.evaluate && !cli.checkpoint.empty() ? cli.checkpoint : cli.resume;
  if (!s.checkpoint.empty()) {
    s.saved = read_saved_run(s.checkpoint);
    if (s.saved.has_config) s.cfg = merge_resumed(s.saved.config, cli);
  }
  TrainConfig& cfg = s.cfg;
  if (cfg.data.empty() && !dataset_default_dir(cfg.dataset).empty()) {  // a --resume command line whose checkpoint names no --data
    const fs::path d = fs::path("..") / "shared" / "data" / dataset_default_dir(cfg.dataset);
    if (fs::is_directory(d)) cfg.data = d.string();
  }
  validate(cfg);
  cfg.data = fs::absolute(cfg.data).lexically_normal().string();
  check_ranks_agree(cfg);
}

// --out, or the resumed run's own directory, or runs/<model>-<timestamp>; checked (claim_out_dir)
// but not created yet. Returns the files --overwrite replaces.
std::vector<fs::path> choose_run_dir(Setup& s) {
  TrainConfig& cfg = s.cfg;
  if (!cfg.out.empty()) {
    s.out = cfg.out;
  } else if (!cfg.evaluate && !cfg.resume.empty()) {
    s.out = fs::absolute(cfg.resume).parent_path();  // continue in the run's own directory
  } else {
    s.out = fs::path("runs") /
            (cfg.model + (cfg.evaluate ? "-eval-" : "-") + timestamp("%Y%m%d-%H%M%S"));
  }
  // Under mpirun rank 0's name (a timestamp) goes to the others, and only rank 0 claims and
  // creates the directory (only it writes: RunRecorder).
  dist::Comm& comm = dist::world();
  s.out = comm.broadcast(s.out.string());
  cfg.out = s.out.string();
  if (comm.rank() != 0) return {};
  return claim_out_dir(s.out, cfg, s.checkpoint);
}

// Creates the run directory (removing the files --overwrite replaces) and makes sure a file can
// be written there, naming the reason when not.
void make_run_dir(Setup& s, const std::vector<fs::path>& replaced, std::ostream& log) {
  if (dist::world().rank() != 0) return;
  std::error_code ec;
  s.created_out = !fs::exists(s.out, ec);
  fs::create_directories(s.out, ec);
  if (ec || !fs::is_directory(s.out))
    throw Error(str("--out ", s.out.string(), ": cannot create the run directory (",
                    ec ? ec.message() : std::string("a file of that name exists"), ")"));
  const fs::path probe = s.out / ".minidl-write-test";
  {
    std::ofstream f(probe);
    if (!f.good())
      throw Error(str("--out ", s.out.string(), ": cannot write to the run directory (",
                      std::strerror(errno), "); give another --out"));
  }
  fs::remove(probe, ec);
  if (replaced.empty()) return;
  std::string names;
  for (const fs::path& p : replaced) {
    fs::remove(p);
    names += (names.empty() ? "" : ", ") + p.filename().string();
  }
  log << fmt::format("--overwrite: removed {} from {}\n", names, s.out.string());
}

// The training, validation and test sets, and the normalisation constants (stored in the
// configuration, computed from the training images when it has none).
// One split with its --subset/--test-subset; a subset larger than the split is a usage error
// (exit 2), found by loading the whole split only on that failure.
Dataset load_split(const TrainConfig& cfg, Split split, int64_t subset, const char* flag,
                   const DataOptions& opt) {
  try {
    return load_dataset(cfg.dataset, cfg.data, split, subset, opt);
  } catch (const Error&) {
    if (subset == 0) throw;
    const int64_t n = load_dataset(cfg.dataset, cfg.data, split, 0, opt).size();  // throws as it was
    if (subset > n)
      throw UsageError(str(flag, " ", subset, ": the ", cfg.dataset, " ",
                           split == Split::Train ? "training" : "test", " set has ", n,
                           " images; give at most ", n, " (0: all)"));
    throw;
  }
}

void load_data(Setup& s, std::ostream& log) {
  TrainConfig& cfg = s.cfg;
  DataOptions opt;
  opt.image_size = cfg.image_size;
  opt.bad_images = cfg.bad_images == "skip" ? BadImages::Skip : BadImages::Stop;
  opt.workers = cfg.workers;
  s.train = load_split(cfg, Split::Train, cfg.subset, "--subset", opt);
  if (cfg.val_split > 0) {
    if (cfg.val_split >= s.train.size())
      throw UsageError(str("--val-split ", cfg.val_split, " leaves none of the ", s.train.size(),
                           " training images to train on"));
    s.val = split_off_tail(s.train, cfg.val_split);
  }
  s.test = load_split(cfg, Split::Test, cfg.test_subset, "--test-subset", opt);
  for (const Dataset* d : {&s.train, &s.test})
    for (const std::string& w : d->warnings) log << "warning: " << w << '\n';
  if (cfg.class_names.empty()) cfg.class_names = s.train.class_names;
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
}

// What the run's ops select their backends with, on every device (core/device_settings.h).
DeviceSettings run_settings(const TrainConfig& cfg) {
  DeviceSettings d;
  d.kernels = kernel_paths().at(cfg.kernels);
  if (!cfg.cpu_kernels.empty()) d.cpu_kernels = cpu_kernel_paths().at(cfg.cpu_kernels);
  d.allow_tf32 = cfg.tf32;
  d.deterministic = cfg.deterministic;
  return d;
}

// The model from the registry, on the run's device.
void build_model(Setup& s, std::ostream& log) {
  const TrainConfig& cfg = s.cfg;
  s.model = build_run_model(cfg, s.num_classes);
  s.model->to(s.device.device);
  // One line by default; the table of layers with --summary.
  if (cfg.summary) {
    log << "model: " << cfg.model << '\n' << model_summary(*s.model, Shape{1, 3, cfg.image_size, cfg.image_size});
  } else {
    const double mflop = static_cast<double>(s.model->forward_flops(Shape{1, 3, cfg.image_size, cfg.image_size})) / 1e6;
    log << fmt::format(
        "model: {} ({:.3f} M parameters, {:.1f} MFLOP forward per image; "
        "--summary lists the layers)\n",
        cfg.model, static_cast<double>(s.model->parameter_count()) / 1e6, mflop);
  }
}

// --resume: a warning naming every effective setting that differs from the checkpoint's.
void compare_effective(const Setup& s, std::ostream& log) {
  if (s.cfg.evaluate || s.checkpoint.empty() || !s.saved.has_config) return;
  if (!s.saved.effective.is_object()) {
    log << "note: the checkpoint predates recorded effective settings (version, commit, kernels, "
           "threads): a difference from this run cannot be detected\n";
    return;
  }
  std::string diff;
  for (const auto& [key, now] : s.effective.items()) {
    const auto was = s.saved.effective.find(key);
    const std::string before = was == s.saved.effective.end() ? "not recorded" : was->dump();
    if (was != s.saved.effective.end() && *was == now) continue;
    diff += fmt::format("{}{} {} (was {})", diff.empty() ? "" : ", ", key, now.dump(), before);
  }
  if (!diff.empty())
    log << "warning: --resume: this run differs from the checkpoint's in " << diff
        << ": its numbers may differ from those of an uninterrupted run\n";
}

}  // namespace

json effective_settings(const Setup& s) {
  const Device d = s.device.device;
  const DeviceSettings ds = device_settings(d);
  json e;
  e["version"] = minidl_version();
  e["git-commit"] = minidl_git_commit();
  e["device"] = d.is_cuda() ? str(d, ", ", cuda_device_summary()) : std::string("cpu");
  e["kernels"] = d.is_cuda() ? kernel_path_name(ds.kernels) : "not used (a CPU run)";
  e["cpu-kernels"] = d.is_cuda() ? "not used (a CUDA run)" : cpu_kernels_name(ds.cpu_kernels);
  e["threads"] = omp_get_max_threads();
  e["precision"] = s.cfg.precision;  // --precision (engine/mixed_precision.h)
  e["tf32"] = d.is_cuda() && ds.allow_tf32;
  e["deterministic"] = ds.deterministic;
  return e;
}

std::string config_file_json(const Setup& s) {
  json j = to_json(s.cfg);
  j["effective"] = s.effective;
  return j.dump(2) + "\n";
}

Setup prepare(const TrainConfig& cli, std::ostream& log) {
  Setup s;
  resolve_config(s, cli);
  s.device = pick_device(s.cfg.device);
  check_flags_apply(s.cfg, RunPlace{s.device.device.is_cuda(), dist::world().size()});
  set_run_settings(run_settings(s.cfg));
  s.effective = effective_settings(s);
  const std::vector<fs::path> replaced = choose_run_dir(s);

  // Everything that can fail on the user's input (the data, a model too large) fails before the
  // run directory is made or anything is printed: the lines wait in `early`.
  std::ostringstream early;
  early << s.device.line << '\n';
  if (s.cfg.channels_last)
    early << "layout: channels-last (NHWC) activations, converted once at the model's input; "
             "weights and checkpoints NCHW [--channels-last]\n";
  if (s.cfg.deterministic)
    early << (s.device.device.is_cuda()
                  ? "deterministic: cuDNN convolutions use deterministic algorithms in a fixed "
                    "order (not timed); each change of algorithm is reported\n"
                  : "deterministic: the CPU path has no non-deterministic algorithms (results are "
                    "bit-identical for a seed and thread count)\n");
  compare_effective(s, early);
  load_data(s, early);
  build_model(s, early);
  make_run_dir(s, replaced, log);
  if (!s.cfg.quiet) {
    log << early.str();
  } else {  // --quiet: only the warnings
    std::istringstream lines(early.str());
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("warning", 0) == 0) log << line << '\n';
  }
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
  // Each rank its slice of every epoch (DistributedSampler); training slices padded to equal
  // length, evaluation slices disjoint (evaluate() sums the ranks' results).
  l.rank = dist::world().rank();
  l.world = dist::world().size();
  l.pad = training;
  l.workers = s.cfg.workers;
  return l;
}

}  // namespace minidl

// The `train` program's settings: one struct with a field per command-line flag, its validation,
// and its JSON form (config.json in the run directory, and the copy stored in every checkpoint so
// that `train --resume` and `train --evaluate` can rebuild the run without repeating the flags).
//
// JSON keys are the flag names without the leading dashes ("batch-size", "wd", ...), so a
// config.json reads like the command line that produced it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace minidl {

// A mistake on the command line (unknown flag, bad value). The app prints it and exits with 2;
// every other minidl::Error exits with 1.
class UsageError : public Error {
 public:
  using Error::Error;
};

struct TrainConfig {
  // Model
  std::string model = "resnet18";
  int num_classes = 0;  // 0: the dataset's class count
  bool imagenet_stem = false;
  bool zero_init_residual = false;
  double dropout = 0.5;  // AlexNet's classifier dropout

  // Data
  std::string data;  // directory with the dataset's binary files
  std::string dataset = "cifar10";
  int64_t subset = 0;       // first N training images (0: all)
  int64_t test_subset = 0;  // first N test images (0: all)
  int64_t val_split = 0;    // last N of the training images held out for choosing the best epoch
  bool augment = true;      // random crop (pad 4) + horizontal flip
  int cutout = 0;           // cutout square side (0: off)
  bool shuffle = true;      // reshuffle the training images every epoch
  // Folder datasets (data/folder.h): the square input size, what to do with a file that cannot be
  // decoded ("stop" or "skip"). Their decoding threads are `workers` (below).
  int image_size = 32;
  std::string bad_images = "stop";
  // The class names, in label order: not a flag; written from the training set so that config.json
  // and every checkpoint name the classes (`predict` prints them).
  std::vector<std::string> class_names;
  // Normalisation constants (per-channel mean and std of the training pixels in [0, 1]). Not flags:
  // computed from the training images of a fresh run, then stored in config.json and every
  // checkpoint, so that --resume and --evaluate normalise exactly as the run did. Empty: compute.
  std::vector<float> norm_mean, norm_std;

  // Optimisation
  int epochs = 30;
  int64_t batch_size = 128;
  std::string optimizer = "sgd";
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  bool nesterov = false;
  std::string schedule = "step";
  int step_size = 20;
  double gamma = 0.5;
  std::vector<int> milestones;
  double warmup = 0.0;  // epochs of linear warm-up
  double label_smoothing = 0.0;

  // Execution
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  std::string kernels = "cudnn";
  std::string cpu_kernels;  // handwritten | onednn; empty: the fastest built in (core/device_settings.h)
  bool tf32 = false;
  std::string precision = "fp32";  // fp32 | bf16 | fp16 (engine/mixed_precision.h)
  bool channels_last = false;      // NHWC activations (engine/mixed_precision.h)
  uint64_t seed = 0;
  int print_freq = 10;
  int64_t trace_steps = 0;  // print a per-layer table for the first N steps (engine/trace.h)
  bool deterministic = false;  // deterministic algorithms only (cuDNN included)
  // Data-parallel training under mpirun (docs/DISTRIBUTED.md); no effect in one process.
  bool sync_bn = false;     // BatchNorm statistics over the global batch (SyncBatchNorm)
  bool overlap = true;      // all-reduce gradient buckets while backward runs
  double bucket_mb = 25.0;  // gradient bucket size in MB (1e6 bytes)
  double dist_timeout = 300.0;  // seconds a collective waits for a peer rank (dist::WaitConfig)
  int workers = 1;  // loader threads (LoaderConfig::workers); folder: also decoding threads

  // Run control
  std::string out;         // run directory ("" : runs/<model>-<timestamp>)
  std::string resume;      // checkpoint to continue training from
  std::string checkpoint;  // checkpoint to evaluate (with --evaluate; --resume works too)
  bool evaluate = false;
  bool overwrite = false;   // replace the run already in --out
  int64_t max_steps = 0;    // stop after this many optimizer steps in all (0: no limit)
  bool save_init = false;   // write init.safetensors, the weights before the first step
  bool tensorboard = false; // also write the epoch scalars as TensorBoard event files
  std::string dump_logits;  // with --evaluate: write every test image's logits to this file
  int seeds = 1;            // run the recipe with seeds seed, seed+1, ... and report mean +- std
  std::string pretrained;   // a fresh run starts from these weights (epoch 0, new optimizer)
  bool summary = false;     // print the model's layer table
  bool quiet = false;       // print only warnings, the epoch lines and the result

  // Not settings: the command line as typed, and the flags it named (so that --resume/--evaluate
  // take every other setting from the checkpoint). `given` is not written to JSON.
  std::string command;
  std::vector<std::string> given;
  std::string program = "train";  // argv[0], for the commands the program suggests

  bool operator==(const TrainConfig&) const = default;
};

// Class count of a dataset by name (cifar10: 10, cifar100: 100); throws UsageError for another.
int dataset_num_classes(const std::string& dataset);
// Where the dataset's files are under ../shared/data ("cifar-10-batches-bin", "cifar-100-binary");
// CIFAR-10's for a name that is not a dataset (validate() reports that).
std::string dataset_default_dir(const std::string& dataset);

// Throws UsageError naming the flag, the value received and what is allowed. Checks values only,
// except that --data must name an existing directory (minidl::Error, exit 1 as for any missing
// file; skipped when check_data is false: a --resume command line takes its --data from the
// checkpoint). The choice flags are checked
// against their registries (models(), optimizers(), schedules(), datasets(), and kernel_paths()
// and cpu_kernel_paths() in core/device_settings.h), the optimizer's settings by the optimizer
// itself (check_optimizer_config).
void validate(const TrainConfig& cfg, bool check_data = true);

// The rule for flags that do not apply: a flag given on the command line (cfg.given) that would
// have no effect in this run is a usage error (exit 2) naming the flag, the reason and the fix,
// never silently ignored. kFlagScopes (config.cpp) has one row per flag with such a condition
// (--tf32 on the CPU, --dropout without AlexNet, --epochs with --evaluate, ...): a new flag with a
// condition is one more row. `place`: the run's device, once picked, and its number of ranks.
// Throws UsageError listing every such flag. A value the device cannot run (--precision bf16 on a
// GPU without bfloat16) is not this rule's: the flag applies and its check names the device.
struct RunPlace {
  bool cuda = false;  // the run's device is a GPU
  int ranks = 1;      // processes of the run (mpirun -np)
};
void check_flags_apply(const TrainConfig& cfg, const RunPlace& place);

// The library configurations the flags describe. --lr is the schedule's base learning rate; the
// optimizer gets every hyper-parameter flag and reads those it uses.
OptimizerConfig optimizer_config(const TrainConfig& cfg);
ScheduleConfig schedule_config(const TrainConfig& cfg);

nlohmann::json to_json(const TrainConfig& cfg);
// Reads the keys that are present and keeps the defaults for the others; throws UsageError naming
// a key whose value has the wrong type.
TrainConfig config_from_json(const nlohmann::json& j);

// Overlay for --resume/--evaluate: starts from `saved` (the checkpoint's configuration) and takes
// from `cli` the flags the user gave (cli.given) plus what never comes from a checkpoint (resume,
// checkpoint, evaluate, out, command, and the one-invocation controls overwrite, max-steps,
// save-init, dump-logits, seeds, summary, quiet).
TrainConfig merge_resumed(const TrainConfig& saved, const TrainConfig& cli);

}  // namespace minidl

#include "engine/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/device.h"
#include "data/cifar.h"
#include "core/device_settings.h"
#include "engine/mixed_precision.h"
#include "models/models.h"

namespace minidl {

using nlohmann::json;

int dataset_num_classes(const std::string& dataset) {
  const Registry<DatasetKind>::Entry* e = datasets().find(dataset);
  if (e == nullptr) throw UsageError(str("--dataset ", datasets().unknown_message(dataset)));
  return e->value.num_classes;
}

std::string dataset_default_dir(const std::string& dataset) {
  const Registry<DatasetKind>::Entry* e = datasets().find(dataset);
  return (e != nullptr ? e->value : datasets().entries().front().value).default_dir;
}

OptimizerConfig optimizer_config(const TrainConfig& c) {
  OptimizerConfig o;
  o.name = c.optimizer;
  o.momentum = c.momentum;
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

namespace {

// "--model 'resnet19' is not known: expected resnet18, ... or plain (did you mean resnet18?)"
template <typename T>
void check_choice(const char* flag, const std::string& value, const Registry<T>& allowed) {
  if (!allowed.contains(value)) throw UsageError(str(flag, " ", allowed.unknown_message(value)));
}

// Throws "<flag> <value>: expected <what>" unless ok.
template <typename T>
void check_value(bool ok, const char* flag, const T& value, const char* expected) {
  if (!ok) throw UsageError(str(flag, " ", value, ": expected ", expected));
}

}  // namespace

void validate(const TrainConfig& c, bool check_data) {
  check_choice("--model", c.model, models());
  check_choice("--dataset", c.dataset, datasets());
  const int classes = dataset_num_classes(c.dataset);
  check_value(c.num_classes == 0 || c.num_classes >= classes, "--num-classes", c.num_classes,
              str("at least ", classes, " (the classes of ", c.dataset, "), or 0 for exactly that")
                  .c_str());
  if (c.imagenet_stem && !models().at(c.model).imagenet_stem)
    throw UsageError(str("--imagenet-stem applies to ", join_or(imagenet_stem_model_names()),
                         ", not --model ", c.model));
  check_value(c.dropout >= 0.0 && c.dropout < 1.0, "--dropout", c.dropout,
              "a probability in [0, 1)");

  check_value(c.subset >= 0, "--subset", c.subset, "a number of images >= 0 (0: all)");
  check_value(c.test_subset >= 0, "--test-subset", c.test_subset,
              "a number of images >= 0 (0: all)");
  check_value(c.val_split >= 0, "--val-split", c.val_split,
              "a number of training images >= 0 to hold out (0: none)");
  if (c.subset > 0 && c.val_split >= c.subset)
    throw UsageError(str("--val-split ", c.val_split, " leaves no training images of --subset ",
                         c.subset, ": hold out fewer than --subset"));
  for (const auto* v : {&c.norm_mean, &c.norm_std})
    if (!v->empty() && v->size() != 3)
      throw UsageError(str("configuration: norm-mean and norm-std need 3 values (one per channel), "
                           "got ", v->size()));
  if (c.norm_mean.empty() != c.norm_std.empty())
    throw UsageError("configuration: norm-mean and norm-std must be given together");
  for (float x : c.norm_std)
    check_value(std::isfinite(x) && x > 0.0f, "norm-std", x, "positive channel std values");
  check_value(c.image_size >= 8 && c.image_size <= 1024, "--image-size", c.image_size,
              "a side of 8 to 1024 pixels");
  if (c.image_size != 32 && c.dataset != "folder")
    throw UsageError(str("--image-size ", c.image_size, " applies to --dataset folder; ",
                         c.dataset, " images are 32x32"));
  check_value(c.bad_images == "stop" || c.bad_images == "skip", "--bad-images", c.bad_images,
              "stop or skip");
  check_value(c.cutout >= 0 && c.cutout <= 32, "--cutout", c.cutout,
              "a square side in pixels, 0 to 32");
  if (c.cutout > 0 && !c.augment)
    throw UsageError(
        "--cutout is part of the augmentation: it cannot be combined with --no-augment");

  check_value(c.epochs >= 1, "--epochs", c.epochs, "at least 1");
  check_value(c.batch_size >= 1, "--batch-size", c.batch_size, "at least 1");
  check_choice("--optimizer", c.optimizer, optimizers());
  check_value(std::isfinite(c.lr) && c.lr > 0.0, "--lr", c.lr, "a positive learning rate");
  check_value(c.momentum >= 0.0 && c.momentum < 1.0, "--momentum", c.momentum, "a value in [0, 1)");
  check_value(std::isfinite(c.weight_decay) && c.weight_decay >= 0.0, "--wd", c.weight_decay,
              "a weight decay >= 0");
  // What the optimizer accepts (nesterov only for sgd, and only with momentum) is its own rule.
  try {
    check_optimizer_config(optimizer_config(c));
  } catch (const Error& e) {
    throw UsageError(str(e.what(), " (from --optimizer ", c.optimizer, " --momentum ", c.momentum,
                         " --wd ", c.weight_decay, c.nesterov ? " --nesterov" : "", ")"));
  }
  check_choice("--schedule", c.schedule, schedules());
  check_value(c.step_size >= 1, "--step-size", c.step_size, "at least 1 epoch");
  check_value(c.gamma > 0.0 && c.gamma <= 1.0, "--gamma", c.gamma, "a decay factor in (0, 1]");
  if (c.schedule == "multistep" && c.milestones.empty())
    throw UsageError("--schedule multistep needs --milestones (e.g. --milestones 30,60,80)");
  for (size_t i = 0; i < c.milestones.size(); ++i) {
    if (c.milestones[i] < 1 || (i > 0 && c.milestones[i] <= c.milestones[i - 1]))
      throw UsageError(str("--milestones: expected increasing epochs >= 1, got ", c.milestones[i],
                           i > 0 ? str(" after ", c.milestones[i - 1]) : std::string()));
  }
  check_value(std::isfinite(c.warmup) && c.warmup >= 0.0, "--warmup", c.warmup,
              "a number of epochs >= 0");
  check_value(c.label_smoothing >= 0.0 && c.label_smoothing < 1.0, "--label-smoothing",
              c.label_smoothing, "a value in [0, 1)");

  if (c.device != "auto") {
    try {
      Device::parse(c.device);
    } catch (const Error&) {
      throw UsageError(str("--device '", c.device, "': expected auto, cpu, cuda or cuda:N"));
    }
  }
  check_choice("--kernels", c.kernels, kernel_paths());
  if (!c.cpu_kernels.empty()) check_choice("--cpu-kernels", c.cpu_kernels, cpu_kernel_paths());
  check_choice("--precision", c.precision, precisions());
  check_value(c.print_freq >= 1, "--print-freq", c.print_freq, "at least 1 step");
  check_value(c.trace_steps >= 0, "--trace-steps", c.trace_steps, "a number of steps >= 0 (0: off)");
  check_value(c.bucket_mb > 0, "--bucket-mb", c.bucket_mb, "more than 0 MB");
  check_value(c.dist_timeout >= 0, "--dist-timeout", c.dist_timeout,
              "0 (wait forever) or more seconds");
  check_value(c.workers >= 1 && c.workers <= 64, "--workers", c.workers, "1 to 64 threads");
  check_value(c.max_steps >= 0, "--max-steps", c.max_steps, "a number of steps >= 0 (0: no limit)");
  check_value(c.seeds >= 1, "--seeds", c.seeds, "at least 1 run");
  if (c.seeds > 1 && (c.evaluate || !c.resume.empty()))
    throw UsageError("--seeds runs fresh trainings: it cannot be combined with --evaluate or "
                     "--resume");
  if (!c.dump_logits.empty() && !c.evaluate)
    throw UsageError("--dump-logits writes the logits of an evaluation: add --evaluate");

  if (c.evaluate && c.resume.empty() && c.checkpoint.empty())
    throw UsageError(
        "--evaluate needs the checkpoint to evaluate: --checkpoint PATH (or --resume PATH)");
  if (!c.checkpoint.empty() && !c.evaluate)
    throw UsageError(
        "--checkpoint names the file --evaluate reads; to continue training use --resume");
  if (!c.checkpoint.empty() && !c.resume.empty())
    throw UsageError("give the checkpoint once: --checkpoint or --resume, not both");

  if (!check_data) return;
  if (c.data.empty() && dataset_default_dir(c.dataset).empty())
    throw UsageError(str("--dataset ", c.dataset, " needs --data DIR (the folder with train/ and "
                         "val/ subfolders of class folders; docs/TRAINING.md)"));
  if (!std::filesystem::is_directory(c.data) && dataset_default_dir(c.dataset).empty())
    throw UsageError(str("--data ", c.data, ": no such directory"));
  if (c.data.empty())
    throw UsageError(
        str("--data is required: no ", c.dataset, " directory at the default ../shared/data/",
            dataset_default_dir(c.dataset),
            " (the binary version is at https://www.cs.toronto.edu/~kriz/cifar.html)"));
  if (!std::filesystem::is_directory(c.data))
    throw Error(str("--data ", c.data, ": no such directory (expected the ", c.dataset,
                    " binary files, e.g. ../shared/data/", dataset_default_dir(c.dataset), ")"));
}

namespace {

// One row of the rule in config.h: when `flag` (a long name, as in TrainConfig::given) has no
// effect, why not (and what to do instead); "" when it applies.
struct FlagScope {
  const char* flag;
  std::string (*does_not_apply)(const TrainConfig& c, const RunPlace& p);
};

// The flags --evaluate does not read: everything about training (the model and data settings come
// from the checkpoint, and given flags override them, so they apply). Evaluation runs in float32
// (--precision is the training step's policy), shows no per-step progress (--print-freq) and
// writes eval.json, not TensorBoard events.
std::string training_only(const TrainConfig& c, const RunPlace&) {
  return c.evaluate ? "it sets up training, and --evaluate trains nothing" : "";
}

// A data-parallel flag's reason (`what` it does) when this run is one process; "" under mpirun.
std::string in_one_process(const RunPlace& p, const char* what) {
  return p.ranks > 1 ? "" : std::string(what) + ", and this run is one process";
}

const FlagScope kFlagScopes[] = {
    {"tf32",
     [](const TrainConfig&, const RunPlace& p) -> std::string {
       return p.cuda ? "" : "TF32 tensor cores exist on GPUs only, and this run is on the CPU";
     }},
    {"kernels",
     [](const TrainConfig&, const RunPlace& p) -> std::string {
       return p.cuda ? ""
                     : "it chooses the GPU implementation, and this run is on the CPU (the "
                       "CPU's is --cpu-kernels)";
     }},
    {"cpu-kernels",
     [](const TrainConfig&, const RunPlace& p) -> std::string {
       return !p.cuda ? ""
                      : "it chooses the CPU implementation, and this run is on a GPU (the "
                        "GPU's is --kernels)";
     }},
    {"zero-init-residual",
     [](const TrainConfig& c, const RunPlace&) -> std::string {
       return c.model.rfind("resnet", 0) == 0 ? ""
                                              : "it applies to the ResNets (no residual "
                                                "blocks in --model " +
                                                    c.model + ")";
     }},
    {"dropout",
     [](const TrainConfig& c, const RunPlace&) -> std::string {
       return c.model == "alexnet" ? "" : "only alexnet has dropout, not --model " + c.model;
     }},
    {"momentum",
     [](const TrainConfig& c, const RunPlace&) -> std::string {
       return c.optimizer == "sgd"
                  ? ""
                  : "it is SGD's, and --optimizer " + c.optimizer + " has no momentum";
     }},
    {"step-size",
     [](const TrainConfig& c, const RunPlace&) -> std::string {
       return c.schedule == "step" ? "" : "it belongs to --schedule step, not " + c.schedule;
     }},
    {"gamma",
     [](const TrainConfig& c, const RunPlace&) -> std::string {
       return c.schedule == "step" || c.schedule == "multistep"
                  ? ""
                  : "it belongs to --schedule step or multistep, not " + c.schedule;
     }},
    {"milestones",
     [](const TrainConfig& c, const RunPlace&) -> std::string {
       return c.schedule == "multistep"
                  ? ""
                  : "it belongs to --schedule multistep, not " + c.schedule +
                        (c.schedule == "step" ? " (step decays every --step-size epochs)" : "");
     }},
    {"epochs", training_only},
    {"lr", training_only},
    {"optimizer", training_only},
    {"wd", training_only},
    {"nesterov", training_only},
    {"schedule", training_only},
    {"warmup", training_only},
    {"augment", training_only},
    {"cutout", training_only},
    {"shuffle", training_only},
    {"subset", training_only},
    {"val-split", training_only},
    {"max-steps", training_only},
    {"save-init", training_only},
    {"momentum", training_only},
    {"step-size", training_only},
    {"gamma", training_only},
    {"milestones", training_only},
    {"seed", training_only},
    {"precision", training_only},
    // --channels-last has no row: every model takes 4-D images and has convolutions, on either
    // device, and evaluation (--evaluate too) runs in the layout as well (engine/evaluate.cpp).
    {"print-freq", training_only},
    {"trace-steps", training_only},
    {"tensorboard", training_only},
    {"sync-bn", training_only},
    {"overlap", training_only},
    {"bucket-mb", training_only},
    // Flags of the folder dataset, and of the loader's threads.
    {"image-size",
     [](const TrainConfig& c, const RunPlace&) -> std::string {
       return c.dataset == "folder" ? ""
                                    : "it sizes the images of --dataset folder; " + c.dataset +
                                          "'s are 32x32 as stored";
     }},
    {"bad-images",
     [](const TrainConfig& c, const RunPlace&) -> std::string {
       return c.dataset == "folder" ? ""
                                    : "it is about image files of --dataset folder, and " +
                                          c.dataset + " is read from its binary files";
     }},
    {"workers",
     [](const TrainConfig& c, const RunPlace& p) -> std::string {
       return !p.cuda || c.dataset == "folder"
                  ? ""
                  : "on a GPU the " + c.dataset +
                        " batches are augmented by the device, with no loader threads (they "
                        "prepare batches on the CPU, or decode --dataset folder's images)";
     }},
    // Data-parallel flags (docs/DISTRIBUTED.md): one process has nothing to synchronise.
    {"sync-bn",
     [](const TrainConfig& c, const RunPlace& p) -> std::string {
       if (p.ranks == 1)
         return in_one_process(p, "it shares BatchNorm statistics between the ranks of mpirun");
       return model_has_batchnorm(c.model) ? "" : "--model " + c.model + " has no BatchNorm";
     }},
    {"overlap",
     [](const TrainConfig&, const RunPlace& p) -> std::string {
       return in_one_process(p, "it schedules the all-reduce of mpirun's ranks");
     }},
    {"bucket-mb",
     [](const TrainConfig&, const RunPlace& p) -> std::string {
       return in_one_process(p, "it sizes the all-reduce of mpirun's ranks");
     }},
    {"dist-timeout",
     [](const TrainConfig&, const RunPlace& p) -> std::string {
       return in_one_process(p, "it bounds how long mpirun's ranks wait for each other");
     }},
};

}  // namespace

void check_flags_apply(const TrainConfig& c, const RunPlace& place) {
  std::string problems;
  std::vector<std::string> named;  // a flag with several rows is named once, for its first reason
  for (const FlagScope& row : kFlagScopes) {
    if (std::find(c.given.begin(), c.given.end(), row.flag) == c.given.end()) continue;
    if (std::find(named.begin(), named.end(), row.flag) != named.end()) continue;
    const std::string why = row.does_not_apply(c, place);
    if (why.empty()) continue;
    problems += str(problems.empty() ? "" : "; ", "--", row.flag, ": ", why);
    named.push_back(row.flag);
  }
  if (!problems.empty())
    throw UsageError(str(problems, ". A flag that would have no effect is an error: remove it"));
}

json to_json(const TrainConfig& c) {
  return json{
      {"model", c.model},
      {"num-classes", c.num_classes},
      {"imagenet-stem", c.imagenet_stem},
      {"zero-init-residual", c.zero_init_residual},
      {"dropout", c.dropout},
      {"data", c.data},
      {"dataset", c.dataset},
      {"subset", c.subset},
      {"test-subset", c.test_subset},
      {"val-split", c.val_split},
      {"augment", c.augment},
      {"cutout", c.cutout},
      {"shuffle", c.shuffle},
      {"image-size", c.image_size},
      {"bad-images", c.bad_images},
      {"class-names", c.class_names},
      {"norm-mean", c.norm_mean},
      {"norm-std", c.norm_std},
      {"epochs", c.epochs},
      {"batch-size", c.batch_size},
      {"optimizer", c.optimizer},
      {"lr", c.lr},
      {"momentum", c.momentum},
      {"wd", c.weight_decay},
      {"nesterov", c.nesterov},
      {"schedule", c.schedule},
      {"step-size", c.step_size},
      {"gamma", c.gamma},
      {"milestones", c.milestones},
      {"warmup", c.warmup},
      {"label-smoothing", c.label_smoothing},
      {"device", c.device},
      {"kernels", c.kernels},
      {"cpu-kernels", c.cpu_kernels},
      {"tf32", c.tf32},
      {"precision", c.precision},
      {"channels-last", c.channels_last},
      {"seed", c.seed},
      {"print-freq", c.print_freq},
      {"trace-steps", c.trace_steps},
      {"deterministic", c.deterministic},
      {"sync-bn", c.sync_bn},
      {"overlap", c.overlap},
      {"bucket-mb", c.bucket_mb},
      {"dist-timeout", c.dist_timeout},
      {"workers", c.workers},
      {"out", c.out},
      {"resume", c.resume},
      {"checkpoint", c.checkpoint},
      {"evaluate", c.evaluate},
      {"overwrite", c.overwrite},
      {"max-steps", c.max_steps},
      {"save-init", c.save_init},
      {"tensorboard", c.tensorboard},
      {"dump-logits", c.dump_logits},
      {"seeds", c.seeds},
      {"pretrained", c.pretrained},
      {"summary", c.summary},
      {"quiet", c.quiet},
      {"command", c.command},
  };
}

namespace {

template <typename T>
void read_key(const json& j, const char* key, T& field) {
  const auto it = j.find(key);
  if (it == j.end()) return;
  try {
    field = it->get<T>();
  } catch (const json::exception& e) {
    throw UsageError(
        str("configuration key '", key, "': ", it->dump(), " has the wrong type (", e.what(), ")"));
  }
}

}  // namespace

TrainConfig config_from_json(const json& j) {
  if (!j.is_object())
    throw UsageError(str("configuration: expected a JSON object, got ", j.dump()));
  TrainConfig c;
  read_key(j, "model", c.model);
  read_key(j, "num-classes", c.num_classes);
  read_key(j, "imagenet-stem", c.imagenet_stem);
  read_key(j, "zero-init-residual", c.zero_init_residual);
  read_key(j, "dropout", c.dropout);
  read_key(j, "data", c.data);
  read_key(j, "dataset", c.dataset);
  read_key(j, "subset", c.subset);
  read_key(j, "test-subset", c.test_subset);
  read_key(j, "val-split", c.val_split);
  read_key(j, "augment", c.augment);
  read_key(j, "cutout", c.cutout);
  read_key(j, "shuffle", c.shuffle);
  read_key(j, "image-size", c.image_size);
  read_key(j, "bad-images", c.bad_images);
  read_key(j, "class-names", c.class_names);
  read_key(j, "norm-mean", c.norm_mean);
  read_key(j, "norm-std", c.norm_std);
  read_key(j, "epochs", c.epochs);
  read_key(j, "batch-size", c.batch_size);
  read_key(j, "optimizer", c.optimizer);
  read_key(j, "lr", c.lr);
  read_key(j, "momentum", c.momentum);
  read_key(j, "wd", c.weight_decay);
  read_key(j, "nesterov", c.nesterov);
  read_key(j, "schedule", c.schedule);
  read_key(j, "step-size", c.step_size);
  read_key(j, "gamma", c.gamma);
  read_key(j, "milestones", c.milestones);
  read_key(j, "warmup", c.warmup);
  read_key(j, "label-smoothing", c.label_smoothing);
  read_key(j, "device", c.device);
  read_key(j, "kernels", c.kernels);
  read_key(j, "cpu-kernels", c.cpu_kernels);
  read_key(j, "tf32", c.tf32);
  read_key(j, "precision", c.precision);
  read_key(j, "channels-last", c.channels_last);
  read_key(j, "seed", c.seed);
  read_key(j, "print-freq", c.print_freq);
  read_key(j, "trace-steps", c.trace_steps);
  read_key(j, "deterministic", c.deterministic);
  read_key(j, "sync-bn", c.sync_bn);
  read_key(j, "overlap", c.overlap);
  read_key(j, "bucket-mb", c.bucket_mb);
  read_key(j, "dist-timeout", c.dist_timeout);
  read_key(j, "workers", c.workers);
  read_key(j, "out", c.out);
  read_key(j, "resume", c.resume);
  read_key(j, "checkpoint", c.checkpoint);
  read_key(j, "evaluate", c.evaluate);
  read_key(j, "overwrite", c.overwrite);
  read_key(j, "max-steps", c.max_steps);
  read_key(j, "save-init", c.save_init);
  read_key(j, "tensorboard", c.tensorboard);
  read_key(j, "dump-logits", c.dump_logits);
  read_key(j, "seeds", c.seeds);
  read_key(j, "pretrained", c.pretrained);
  read_key(j, "summary", c.summary);
  read_key(j, "quiet", c.quiet);
  read_key(j, "command", c.command);
  return c;
}

TrainConfig merge_resumed(const TrainConfig& saved, const TrainConfig& cli) {
  json merged = to_json(saved);
  const json from_cli = to_json(cli);
  for (const std::string& flag : cli.given) {
    // --no-augment/--no-shuffle are the negatives of --augment/--shuffle; "wd" is spelled as
    // its flag.
    const std::string key = flag.rfind("no-", 0) == 0 ? flag.substr(3) : flag;
    if (from_cli.contains(key)) merged[key] = from_cli[key];
  }
  for (const char* key : {"out", "resume", "checkpoint", "evaluate", "command", "overwrite",
                          "max-steps", "save-init", "dump-logits", "seeds", "summary", "quiet"})
    merged[key] = from_cli[key];
  TrainConfig c = config_from_json(merged);
  c.given = cli.given;
  c.program = cli.program;
  return c;
}

}  // namespace minidl

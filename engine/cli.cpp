#include "engine/cli.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <vector>

#include "core/device_settings.h"
#include "engine/mixed_precision.h"
#include "core/registry.h"
#include "core/version.h"
#include "data/cifar.h"
#include "models/models.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace minidl {

namespace {

// The widest line of --help.
constexpr size_t kHelpColumns = 100;

// The --help text of a choice flag: `what`, then one line per entry of its registry.
template <typename T>
std::string choice_help(const std::string& what, const Registry<T>& choices) {
  std::string s = what + ", one of:";
  std::string lines = choices.help_text();
  s += "\n  ";
  for (char ch : lines) {
    s += ch;
    if (ch == '\n') s += "  ";
  }
  return s;
}

// Declares every flag on `app`, writing into `c`. Choice flags are plain strings here: validate()
// checks them against their registries, so that the same messages come from the command line and
// from a config file.
void add_flags(CLI::App& app, TrainConfig& c) {
  app.option_defaults()->always_capture_default();

  app.add_option("--model,-a,--arch", c.model, choice_help("architecture", models()));
  app.add_option("--num-classes", c.num_classes, "output classes (0: the dataset's, 10 or 100)");
  app.add_flag("--imagenet-stem", c.imagenet_stem,
               "ResNet-18..152: 7x7/2 conv + max-pool stem instead of the CIFAR 3x3 stem");
  app.add_flag("--zero-init-residual", c.zero_init_residual,
               "ResNets: start the last BN of each block at 0 (torchvision's option)");
  app.add_option("--dropout", c.dropout, "AlexNet classifier dropout probability");

  app.add_option("--data", c.data,
                 "dataset directory (default: ../shared/data/cifar-10-batches-bin, or "
                 "../shared/data/cifar-100-binary for cifar100, when it exists)");
  app.add_option("--dataset", c.dataset, choice_help("dataset", datasets()));
  app.add_option("--image-size", c.image_size,
                 "folder dataset: side of the square images the model sees (32: CIFAR-style "
                 "pad-crop-flip; larger: random-resized-crop for training, resize + centre crop "
                 "for evaluation)");
  app.add_option("--bad-images", c.bad_images,
                 "folder dataset: an image that cannot be decoded stops the run (stop) or is "
                 "skipped and counted (skip)");
  app.add_option("--subset", c.subset, "train on the first N training images (0: all)");
  app.add_option("--test-subset", c.test_subset, "evaluate on the first N test images (0: all)");
  app.add_option("--val-split", c.val_split,
                 "hold out the last N training images as a validation set; the best checkpoint "
                 "is chosen on it and the test set is only reported (0: choose on the test set)");
  app.add_flag("--augment,!--no-augment", c.augment,
               "random crop (pad 4) + horizontal flip of training images (default: on)");
  app.add_option("--cutout", c.cutout, "cutout square side in pixels (0: off)");
  app.add_flag("--shuffle,!--no-shuffle", c.shuffle,
               "reshuffle the training images every epoch (default: on; --no-shuffle keeps the "
               "file order)");

  app.add_option("--epochs", c.epochs, "number of epochs to train");
  app.add_option("--batch-size,-b", c.batch_size, "images per step");
  app.add_option("--optimizer", c.optimizer, choice_help("optimizer", optimizers()));
  app.add_option("--lr", c.lr, "base learning rate (the schedule's)");
  app.add_option("--momentum", c.momentum, "SGD momentum (ignored by the other optimizers)");
  app.add_option("--wd,--weight-decay", c.weight_decay, "weight decay (L2; decoupled for adamw)");
  app.add_flag("--nesterov", c.nesterov, "Nesterov momentum (sgd)");
  app.add_option("--schedule", c.schedule, choice_help("learning-rate schedule", schedules()));
  app.add_option("--step-size", c.step_size, "step: epochs between decays");
  app.add_option("--gamma", c.gamma, "step/multistep: decay factor");
  app.add_option("--milestones", c.milestones,
                 "multistep: epochs where the lr decays, e.g. 30,60,80")
      ->delimiter(',');
  app.add_option("--warmup", c.warmup, "epochs of linear learning-rate warm-up");
  app.add_option("--label-smoothing", c.label_smoothing,
                 "label smoothing of the cross-entropy loss");

  app.add_option("--device", c.device,
                 "auto (cuda if a GPU is available, else cpu), cpu, cuda or cuda:N");
  app.add_option("--kernels", c.kernels, choice_help("CUDA implementation", kernel_paths()));
  app.add_option("--cpu-kernels", c.cpu_kernels,
                 choice_help("CPU implementation (default: the first)", cpu_kernel_paths()));
  app.add_flag("--tf32", c.tf32, "let cuBLAS use TF32 tensor cores for float32 products");
  app.add_option("--precision", c.precision,
                 choice_help("precision (torch.autocast's policy; default fp32)", precisions()));
  app.add_flag("--channels-last,!--no-channels-last", c.channels_last,
               "keep activations channels-last (NHWC, PyTorch's torch.channels_last): the batch "
               "is converted once at the model's input; weights and checkpoints stay NCHW "
               "(default: off; docs/TRAINING.md)");
  app.add_option("--seed", c.seed, "seed for initialisation, shuffling and augmentation");
  app.add_option("--print-freq,-p", c.print_freq, "steps between progress updates");
  app.add_option("--trace-steps", c.trace_steps,
                 "per-layer activation mean/std, gradient norm and update/weight ratio for the "
                 "first N steps");
  app.add_flag("--deterministic", c.deterministic,
               "use only deterministic algorithms (cuDNN included) so that a seed gives "
               "bit-identical results; says which op changed algorithm");
  app.add_flag("--sync-bn", c.sync_bn,
               "under mpirun: BatchNorm normalises with the statistics of the global batch "
               "(SyncBatchNorm; docs/DISTRIBUTED.md)");
  app.add_flag("--overlap,!--no-overlap", c.overlap,
               "under mpirun: all-reduce gradient buckets while backward runs (default), or all "
               "at once after it");
  app.add_option("--bucket-mb", c.bucket_mb, "under mpirun: gradient bucket size in MB");
  app.add_option("--dist-timeout", c.dist_timeout,
                 "under mpirun: seconds a collective may wait for the other ranks before the job "
                 "ends (a hung rank); 0 waits forever");
  app.add_option("--workers,-j", c.workers,
                 "loader threads preparing batches (CPU, or --dataset folder: also its decoding "
                 "threads); the batches are the same for any number");

  app.add_option("--out", c.out,
                 "run directory (default: runs/<model>-<timestamp>; with --resume: "
                 "the checkpoint's directory)");
  app.add_option("--resume", c.resume, "continue training from this checkpoint");
  app.add_option("--checkpoint", c.checkpoint, "with --evaluate: the checkpoint to evaluate");
  app.add_flag("--evaluate,-e", c.evaluate,
               "evaluate the checkpoint on the test set (loss, accuracy, per-class accuracy, "
               "confusion matrix); no training");
  app.add_flag("--overwrite", c.overwrite,
               "replace the run already in --out (without it train refuses to write over one)");
  app.add_option("--max-steps", c.max_steps,
                 "stop after this many optimizer steps in all, saving a resumable "
                 "last.safetensors (0: no limit)");
  app.add_flag("--save-init", c.save_init,
               "write init.safetensors, the weights before the first step");
  app.add_flag("--tensorboard", c.tensorboard,
               "also write each epoch's losses, accuracies, lr, images/s and per-layer gradient "
               "norms as TensorBoard event files (events.out.tfevents.*) in the run directory");
  app.add_option("--dump-logits", c.dump_logits,
                 "with --evaluate: write every test image's logits and label to this "
                 "safetensors file");
  app.add_option("--seeds", c.seeds,
                 "train N times with seeds --seed, --seed+1, ... (runs in --out/seed-S) and "
                 "report mean +- std");
  app.add_option("--pretrained", c.pretrained,
                 "start a new run from this checkpoint's weights (epoch 0, a new optimizer)");
  app.add_flag("--summary", c.summary, "print the model's table of layers");
  app.add_flag("--quiet,-q", c.quiet,
               "print only warnings, errors, the epoch lines and the result");
  app.add_flag("--version")
      ->description("print the version and the git commit of this build, and exit");
}

// Flags of the PyTorch examples that train spells differently or does not have, with what to do
// instead (the aliases that mean the same, -a/--arch, -j/--workers, --pretrained, are flags).
struct FlagHint {
  const char* flag;
  const char* hint;
};
constexpr FlagHint kFlagHints[] = {
    {"--start-epoch", "train takes the epoch to continue from from the checkpoint: --resume PATH"},
    {"--amp",
     "PyTorch's automatic mixed precision has no flag of that name here: train --help "
     "lists the precision settings this build has"},
    {"--world-size", "train runs on one device"},
    {"--dist-url", "train runs on one device"},
    {"--gpu", "choose the device with --device cuda:N"},
    {"--weight_decay", "did you mean --wd (or --weight-decay)?"},
    {"--batch_size", "did you mean --batch-size?"},
};

// The flag a mistyped name most likely meant: the only flag it is a prefix of ("--opt":
// --optimizer), else the closest by edit distance (at most 2), else the longest flag it begins
// with ("--lrate": --lr). Aliases count as flags. "" when nothing is close.
std::string closest_flag(const CLI::App& app, const std::string& name) {
  std::vector<std::string> flags;
  for (const CLI::Option* o : app.get_options())
    for (const std::string& l : o->get_lnames()) flags.push_back("--" + l);
  std::string prefix_of;
  int prefix_count = 0;
  for (const std::string& flag : flags)
    if (name.size() > 3 && flag.rfind(name, 0) == 0) prefix_of = flag, ++prefix_count;
  if (prefix_count == 1) return prefix_of;
  std::string best;
  size_t best_d = 3, best_len = 0;
  for (const std::string& flag : flags) {
    const size_t d = edit_distance(name, flag);
    if (d < best_d) {
      best_d = d;
      best = flag;
    } else if (best_d == 3 && name.size() > 3 && flag.size() > best_len &&
               name.rfind(flag, 0) == 0) {
      best_len = flag.size();
      best = flag;
    }
  }
  return best;
}

// Checks the flags before CLI11 does, so that the two common mistakes read plainly: a flag that
// does not exist ("unknown flag --lrate (did you mean --lr?)") and one given twice.
void check_flag_names(const CLI::App& app, int argc, const char* const* argv) {
  std::map<const CLI::Option*, std::string> seen;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "--version") return;
    if (arg.size() < 2 || arg[0] != '-' || (arg[1] >= '0' && arg[1] <= '9') || arg[1] == '.')
      continue;  // a value (negative numbers included)
    const std::string name = arg.substr(0, arg.find('='));
    const CLI::Option* opt = app.get_option_no_throw(name);
    if (opt == nullptr) {
      for (const FlagHint& h : kFlagHints)
        if (name == h.flag)
          throw UsageError(
              str("unknown flag ", name, ": ", h.hint, "; train --help lists every flag"));
      const std::string best = closest_flag(app, name);
      throw UsageError(str("unknown flag ", name,
                           best.empty() ? std::string() : str(" (did you mean ", best, "?)"),
                           "; train --help lists every flag"));
    }
    const auto [it, fresh] = seen.emplace(opt, name);
    if (!fresh)
      throw UsageError(str(name, " is given twice", it->second != name ? str(" (as ", it->second,
                                                                              " before)")
                                                                         : std::string(),
                           ": give each flag once"));
    const bool takes_value = opt->get_items_expected_min() > 0;  // flags expect no value
    if (takes_value && arg.find('=') == std::string::npos) ++i;  // skip its value
  }
}

// CLI11 shows a negated flag as "--augment,--no-augment{false}", which reads as "off by default";
// the on/off pair is plain "--augment,--no-augment" here, and the description says the default.
class TrainHelpFormatter : public CLI::Formatter {
 public:
  std::string make_option_name(const CLI::Option* opt, bool is_positional) const override {
    std::string name = CLI::Formatter::make_option_name(opt, is_positional);
    // A flag with a short name and long aliases ("-a,--model,--arch") shows its own long name
    // last, next to its value: "-a,--arch,--model TEXT=resnet18".
    const std::vector<std::string>& l = opt->get_lnames();
    if (!opt->get_snames().empty() && l.size() > 1) {
      name.clear();
      for (const std::string& sn : opt->get_snames()) name += "-" + sn + ",";
      for (size_t i = 1; i < l.size(); ++i) name += "--" + l[i] + ",";
      name += "--" + l[0];
    }
    for (size_t p; (p = name.find("{false}")) != std::string::npos;) name.erase(p, 7);
    return name;
  }
  // Descriptions wrapped so that no line of --help is wider than kHelpColumns: a wrapped line
  // continues under the start of its text (a choice's line under its description).
  std::string make_option_desc(const CLI::Option* opt) const override {
    const size_t width = kHelpColumns - get_column_width();
    std::string out, line;
    const std::string desc = CLI::Formatter::make_option_desc(opt);
    for (size_t b = 0, e; b <= desc.size(); b = e + 1) {
      e = std::min(desc.find('\n', b), desc.size());
      line = desc.substr(b, e - b);
      // Hanging indent: the leading spaces, and for "  name   text" the column of the text.
      size_t indent = line.find_first_not_of(' ');
      if (indent == std::string::npos) indent = 0;
      if (indent > 0) {
        const size_t gap = line.find("  ", indent);
        if (gap != std::string::npos) indent = line.find_first_not_of(' ', gap);
      }
      std::string wrapped;
      while (line.size() > width) {
        size_t cut = line.rfind(' ', width);
        if (cut == std::string::npos || cut <= indent) cut = width;
        wrapped += line.substr(0, cut) + "\n";
        line = std::string(indent, ' ') + line.substr(line.find_first_not_of(' ', cut));
      }
      out += (out.empty() && b == 0 ? "" : "\n") + wrapped + line;
    }
    return out;
  }
  std::string make_option_opts(const CLI::Option* opt) const override {
    // No "=true"/"=false" after a flag: its description gives the default.
    if (opt->get_items_expected_min() == 0) return std::string();
    return CLI::Formatter::make_option_opts(opt);
  }
};

constexpr const char* kDescription =
    "Train a model on CIFAR-10/100 with minidl (docs/TRAINING.md).";

}  // namespace

std::string shell_command(int argc, const char* const* argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (i > 0) s += ' ';
    const bool plain = !a.empty() && a.find_first_not_of(
                                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789_./=:,+-@%") == std::string::npos;
    if (plain) {
      s += a;
    } else {
      s += '\'';
      for (char ch : a) s += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      s += '\'';
    }
  }
  return s;
}

std::string version_text() {
  return str("train (minidl) ", minidl_version(), ", git commit ", minidl_git_commit(), "\n");
}

std::string train_help() {
  TrainConfig c;
  CLI::App app(kDescription, "train");
  app.formatter(std::make_shared<TrainHelpFormatter>());
  add_flags(app, c);
  return app.help();
}

TrainConfig parse_train_args(int argc, const char* const* argv) {
  TrainConfig c;
  CLI::App app(kDescription, "train");
  app.formatter(std::make_shared<TrainHelpFormatter>());
  add_flags(app, c);
  check_flag_names(app, argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    throw HelpRequested{app.help()};

  } catch (const CLI::ParseError& e) {
    throw UsageError(str(e.what(), " (train --help lists every flag)"));
  }

  if (app.get_option("--version")->count() > 0) throw HelpRequested{version_text()};
  c.command = shell_command(argc, argv);
  if (argc > 0) c.program = argv[0];
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->count() > 0 && !opt->get_lnames().empty()) c.given.push_back(opt->get_lnames()[0]);
  }
  if (c.data.empty() && !dataset_default_dir(c.dataset).empty()) {
    const std::filesystem::path d =
        std::filesystem::path("..") / "shared" / "data" / dataset_default_dir(c.dataset);
    if (std::filesystem::is_directory(d)) c.data = d.string();
  }
  if (!c.pretrained.empty() && (!c.resume.empty() || c.evaluate))
    throw UsageError(
        "--pretrained starts a new run from a checkpoint's weights: it cannot be "
        "combined with --resume (which continues a run) or --evaluate (which reads "
        "--checkpoint)");
  const bool from_checkpoint = !c.resume.empty() || !c.checkpoint.empty();
  validate(c, /*check_data=*/!from_checkpoint);
  return c;
}

}  // namespace minidl

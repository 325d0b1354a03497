#include "engine/cli.h"

#include <CLI/CLI.hpp>
#include <filesystem>

#include "kernels/cpu_kernels.h"
#include "models/models.h"

namespace minidl {

namespace {

// Declares every flag on `app`, writing into `c`. Choice flags are plain strings here: validate()
// checks them, so that the same messages come from the command line and from a config file.
void add_flags(CLI::App& app, TrainConfig& c) {
  app.option_defaults()->always_capture_default();

  app.add_option("--model", c.model, "architecture: " + join_choices(model_names()));
  app.add_option("--num-classes", c.num_classes, "output classes (0: the dataset's, 10 or 100)");
  app.add_flag("--imagenet-stem", c.imagenet_stem,
               "ResNet-18..152: 7x7/2 conv + max-pool stem instead of the CIFAR 3x3 stem");
  app.add_flag("--zero-init-residual", c.zero_init_residual,
               "ResNets: start the last BN of each block at 0 (torchvision's option)");
  app.add_option("--dropout", c.dropout, "AlexNet classifier dropout probability");

  app.add_option("--data", c.data,
                 "dataset directory (default: ../shared/data/cifar-10-batches-bin, or "
                 "../shared/data/cifar-100-binary for cifar100, when it exists)");
  app.add_option("--dataset", c.dataset, "dataset: " + join_choices(dataset_names()));
  app.add_option("--subset", c.subset, "train on the first N training images (0: all)");
  app.add_option("--test-subset", c.test_subset, "evaluate on the first N test images (0: all)");
  app.add_flag("--augment,!--no-augment", c.augment,
               "random crop (pad 4) + horizontal flip of training images (default on)");
  app.add_option("--cutout", c.cutout, "cutout square side in pixels (0: off)");

  app.add_option("--epochs", c.epochs, "number of epochs to train");
  app.add_option("--batch-size,-b", c.batch_size, "images per step");
  app.add_option("--optimizer", c.optimizer, "optimizer: " + join_choices(optimizer_names()));
  app.add_option("--lr", c.lr, "base learning rate");
  app.add_option("--momentum", c.momentum, "SGD momentum");
  app.add_option("--wd,--weight-decay", c.weight_decay, "weight decay (L2; decoupled for adamw)");
  app.add_flag("--nesterov", c.nesterov, "Nesterov momentum (sgd)");
  app.add_option("--schedule", c.schedule,
                 "learning-rate schedule: " + join_choices(schedule_names()));
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
  app.add_option("--kernels", c.kernels,
                 "CUDA implementation: " + join_choices(kernel_path_names()));
  app.add_option("--cpu-kernels", c.cpu_kernels,
                 "CPU implementation: " + join_choices(cpu_kernels_names()) + " (default: first)")
      ->check(CLI::IsMember(cpu_kernels_names()));
  app.add_flag("--tf32", c.tf32, "let cuBLAS use TF32 tensor cores for float32 products");
  app.add_option("--seed", c.seed, "seed for initialisation, shuffling and augmentation");
  app.add_option("--print-freq,-p", c.print_freq, "steps between progress updates");

  app.add_option("--out", c.out,
                 "run directory (default: runs/<model>-<timestamp>; with --resume: "
                 "the checkpoint's directory)");
  app.add_option("--resume", c.resume, "continue training from this checkpoint");
  app.add_option("--checkpoint", c.checkpoint, "with --evaluate: the checkpoint to evaluate");
  app.add_flag("--evaluate,-e", c.evaluate,
               "evaluate the checkpoint on the test set (loss, accuracy, per-class accuracy, "
               "confusion matrix); no training");
}

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

std::string train_help() {
  TrainConfig c;
  CLI::App app(kDescription, "train");
  add_flags(app, c);
  return app.help();
}

TrainConfig parse_train_args(int argc, const char* const* argv) {
  TrainConfig c;
  CLI::App app(kDescription, "train");
  add_flags(app, c);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    throw HelpRequested{app.help()};
  } catch (const CLI::ParseError& e) {
    throw UsageError(str(e.what(), " (train --help lists every flag)"));
  }

  c.command = shell_command(argc, argv);
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->count() > 0 && !opt->get_lnames().empty()) c.given.push_back(opt->get_lnames()[0]);
  }
  if (c.data.empty()) {
    const std::filesystem::path d =
        std::filesystem::path("..") / "shared" / "data" / dataset_default_dir(c.dataset);
    if (std::filesystem::is_directory(d)) c.data = d.string();
  }
  const bool from_checkpoint = !c.resume.empty() || !c.checkpoint.empty();
  validate(c, /*check_data=*/!from_checkpoint);
  return c;
}

}  // namespace minidl

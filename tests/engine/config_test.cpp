#include "engine/config.h"

#include <catch2/catch.hpp>

#include "engine_test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// A configuration with every field away from its default.
TrainConfig unusual_config() {
  TrainConfig c;
  c.model = "resnet56";
  c.num_classes = 100;
  c.imagenet_stem = true;
  c.zero_init_residual = true;
  c.dropout = 0.3;
  c.data = "/data/cifar-100-binary";
  c.dataset = "cifar100";
  c.subset = 1234;
  c.test_subset = 567;
  c.val_split = 89;
  c.augment = false;
  c.cutout = 16;
  c.shuffle = false;
  c.norm_mean = {0.4914f, 0.48216f, 1.0f / 3.0f};  // floats that decimal text must keep exactly
  c.norm_std = {0.2470f, 0.2435f, 0.2616f};
  c.epochs = 90;
  c.batch_size = 256;
  c.optimizer = "adagrad";
  c.lr = 0.0123456789;
  c.momentum = 0.5;
  c.weight_decay = 1.5e-4;
  c.nesterov = true;
  c.schedule = "cosine";
  c.step_size = 7;
  c.gamma = 0.1;
  c.milestones = {10, 20, 40};
  c.warmup = 2.5;
  c.label_smoothing = 0.05;
  c.device = "cuda:3";
  c.kernels = "handwritten";
  c.tf32 = true;
  c.precision = "bf16";
  c.channels_last = true;
  c.seed = 0xFFFFFFFFFFFFull;  // beyond 32 bits
  c.print_freq = 3;
  c.deterministic = true;
  c.out = "runs/x";
  c.resume = "runs/y/last.safetensors";
  c.checkpoint = "runs/y/best.safetensors";
  c.evaluate = true;
  c.overwrite = true;
  c.max_steps = 17;
  c.save_init = true;
  c.dump_logits = "logits.safetensors";
  c.seeds = 4;
  c.command = "train --model resnet56 'a b'";
  return c;
}

}  // namespace

TEST_CASE("train config: JSON round trip keeps every field", "[engine][config]") {
  const TrainConfig c = unusual_config();
  const nlohmann::json j = to_json(c);
  CHECK(j.at("batch-size") == 256);  // keys are the flag names
  CHECK(j.at("wd") == 1.5e-4);
  CHECK(config_from_json(j) == c);
  // Through text too (what config.json and checkpoints store).
  CHECK(config_from_json(nlohmann::json::parse(j.dump(2))) == c);
  // Missing keys keep their defaults.
  CHECK(config_from_json(nlohmann::json::object()) == TrainConfig{});
}

TEST_CASE("train config: a key of the wrong type is named", "[engine][config][errors]") {
  nlohmann::json j = to_json(TrainConfig{});
  j["epochs"] = "ten";
  REQUIRE_THROWS_WITH(config_from_json(j), Catch::Contains("'epochs'") && Catch::Contains("ten"));
  REQUIRE_THROWS_WITH(config_from_json(nlohmann::json::array()), Catch::Contains("JSON object"));
}

TEST_CASE("train config: --resume takes the checkpoint's settings except the flags given",
          "[engine][config]") {
  const auto data = scratch_dir("config_merge");
  TrainConfig saved = unusual_config();
  saved.resume = saved.checkpoint = "";
  saved.evaluate = false;
  const TrainConfig cli = parse_args(
      {"--resume", "ckpt.safetensors", "--epochs", "120", "--no-augment", "--data", data.string()});
  const TrainConfig m = merge_resumed(saved, cli);
  CHECK(m.epochs == 120);          // given
  CHECK(m.data == data.string());  // given
  CHECK_FALSE(m.augment);          // given as --no-augment
  CHECK(m.model == "resnet56");    // from the checkpoint, although the command line has a default
  CHECK(m.lr == saved.lr);
  CHECK(m.milestones == saved.milestones);
  CHECK(m.seed == saved.seed);
  CHECK(m.resume == "ckpt.safetensors");  // never from the checkpoint
  CHECK(m.out.empty());
  CHECK(m.command == cli.command);
  // The run's data settings come from the checkpoint, normalisation constants included.
  CHECK(m.val_split == saved.val_split);
  CHECK(m.norm_mean == saved.norm_mean);
  CHECK(m.norm_std == saved.norm_std);
  CHECK_FALSE(m.shuffle);
  CHECK(m.deterministic);
  CHECK(m.channels_last);  // the run's layout, as its precision
  CHECK(m.precision == "bf16");
  // Controls of one invocation are not inherited: a run stopped by --max-steps 17 resumes fully.
  CHECK(m.max_steps == 0);
  CHECK_FALSE(m.overwrite);
  CHECK_FALSE(m.save_init);
  CHECK(m.dump_logits.empty());
  CHECK(m.seeds == 1);
}

TEST_CASE("train config: --channels-last and --no-channels-last, in config.json and on --resume",
          "[engine][config][channels_last]") {
  const auto data = scratch_dir("config_cl");
  CHECK_FALSE(parse_args({"--data", data.string()}).channels_last);  // off by default
  const TrainConfig on = parse_args({"--channels-last", "--data", data.string()});
  CHECK(on.channels_last);
  CHECK(to_json(on).at("channels-last") == true);
  CHECK(config_from_json(to_json(on)).channels_last);
  // A checkpoint of a channels-last run resumes channels-last; --no-channels-last turns it off
  // (the weights are the same in both layouts), --channels-last turns it on for an NCHW run.
  CHECK(merge_resumed(on, parse_args({"--resume", "c.safetensors"})).channels_last);
  CHECK_FALSE(merge_resumed(on, parse_args({"--resume", "c.safetensors", "--no-channels-last"}))
                  .channels_last);
  TrainConfig off = on;
  off.channels_last = false;
  CHECK(merge_resumed(off, parse_args({"--evaluate", "--checkpoint", "c.safetensors",
                                       "--channels-last"}))
            .channels_last);
  // --channels-last applies to every run it can be given to (kFlagScopes has no row for it):
  // training and --evaluate, on either device.
  for (const bool cuda : {false, true}) {
    CHECK_NOTHROW(check_flags_apply(on, RunPlace{cuda, 1}));
    CHECK_NOTHROW(check_flags_apply(
        parse_args({"--evaluate", "--checkpoint", "c.safetensors", "--channels-last"}),
        RunPlace{cuda, 1}));
  }
  CHECK_THAT(train_help(), Catch::Contains("--channels-last,--no-channels-last"));
}

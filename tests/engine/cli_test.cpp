#include "engine/cli.h"

#include <algorithm>
#include <catch2/catch.hpp>

#include "engine_test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

bool given(const TrainConfig& c, const std::string& flag) {
  return std::find(c.given.begin(), c.given.end(), flag) != c.given.end();
}

}  // namespace

TEST_CASE("train flags: defaults", "[engine][cli]") {
  const auto data = scratch_dir("cli_defaults");
  const TrainConfig c = parse_args({"--data", data.string()});
  TrainConfig expected;  // the struct's defaults are the documented defaults
  expected.data = data.string();
  expected.command = "train --data " + data.string();
  expected.given = {"data"};
  CHECK(c == expected);
  CHECK(c.model == "resnet18");
  CHECK(c.epochs == 30);
  CHECK(c.batch_size == 128);
  CHECK(c.lr == 0.1);
  CHECK(c.momentum == 0.9);
  CHECK(c.weight_decay == 5e-4);
  CHECK(c.optimizer == "sgd");
  CHECK(c.schedule == "step");
  CHECK(c.device == "auto");
  CHECK(c.kernels == "cudnn");
  CHECK(c.augment);
  CHECK(c.print_freq == 10);
  CHECK(c.out.empty());
}

TEST_CASE("train flags: every flag is parsed into its field", "[engine][cli]") {
  const auto data = scratch_dir("cli_every");
  const TrainConfig c = parse_args({
      "--model",
      "resnet50",
      "--num-classes",
      "12",
      "--imagenet-stem",
      "--zero-init-residual",
      "--dropout",
      "0.25",
      "--data",
      data.string(),
      "--dataset",
      "cifar10",
      "--subset",
      "500",
      "--test-subset",
      "300",
      "--cutout",
      "8",
      "--epochs",
      "7",
      "--batch-size",
      "32",
      "--optimizer",
      "sgd",
      "--lr",
      "0.02",
      "--momentum",
      "0.8",
      "--wd",
      "1e-4",
      "--nesterov",
      "--schedule",
      "multistep",
      "--step-size",
      "3",
      "--gamma",
      "0.2",
      "--milestones",
      "2,5",
      "--warmup",
      "1.5",
      "--label-smoothing",
      "0.1",
      "--device",
      "cuda:1",
      "--kernels",
      "cublas",
      "--tf32",
      "--seed",
      "42",
      "--print-freq",
      "5",
      "--out",
      "my runs/x",
  });
  CHECK(c.model == "resnet50");
  CHECK(c.num_classes == 12);
  CHECK(c.imagenet_stem);
  CHECK(c.zero_init_residual);
  CHECK(c.dropout == 0.25);
  CHECK(c.data == data.string());
  CHECK(c.subset == 500);
  CHECK(c.test_subset == 300);
  CHECK(c.augment);
  CHECK(c.cutout == 8);
  CHECK(c.epochs == 7);
  CHECK(c.batch_size == 32);
  CHECK(c.lr == 0.02);
  CHECK(c.momentum == 0.8);
  CHECK(c.weight_decay == 1e-4);
  CHECK(c.nesterov);
  CHECK(c.schedule == "multistep");
  CHECK(c.step_size == 3);
  CHECK(c.gamma == 0.2);
  CHECK(c.milestones == std::vector<int>{2, 5});
  CHECK(c.warmup == 1.5);
  CHECK(c.label_smoothing == 0.1);
  CHECK(c.device == "cuda:1");
  CHECK(c.kernels == "cublas");
  CHECK(c.tf32);
  CHECK(c.seed == 42);
  CHECK(c.print_freq == 5);
  CHECK(c.out == "my runs/x");
  CHECK(c.given.size() == 29);
  CHECK(given(c, "wd"));
  CHECK(given(c, "milestones"));
  // The command is recorded as typed, quoted where a shell needs it.
  CHECK_THAT(c.command,
             Catch::Contains("--out 'my runs/x'") && Catch::StartsWith("train --model resnet50"));

  const TrainConfig h = parse_args({"--data", data.string(), "--subset", "100", "--val-split",
                                    "20", "--no-shuffle", "--deterministic", "--overwrite",
                                    "--max-steps", "3", "--save-init", "--seeds", "2"});
  CHECK(h.val_split == 20);
  CHECK_FALSE(h.shuffle);
  CHECK(h.deterministic);
  CHECK(h.overwrite);
  CHECK(h.max_steps == 3);
  CHECK(h.save_init);
  CHECK(h.seeds == 2);
  const TrainConfig e2 = parse_args({"--evaluate", "--checkpoint", "b.safetensors",
                                     "--dump-logits", "l.safetensors"});
  CHECK(e2.dump_logits == "l.safetensors");
  for (const auto& bad : std::vector<std::vector<std::string>>{
           {"--max-steps", "-1"}, {"--seeds", "0"}, {"--val-split", "-5"}}) {
    std::vector<std::string> args{"--data", data.string()};
    args.insert(args.end(), bad.begin(), bad.end());
    REQUIRE_THROWS_WITH(parse_args(args), Catch::Contains(bad[0] + " " + bad[1]));
  }
  REQUIRE_THROWS_WITH(parse_args({"--data", data.string(), "--seeds", "2", "--resume", "x"}),
                      Catch::Contains("--seeds"));

  const TrainConfig d = parse_args({"--data", data.string(), "--no-augment", "--optimizer", "adamw",
                                    "--weight-decay", "0.05", "--resume", "r.safetensors"});
  CHECK_FALSE(d.augment);
  CHECK(given(d, "augment"));
  CHECK(d.optimizer == "adamw");
  CHECK(d.weight_decay == 0.05);
  CHECK(d.resume == "r.safetensors");

  const TrainConfig e = parse_args({"--evaluate", "--checkpoint", "best.safetensors"});
  CHECK(e.evaluate);
  CHECK(e.checkpoint == "best.safetensors");
}

TEST_CASE("train flags: unknown flags and bad values are usage errors naming what is allowed",
          "[engine][cli][errors]") {
  const auto data = scratch_dir("cli_errors");
  const std::string d = data.string();
  REQUIRE_THROWS_AS(parse_args({"--data", d, "--bogus"}), UsageError);
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--bogus"}),
                      Catch::Contains("--bogus") && Catch::Contains("--help"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--model", "resnet19"}),
                      Catch::Contains("resnet19") && Catch::Contains("resnet20") &&
                          Catch::Contains("alexnet") && Catch::Contains("plain"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--optimizer", "foo"}),
                      Catch::Contains("foo") && Catch::Contains("sgd, adam, adamw or adagrad"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--schedule", "linear"}),
                      Catch::Contains("step, multistep, cosine or constant"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--kernels", "fast"}),
                      Catch::Contains("handwritten, cublas or cudnn"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--dataset", "mnist"}),
                      Catch::Contains("cifar10, cifar100 or folder"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--device", "gpu"}),
                      Catch::Contains("cpu, cuda or cuda:N"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--lr", "-1"}),
                      Catch::Contains("--lr -1") && Catch::Contains("positive"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--lr", "abc"}), Catch::Contains("--lr"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--batch-size", "0"}),
                      Catch::Contains("--batch-size 0"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--epochs", "0"}), Catch::Contains("--epochs 0"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--momentum", "1"}),
                      Catch::Contains("--momentum 1"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--gamma", "2"}), Catch::Contains("--gamma 2"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--print-freq", "0"}),
                      Catch::Contains("--print-freq 0"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--label-smoothing", "1"}),
                      Catch::Contains("--label-smoothing 1"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--cutout", "40"}), Catch::Contains("--cutout 40"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--cutout", "8", "--no-augment"}),
                      Catch::Contains("--no-augment"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--num-classes", "5"}),
                      Catch::Contains("at least 10"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--model", "resnet20", "--imagenet-stem"}),
                      Catch::Contains("--imagenet-stem") && Catch::Contains("resnet20"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--optimizer", "adam", "--nesterov"}),
                      Catch::Contains("--nesterov"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--schedule", "multistep"}),
                      Catch::Contains("--milestones"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--schedule", "multistep", "--milestones", "5,3"}),
                      Catch::Contains("increasing"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--evaluate"}), Catch::Contains("--checkpoint"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--checkpoint", "x.safetensors"}),
                      Catch::Contains("--resume"));
}

TEST_CASE("train flags: a bad --data path is named, a missing one is required",
          "[engine][cli][errors]") {
  REQUIRE_THROWS_WITH(parse_args({"--data", "/no/such/cifar"}),
                      Catch::Contains("/no/such/cifar") && Catch::Contains("no such directory"));
  TrainConfig c;  // what parse_train_args leaves when ../shared/data does not exist
  REQUIRE_THROWS_WITH(validate(c), Catch::Contains("--data is required") &&
                                       Catch::Contains("cifar-10-batches-bin"));
  c.dataset = "cifar100";
  REQUIRE_THROWS_WITH(validate(c), Catch::Contains("cifar-100-binary"));
}

TEST_CASE("train --help lists every flag with its default", "[engine][cli]") {
  const std::string help = train_help();
  for (const char* flag : {"--model",
                           "--num-classes",
                           "--imagenet-stem",
                           "--zero-init-residual",
                           "--dropout",
                           "--data",
                           "--dataset",
                           "--subset",
                           "--test-subset",
                           "--augment",
                           "--no-augment",
                           "--cutout",
                           "--epochs",
                           "--batch-size",
                           "--optimizer",
                           "--lr",
                           "--momentum",
                           "--wd",
                           "--nesterov",
                           "--schedule",
                           "--step-size",
                           "--gamma",
                           "--milestones",
                           "--warmup",
                           "--label-smoothing",
                           "--device",
                           "--kernels",
                           "--tf32",
                           "--seed",
                           "--print-freq",
                           "--out",
                           "--resume",
                           "--checkpoint",
                           "--evaluate",
                           "--val-split",
                           "--shuffle",
                           "--no-shuffle",
                           "--deterministic",
                           "--overwrite",
                           "--max-steps",
                           "--save-init",
                           "--dump-logits",
                           "--seeds"}) {
    INFO(flag);
    CHECK_THAT(help, Catch::Contains(flag));
  }
  for (const char* dflt :
       {"--model TEXT=resnet18", "--epochs INT=30", "--lr FLOAT=0.1", "--batch-size INT=128",
        "--kernels TEXT=cudnn", "--device TEXT=auto", "--print-freq INT=10"}) {
    INFO(dflt);
    CHECK_THAT(help, Catch::Contains(dflt));
  }
  const char* argv[] = {"train", "--help"};
  REQUIRE_THROWS_AS(parse_train_args(2, argv), HelpRequested);
}

TEST_CASE("shell_command quotes what a shell would split", "[engine][cli]") {
  const char* argv[] = {"train", "--out", "a b", "--data", "it's", "--lr", "0.1"};
  CHECK(shell_command(7, argv) == "train --out 'a b' --data 'it'\\''s' --lr 0.1");
}

// Issue 16, round 3: --quiet on a terminal (no evaluation progress bars either) and the rule for
// flags that do not apply (kFlagScopes, engine/config.cpp) for the flags added since it was
// written: the folder dataset's, the loader's threads, the data-parallel ones, and those
// --evaluate does not read.
#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>

#include "engine/config.h"
#include "engine/trainer.h"
#include "engine_test_util.h"

using namespace minidl;
using namespace minidl::test;
namespace fs = std::filesystem;

TEST_CASE("quiet: no progress bars on a terminal with --quiet, in training or evaluation",
          "[engine][hygiene3][quiet]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h3_quiet");
  TrainHooks terminal;
  terminal.terminal = true;  // what a terminal would be shown
  // On a terminal a bar is redrawn with '\r'; the training, validation and test passes have one.
  std::ostringstream loud;
  run_train(parse_args(plus(tiny(data, dir / "a"), {"--val-split", "32"})), loud, terminal);
  CHECK_THAT(loud.str(), Catch::Contains("\rtest [") && Catch::Contains("\rvalidation [") &&
                             Catch::Contains("\repoch 1/1 ["));
  std::ostringstream quiet;
  run_train(parse_args(plus(tiny(data, dir / "b"), {"--val-split", "32", "--quiet"})), quiet,
            terminal);
  CHECK(quiet.str().find('\r') == std::string::npos);
  CHECK_THAT(quiet.str(), Catch::Contains("best "));  // the result is still printed

  const std::string ckpt = (dir / "a" / "last.safetensors").string();
  std::ostringstream eval_loud, eval_quiet;
  run_train(parse_args({"--evaluate", "--checkpoint", ckpt, "--out", (dir / "e1").string()}),
            eval_loud, terminal);
  CHECK_THAT(eval_loud.str(), Catch::Contains("\revaluating ["));
  run_train(
      parse_args({"--evaluate", "--checkpoint", ckpt, "--out", (dir / "e2").string(), "--quiet"}),
      eval_quiet, terminal);
  CHECK(eval_quiet.str().find('\r') == std::string::npos);
  CHECK_THAT(eval_quiet.str(), Catch::Contains("accuracy"));
  fs::remove_all(dir);
}

namespace {

// The message check_flags_apply gives for a command line at `place` ("" when every flag applies).
std::string scope_error(const std::vector<std::string>& args, RunPlace place = {}) {
  const TrainConfig c = parse_args(args);  // a parse error fails the test
  try {
    check_flags_apply(c, place);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("flags that would have no effect are usage errors: the newer flags' rows",
          "[engine][hygiene3][flags]") {
  const std::vector<std::string> cifar{"--data", "."};
  const RunPlace cpu{false, 1}, gpu{true, 1}, two_cpu{false, 2};
  auto with = [&](std::vector<std::string> extra) { return plus(cifar, extra); };

  // The folder dataset's flags with the CIFAR binaries: --image-size other than 32 is refused by
  // validate() already (parse_args), 32 by the table.
  CHECK_THROWS_WITH(parse_args(with({"--image-size", "64"})),
                    Catch::Contains("--image-size 64 applies to --dataset folder"));
  CHECK_THAT(scope_error(with({"--image-size", "32"})),
             Catch::Contains("--image-size: it sizes the images of --dataset folder"));
  CHECK_THAT(scope_error(with({"--bad-images", "skip"})),
             Catch::Contains("--bad-images: it is about image files of --dataset folder"));
  CHECK(scope_error({"--dataset", "folder", "--data", ".", "--image-size", "64", "--bad-images",
                     "skip", "-j", "2"},
                    gpu)
            .empty());

  // Loader threads: on the CPU (any dataset) and for a folder on any device; not for CIFAR on a
  // GPU, where the device augments and no thread runs.
  CHECK(scope_error(with({"--workers", "3"}), cpu).empty());
  CHECK_THAT(
      scope_error(with({"-j", "3"}), gpu),
      Catch::Contains("--workers: on a GPU the cifar10 batches are augmented by the device"));

  // Data-parallel flags need several ranks; --sync-bn also a model with BatchNorm.
  for (const char* flag : {"--sync-bn", "--no-overlap", "--overlap"}) {
    INFO(flag);
    CHECK_THAT(scope_error(with({flag}), cpu), Catch::Contains("this run is one process"));
    CHECK(scope_error(with({flag}), two_cpu).empty());
  }
  CHECK_THAT(scope_error(with({"--bucket-mb", "5"}), cpu), Catch::Contains("one process"));
  CHECK(scope_error(with({"--bucket-mb", "5"}), two_cpu).empty());
  CHECK_THAT(scope_error(with({"--dist-timeout", "10"}), cpu), Catch::Contains("one process"));
  CHECK(scope_error(with({"--dist-timeout", "10"}), two_cpu).empty());
  CHECK_THAT(scope_error(with({"--sync-bn", "--model", "alexnet"}), two_cpu),
             Catch::Contains("--sync-bn: --model alexnet has no BatchNorm"));
  CHECK(scope_error(with({"--sync-bn", "--model", "plain"}), two_cpu).empty());

  // What --evaluate does not read; each flag named once, for its first reason.
  const std::vector<std::string> eval{"--evaluate", "--checkpoint", "x.safetensors", "--data", "."};
  for (const std::vector<std::string>& extra :
       std::vector<std::vector<std::string>>{{"--seed", "3"},
                                             {"--precision", "bf16"},
                                             {"--print-freq", "5"},
                                             {"--trace-steps", "2"},
                                             {"--tensorboard"},
                                             {"--sync-bn"},
                                             {"--bucket-mb", "5"}}) {
    INFO(extra[0]);
    const std::string e = scope_error(plus(eval, extra), two_cpu);
    CHECK_THAT(e, Catch::Contains(extra[0] + ": it sets up training"));
    CHECK(e.find(extra[0] + ":") == e.rfind(extra[0] + ":"));  // once
  }
  const std::string both = scope_error(plus(eval, {"--sync-bn"}), cpu);
  CHECK(both.find("--sync-bn:") == both.rfind("--sync-bn:"));
  // Flags --evaluate reads are accepted with it.
  CHECK(scope_error(plus(eval, {"--batch-size", "7", "--test-subset", "9", "-j", "2",
                                "--label-smoothing", "0.1", "--deterministic", "--quiet"}))
            .empty());
  // A value the device may lack is not this rule's (the flag applies; its own check names the
  // device): --precision bf16 for training, on either device.
  CHECK(scope_error(with({"--precision", "bf16"}), cpu).empty());
  CHECK(scope_error(with({"--precision", "fp16"}), gpu).empty());
}

TEST_CASE("a flag that does not apply exits 2 before anything runs", "[engine][hygiene3][flags]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h3_exit");
  for (const std::vector<std::string>& extra : std::vector<std::vector<std::string>>{
           {"--image-size", "32"}, {"--bad-images", "skip"}, {"--sync-bn"}, {"--bucket-mb", "1"}}) {
    INFO(extra[0]);
    const Outcome o = run_main(plus(tiny(data, dir / "run"), extra));
    CHECK(o.code == 2);
    CHECK_THAT(o.err, Catch::Contains(extra[0] + ":") && Catch::Contains("remove it"));
    CHECK(o.out.empty());
    CHECK_FALSE(fs::exists(dir / "run"));
  }
  fs::remove_all(dir);
}

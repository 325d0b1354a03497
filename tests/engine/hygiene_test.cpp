// Training-run hygiene (issue 10), each behaviour on tiny CPU runs with the real CIFAR-10 files:
// an existing run is not overwritten, a NaN test loss stops the run and is never "best", the
// normalisation constants travel with the checkpoint, --val-split chooses the best epoch,
// single-step control (--max-steps, --no-shuffle, --save-init, --dump-logits), SIGTERM,
// --deterministic, --seeds, and what the program prints and returns (train_main). Skipped where
// the data is absent.
#include <algorithm>
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../support/test_util.h"
#include "core/device.h"
#include "data/cifar.h"
#include "data/loader.h"
#include "engine/app.h"
#include "engine/progress.h"
#include "engine/trainer.h"
#include "engine_test_util.h"
#include "io/safetensors.h"
#include "layers/loss.h"
#include "models/models.h"

using namespace minidl;
using namespace minidl::test;
namespace fs = std::filesystem;
using nlohmann::json;

TEST_CASE("train refuses to write over an existing run unless --overwrite",
          "[engine][hygiene][overwrite][cifar]") {
  REQUIRE_CIFAR(data);
  std::ostringstream log;
  const fs::path dir = scratch_dir("overwrite");
  run_train(parse_args(tiny(data, dir)), log);
  const std::string metrics = read_text(dir / "metrics.csv");
  const std::string last = read_text(dir / "last.safetensors");

  // The same command again (say with another lr): refused, naming --out and the ways out.
  REQUIRE_THROWS_AS(run_train(parse_args(plus(tiny(data, dir), {"--seed", "1"})), log), UsageError);
  REQUIRE_THROWS_WITH(run_train(parse_args(plus(tiny(data, dir), {"--seed", "1"})), log),
                      Catch::Contains("--out " + dir.string()) &&
                          Catch::Contains("metrics.csv") && Catch::Contains("--overwrite") &&
                          Catch::Contains("--resume " + (dir / "last.safetensors").string()));
  CHECK(read_text(dir / "metrics.csv") == metrics);
  CHECK(read_text(dir / "last.safetensors") == last);

  // An evaluation into the run's directory would replace its report: refused too.
  REQUIRE_THROWS_WITH(run_train(parse_args({"--evaluate", "--checkpoint",
                                            (dir / "last.safetensors").string(), "--out",
                                            dir.string()}),
                                log),
                      Catch::Contains("report.html") && Catch::Contains("--overwrite"));

  // --overwrite replaces the run: a fresh command.txt, new checkpoints.
  const RunResult r =
      run_train(parse_args(plus(tiny(data, dir), {"--seed", "1", "--overwrite"})), log);
  CHECK(r.status == RunStatus::Finished);
  CHECK(read_text(dir / "last.safetensors") != last);
  const std::string commands = read_text(dir / "command.txt");
  CHECK(std::count(commands.begin(), commands.end(), '\n') == 1);
  CHECK_THAT(log.str(), Catch::Contains("--overwrite: removed"));

  // --resume continues in the run's own directory: not an overwrite.
  CHECK_NOTHROW(run_train(
      parse_args({"--resume", (dir / "last.safetensors").string(), "--epochs", "2"}), log));
}

TEST_CASE("a NaN test loss stops the run and is never saved or marked best",
          "[engine][hygiene][nan][cifar]") {
  REQUIRE_CIFAR(data);
  std::ostringstream log;
  const fs::path dir = scratch_dir("nan_test_loss");
  TrainHooks hooks;
  // The training losses of epoch 2 are finite; then one weight goes NaN before the evaluation
  // (what an lr that explodes in the last step does), so only the test loss shows it.
  int calls = 0;
  hooks.before_evaluation = [&calls](Module& m) {
    if (++calls == 2) {
      Tensor& w = m.named_parameters().back().param->value;  // the classifier bias
      w.copy_(Tensor::full(w.shape(), std::nan(""), w.dtype()));
    }
  };
  REQUIRE_THROWS_WITH(run_train(parse_args(tiny(data, dir, 3)), log, hooks),
                      Catch::Contains("test loss is nan after epoch 2") &&
                          Catch::Contains("last good state (epoch 1)"));
  const std::vector<EpochMetrics> rows = read_metrics_csv((dir / "metrics.csv").string());
  REQUIRE(rows.size() == 1);  // no NaN row
  CHECK_THAT(read_text(dir / "metrics.csv"), !Catch::Contains("nan"));
  CHECK(load_safetensors((dir / "best.safetensors").string()).metadata.at("epoch") == "1");
  CHECK(load_safetensors((dir / "last.safetensors").string()).metadata.at("epoch") == "1");
  CHECK_THAT(read_text(dir / "report.html"), Catch::Contains("stopped: test loss is nan"));
}

TEST_CASE("the normalisation constants are stored with the run and reused by --evaluate",
          "[engine][hygiene][norm][cifar]") {
  REQUIRE_CIFAR(data);
  std::ostringstream log;
  const fs::path dir = scratch_dir("norm");
  run_train(parse_args(tiny(data, dir)), log);
  const json config = json::parse(read_text(dir / "config.json"));
  const json saved = checkpoint_run(dir / "last.safetensors").at("config");
  REQUIRE(config.at("norm-mean").size() == 3);
  CHECK(config.at("norm-mean") == saved.at("norm-mean"));
  CHECK(config.at("norm-std") == saved.at("norm-std"));
  const float mean0 = config.at("norm-mean")[0].get<float>();
  // Printed at full precision: the shortest text that reads back as the stored float.
  CHECK_THAT(log.str(), Catch::Contains(fmt::format("mean ({}, ", mean0)));

  // An evaluation uses the stored constants; --subset (which used to change them) does not apply
  // to it and is refused (issue 16: a flag that does not apply is an error).
  const std::string ckpt = (dir / "last.safetensors").string();
  std::ostringstream log2;
  const RunResult a = run_train(
      parse_args({"--evaluate", "--checkpoint", ckpt, "--out", scratch_dir("norm_a").string()}),
      log2);
  CHECK(a.status == RunStatus::Evaluated);
  CHECK_THROWS_AS(run_train(parse_args({"--evaluate", "--checkpoint", ckpt, "--subset", "64",
                                        "--out", scratch_dir("norm_b").string()}),
                            log2),
                  UsageError);
  CHECK_THAT(log2.str(), Catch::Contains("normalisation (stored in the checkpoint)"));

  // A checkpoint from before the constants were stored still evaluates, computing them as then.
  SafetensorsFile f = load_safetensors(ckpt);
  json run = json::parse(f.metadata.at("config_json"));
  run["config"].erase("norm-mean");
  run["config"].erase("norm-std");
  f.metadata["config_json"] = run.dump();
  const std::string old = (scratch_dir("norm_old") / "old.safetensors").string();
  save_safetensors(old, f.tensors, f.metadata, f.read_as_i64);
  std::ostringstream log3;
  const RunResult c = run_train(
      parse_args({"--evaluate", "--checkpoint", old, "--out", scratch_dir("norm_c").string()}),
      log3);
  CHECK(c.last_eval.loss == a.last_eval.loss);  // same 128 training images, same constants
  CHECK_THAT(log3.str(), Catch::Contains("predates stored constants"));
}

TEST_CASE("train with --val-split holds out training images and chooses the best epoch on them",
          "[engine][hygiene][val][cifar]") {
  REQUIRE_CIFAR(data);
  std::ostringstream log;
  const fs::path dir = scratch_dir("val");
  TrainHooks hooks;
  int64_t max_index = -1;
  hooks.on_batch = [&](int64_t, int64_t, const std::vector<int32_t>& idx) {
    for (int32_t i : idx) max_index = std::max<int64_t>(max_index, i);
  };
  const RunResult r = run_train(
      parse_args(plus(tiny(data, dir, 3), {"--val-split", "32"})), log, hooks);
  INFO(log.str());
  CHECK(max_index == 95);  // images 96..127 are the validation set: never trained on
  CHECK_THAT(log.str(), Catch::Contains("96 training / 32 validation"));
  REQUIRE(r.history.size() == 3);
  CHECK(r.best_on_val);
  int64_t best = 0;
  for (size_t e = 0; e < r.history.size(); ++e) {
    CHECK(r.history[e].has_val);
    if (r.history[e].val_acc > r.history[static_cast<size_t>(best)].val_acc)
      best = static_cast<int64_t>(e);
  }
  CHECK(r.best_epoch == best + 1);
  CHECK(r.best_accuracy == r.history[static_cast<size_t>(best)].val_acc);
  const auto meta = load_safetensors((dir / "best.safetensors").string()).metadata;
  CHECK(meta.at("epoch") == std::to_string(best + 1));
  CHECK(read_metrics_csv((dir / "metrics.csv").string()) == r.history);
  CHECK_THAT(log.str(), Catch::Contains("best validation accuracy") &&
                            Catch::Contains("test accuracy") && Catch::Contains("    val     acc"));
  REQUIRE_THROWS_WITH(parse_args(plus(tiny(data, dir), {"--val-split", "128"})),
                      Catch::Contains("--val-split 128"));
}

TEST_CASE("single steps: --max-steps, --no-shuffle, --save-init",
          "[engine][hygiene][steps][cifar]") {
  REQUIRE_CIFAR(data);
  std::ostringstream log;
  const fs::path dir = scratch_dir("steps");
  std::vector<std::vector<int32_t>> batches;
  TrainHooks hooks;
  hooks.on_batch = [&](int64_t, int64_t, const std::vector<int32_t>& idx) {
    batches.push_back(idx);
  };
  const RunResult r = run_train(
      parse_args(plus(tiny(data, dir, 2), {"--max-steps", "1", "--no-shuffle", "--save-init"})),
      log, hooks);
  INFO(log.str());
  CHECK(r.status == RunStatus::Finished);
  REQUIRE(batches.size() == 1);  // one step
  std::vector<int32_t> first(32);
  for (int32_t i = 0; i < 32; ++i) first[static_cast<size_t>(i)] = i;
  CHECK(batches[0] == first);  // in file order
  CHECK_THAT(log.str(), Catch::Contains("stopped after --max-steps 1 (epoch 1, step 1/4)"));

  const SafetensorsFile init = load_safetensors((dir / "init.safetensors").string());
  const SafetensorsFile last = load_safetensors((dir / "last.safetensors").string());
  CHECK(init.metadata.at("global_step") == "0");
  CHECK(last.metadata.at("global_step") == "1");
  CHECK(json::parse(last.metadata.at("config_json")).at("step_in_epoch") == 1);
  REQUIRE(init.find("features.0.weight") != nullptr);
  CHECK(init.find("features.0.weight")->to_vector<float>() !=
        last.find("features.0.weight")->to_vector<float>());

  // Shuffled (the default), the first batch is not the file order.
  batches.clear();
  run_train(parse_args(plus(tiny(data, scratch_dir("steps_shuffled"), 1), {"--max-steps", "1"})),
            log, hooks);
  REQUIRE(batches.size() == 1);
  CHECK(batches[0] != first);

  // --resume continues from step 2 (--max-steps is not inherited), in file order.
  batches.clear();
  const RunResult c = run_train(parse_args({"--resume", (dir / "last.safetensors").string()}),
                                log, hooks);
  CHECK(c.history.size() == 2);
  REQUIRE(batches.size() == 7);
  CHECK(batches[0].front() == 32);
}

TEST_CASE("train --evaluate --dump-logits writes all logits and eval.json the predictions",
          "[engine][hygiene][dump][cifar]") {
  REQUIRE_CIFAR(data);
  std::ostringstream log;
  const fs::path dir = scratch_dir("dump");
  run_train(parse_args(tiny(data, dir)), log);
  const fs::path e = scratch_dir("dump_eval");
  const std::string logits = (e / "logits.safetensors").string();
  const RunResult r =
      run_train(parse_args({"--evaluate", "--checkpoint", (dir / "last.safetensors").string(),
                            "--out", e.string(), "--dump-logits", logits}),
                log);
  const json ev = json::parse(read_text(e / "eval.json"));
  const std::vector<int32_t> preds = ev.at("predictions").get<std::vector<int32_t>>();
  const std::vector<int32_t> labels = ev.at("labels").get<std::vector<int32_t>>();
  REQUIRE(preds.size() == 128);
  int correct = 0;
  for (size_t i = 0; i < preds.size(); ++i) correct += preds[i] == labels[i];
  CHECK(100.0 * correct / 128 == ev.at("test_accuracy").get<double>());

  const SafetensorsFile f = load_safetensors(logits);
  REQUIRE(f.find("logits") != nullptr);
  CHECK(f.find("logits")->shape() == Shape{128, 10});
  const std::vector<float> l = f.find("logits")->to_vector<float>();
  for (size_t i = 0; i < 128; ++i) {
    const auto row = l.begin() + static_cast<std::ptrdiff_t>(i * 10);
    CHECK(std::max_element(row, row + 10) - row == preds[i]);
  }
  CHECK(f.find("labels")->to_vector<int32_t>() == labels);
  CHECK(r.last_eval.predictions == preds);
  REQUIRE_THROWS_WITH(parse_args({"--dump-logits", logits}), Catch::Contains("--evaluate"));
}

TEST_CASE("SIGTERM saves like Ctrl-C and a signal during evaluation says so",
          "[engine][hygiene][signals][cifar]") {
  REQUIRE_CIFAR(data);
  std::ostringstream log;
  const fs::path dir = scratch_dir("sigterm");
  TrainHooks hooks;
  hooks.after_step = [](int64_t epoch, int64_t step) {
    if (epoch == 1 && step == 2) std::raise(SIGTERM);
  };
  const RunResult r = run_train(parse_args(tiny(data, dir, 2)), log, hooks);
  CHECK(r.status == RunStatus::Interrupted);
  CHECK(r.stop_signal == SIGTERM);
  CHECK(fs::is_regular_file(dir / "last.safetensors"));
  CHECK_THAT(log.str(), Catch::Contains("interrupted (SIGTERM) in epoch 1 at step 2/4"));

  // Ctrl-C in the epoch's last step: the run evaluates, then stops, and says so at once.
  std::ostringstream log2;
  hooks.after_step = [](int64_t epoch, int64_t step) {
    if (epoch == 1 && step == 4) std::raise(SIGINT);
  };
  const RunResult r2 =
      run_train(parse_args(tiny(data, scratch_dir("sigint_eval"), 2)), log2, hooks);
  CHECK(r2.status == RunStatus::Interrupted);
  CHECK(r2.history.size() == 1);
  CHECK_THAT(log2.str(), Catch::Contains("Ctrl-C: stopping after evaluation") &&
                             Catch::Contains("interrupted (Ctrl-C) after epoch 1"));
}

TEST_CASE("train --deterministic: the same seed gives bit-identical metrics",
          "[engine][hygiene][deterministic][cifar]") {
  REQUIRE_CIFAR(data);
  std::ostringstream log;
  const std::vector<std::string> args{"--deterministic", "--seed", "3"};
  const RunResult a = run_train(
      parse_args(plus(tiny(data, scratch_dir("det_a"), 2), args)), log);
  const RunResult b = run_train(
      parse_args(plus(tiny(data, scratch_dir("det_b"), 2), args)), log);
  REQUIRE(a.history.size() == 2);
  for (size_t e = 0; e < 2; ++e) {
    CHECK(a.history[e].train_loss == b.history[e].train_loss);
    CHECK(a.history[e].test_loss == b.history[e].test_loss);
    CHECK(a.history[e].test_acc == b.history[e].test_acc);
  }
  CHECK_THAT(log.str(), Catch::Contains("deterministic: the CPU path"));
}

TEST_CASE("train --seeds runs the recipe with several seeds and reports mean +- std",
          "[engine][hygiene][seeds][cifar]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("seeds");
  const Outcome o = run_main(plus(tiny(data, dir), {"--seeds", "2", "--seed", "5"}));
  INFO(o.out << o.err);
  REQUIRE(o.code == 0);
  const json j = json::parse(read_text(dir / "seeds.json"));
  REQUIRE(j.at("runs").size() == 2);
  const double x = j.at("runs")[0].at("final_test_accuracy");
  const double y = j.at("runs")[1].at("final_test_accuracy");
  CHECK(j.at("runs")[1].at("seed") == 6);
  CHECK(j.at("final_test_accuracy").at("mean").get<double>() == Approx((x + y) / 2));
  CHECK(j.at("final_test_accuracy").at("std").get<double>() ==
        Approx(std::abs(x - y) / std::sqrt(2.0)).margin(1e-12));
  CHECK(read_metrics_csv((dir / "seed-5" / "metrics.csv").string()).back().test_acc == x);
  CHECK(fs::is_regular_file(dir / "seed-6" / "last.safetensors"));
  CHECK_THAT(o.out, Catch::Contains("2 seeds (5..6): final test accuracy"));
}

TEST_CASE("the progress line fits the terminal width", "[engine][hygiene][progress]") {
  std::ostringstream os;
  ProgressBar bar(os, /*tty=*/true, "epoch 12/100", 391, /*columns=*/80);
  const std::string stats = "loss 0.8123  acc  71.02%  9120 img/s  ETA 0:03  and some more text";
  bar.update(160, stats);
  bar.update(391, stats);
  std::string text = os.str();
  size_t pos = 0;
  int redraws = 0;
  while ((pos = text.find('\r', pos)) != std::string::npos) {
    const size_t end = text.find("\033[K", pos);
    REQUIRE(end != std::string::npos);
    CHECK(end - pos - 1 <= 79);  // the visible characters of one redraw
    ++redraws;
    pos = end;
  }
  CHECK(redraws == 2);
  CHECK_THAT(text, Catch::Contains("391/391"));
  // A wide terminal keeps the whole line and the bar.
  std::ostringstream wide;
  ProgressBar(wide, true, "epoch 1/1", 10, 200).update(5, stats);
  CHECK_THAT(wide.str(), Catch::Contains("[") && Catch::Contains(stats));
  CHECK(fit_width("abcdef", 3) == "abc");
  CHECK(fit_width("ab", 3) == "ab");
}

TEST_CASE("evaluation reports its progress", "[engine][hygiene][progress][cifar]") {
  REQUIRE_CIFAR(data);
  std::vector<std::pair<int64_t, int64_t>> calls;
  const Dataset test = load_dataset("cifar10", data, Split::Test, 100);
  LoaderConfig lc;
  lc.batch_size = 32;
  lc.shuffle = false;
  lc.norm.std = {1.0f, 1.0f, 1.0f};
  DataLoader loader(test, lc);
  ModelConfig mc;
  mc.name = "plain";
  mc.num_classes = 10;
  auto model = make_model(mc);
  SoftmaxCrossEntropy xent(0.0);
  EvalOptions eo;
  eo.progress = [&](int64_t done, int64_t total) { calls.push_back({done, total}); };
  evaluate(*model, loader, xent, 10, eo);
  REQUIRE(calls.size() == 4);
  CHECK(calls.back() == std::pair<int64_t, int64_t>{4, 4});
}

TEST_CASE("train's messages and exit codes", "[engine][hygiene][messages]") {
  SECTION("unknown and duplicate flags read plainly, exit 2") {
    // Each command also has --epochs 0, so that a missed check is an error rather than a run.
    Outcome o = run_main({"--lrate", "0.1", "--epochs", "0"});
    CHECK(o.code == 2);
    CHECK_THAT(o.err, Catch::Contains("unknown flag --lrate") &&
                          Catch::Contains("did you mean --lr?") && Catch::Contains("--help"));
    o = run_main({"--lr", "0.1", "--epochs", "0", "--lr", "0.2"});
    CHECK(o.code == 2);
    CHECK_THAT(o.err, Catch::Contains("--lr is given twice"));
    o = run_main({"--augment", "--no-augment", "--epochs", "0"});
    CHECK_THAT(o.err, Catch::Contains("--no-augment is given twice (as --augment before)"));
    o = run_main({"--wd", "0", "--weight-decay", "1e-4", "--epochs", "0"});
    CHECK_THAT(o.err, Catch::Contains("given twice"));
  }
  SECTION("--help: exit 0, augmentation shown on by default") {
    const Outcome o = run_main({"--help"});
    CHECK(o.code == 0);
    CHECK_THAT(o.out, Catch::Contains("--augment,--no-augment ") &&
                          Catch::Contains("default: on") && Catch::Contains("--val-split") &&
                          Catch::Contains("--overwrite"));
    CHECK_THAT(o.out, !Catch::Contains("{false}"));  // CLI11's notation read as "off by default" 
  }
  SECTION("no GPU: --device cuda says so plainly, exit 1") {
    if (cuda_available()) return;
    const fs::path d = scratch_dir("msg_nogpu");
    const std::string data = cifar10_dir().empty() ? d.string() : cifar10_dir();
    const Outcome o = run_main({"--device", "cuda", "--data", data, "--out", (d / "r").string()});
    CHECK(o.code == 1);
    CHECK_THAT(o.err, Catch::Contains("--device cuda: no GPU found"));
  }
  SECTION("out of memory suggests a smaller --batch-size, exit 1") {
    const std::string data = cifar10_dir();
    if (data.empty()) return;
    // A classifier of 2e9 outputs needs a 1 TB weight: the host allocation fails at once.
    const Outcome o = run_main({"--data", data, "--model", "plain", "--num-classes", "2000000000",
                                "--subset", "64", "--test-subset", "64", "--device", "cpu",
                                "--out", scratch_dir("msg_oom").string()});
    CHECK(o.code == 1);
    CHECK_THAT(o.err, Catch::Contains("out of host memory") &&
                          Catch::Contains("smaller --batch-size"));
  }
  SECTION("--out that cannot be a directory is named") {
    const std::string data = cifar10_dir();
    if (data.empty()) return;
    const fs::path d = scratch_dir("msg_out");
    std::ofstream(d / "file") << "x";
    const Outcome o = run_main({"--data", data, "--model", "plain", "--device", "cpu", "--out",
                                (d / "file").string()});
    CHECK(o.code == 1);
    CHECK_THAT(o.err, Catch::Contains("--out " + (d / "file").string()));
  }
  SECTION("a clamped batch is warned about; the resume hint names the program as run") {
    const std::string data = cifar10_dir();
    if (data.empty()) return;
    const fs::path d = scratch_dir("msg_batch");
    const Outcome o = run_main({"--data", data, "--model", "plain", "--device", "cpu", "--subset",
                                "40", "--test-subset", "40", "--batch-size", "64", "--epochs",
                                "3", "--max-steps", "1", "--out", d.string()},
                               "/opt/minidl/build/train");
    CHECK(o.code == 0);
    CHECK_THAT(o.out, Catch::Contains("--batch-size 64 is larger than the 40 training images"));
    // --max-steps 1 stops at the end of epoch 1 (one step per epoch), after evaluating it.
    CHECK_THAT(o.out, Catch::Contains("stopped after --max-steps 1 at the end of epoch 1"));

    const std::string out = scratch_dir("msg_hint").string();
    const char* argv[] = {"/opt/minidl/build/train", "--data", data.c_str(), "--model", "plain",
                          "--device", "cpu", "--subset", "64", "--test-subset", "32",
                          "--batch-size", "32", "--out", out.c_str()};
    const TrainConfig c = parse_train_args(static_cast<int>(std::size(argv)), argv);
    TrainHooks hooks;
    hooks.after_step = [](int64_t, int64_t) { std::raise(SIGINT); };
    std::ostringstream log;
    const RunResult r = run_train(c, log, hooks);
    CHECK(r.status == RunStatus::Interrupted);
    CHECK_THAT(log.str(), Catch::Contains("resume with: /opt/minidl/build/train --resume"));
  }
}

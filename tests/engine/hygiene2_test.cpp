// Trustworthy runs, part 2 (issue 16), each behaviour on tiny CPU runs with the real CIFAR-10
// files: checkpoints that detect corruption and refuse NaN, config.json that records what decides
// the numbers, and the rest of the findings. Skipped where the data is absent.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include "engine/app.h"
#include "engine/metrics.h"
#include "engine/trainer.h"
#include "engine_test_util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "optim/schedule.h"

using namespace minidl;
using namespace minidl::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Flips one bit of byte `at` of tensor `name`'s data in the safetensors file `path`.
void flip_byte(const fs::path& path, const std::string& name, int64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, ' ');
  f.read(header.data(), static_cast<std::streamsize>(n));
  const int64_t begin = json::parse(header).at(name).at("data_offsets")[0].get<int64_t>();
  const auto pos = static_cast<std::streamoff>(8 + n + begin + at);
  f.seekg(pos);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  f.seekp(pos);
  f.write(&c, 1);
}

// Rewrites checkpoint `path` as `to` with `edit` applied to its tensors, as a format-2 file (no
// content hashes, as minidl wrote before) unless `rehash`.
void rewrite(const fs::path& path, const fs::path& to,
             const std::function<void(NamedTensors&)>& edit, bool rehash = false) {
  SafetensorsFile f = load_safetensors(path.string());
  edit(f.tensors);
  f.metadata.erase("tensor_hashes");
  f.metadata["format_version"] = "2";
  if (rehash) {
    json h;
    for (const auto& [name, t] : f.tensors) {
      char buf[17];
      std::snprintf(buf, sizeof buf, "%016llx",
                    static_cast<unsigned long long>(tensor_content_hash(t)));
      h[name] = buf;
    }
    f.metadata["tensor_hashes"] = h.dump();
    f.metadata["format_version"] = "3";
  }
  save_safetensors(to.string(), f.tensors, f.metadata, f.read_as_i64);
}

Tensor& tensor_named(NamedTensors& ts, const std::string& name) {
  for (auto& [n, t] : ts)
    if (n == name) return t;
  FAIL("no tensor " << name);
  throw;
}

// The name of the first float tensor of the model in a checkpoint (not optimizer state).
std::string first_weight(const fs::path& path) {
  for (const auto& [name, t] : load_safetensors(path.string()).tensors)
    if (t.dtype() == DType::F32 && name.find("weight") != std::string::npos &&
        name.rfind("optimizer.", 0) != 0)
      return name;
  FAIL("no weight in " << path);
  return {};
}

}  // namespace

TEST_CASE("checkpoints carry content hashes: a flipped byte is an error naming the tensor",
          "[engine][hygiene2][checkpoint]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_hash");
  REQUIRE(run_main(tiny(data, dir / "run")).code == 0);
  const fs::path last = dir / "run" / "last.safetensors";
  CHECK(load_safetensors(last.string()).metadata.count("tensor_hashes") == 1);

  // Intact: evaluates, without a note.
  Outcome o =
      run_main({"--evaluate", "--checkpoint", last.string(), "--out", (dir / "e1").string()});
  CHECK(o.code == 0);
  CHECK_THAT(o.out, !Catch::Contains("no content hashes"));

  const std::string name = first_weight(last);
  fs::copy_file(last, dir / "flipped.safetensors");
  flip_byte(dir / "flipped.safetensors", name, 5);
  o = run_main({"--evaluate", "--checkpoint", (dir / "flipped.safetensors").string(), "--out",
                (dir / "e2").string()});
  CHECK(o.code == 1);
  CHECK_THAT(o.err, Catch::Contains("tensor '" + name + "' does not match its content hash") &&
                        Catch::Contains("corrupt"));
  CHECK_FALSE(fs::exists(dir / "e2" / "eval.json"));
  // Training from it is refused alike.
  o = run_main({"--resume", (dir / "flipped.safetensors").string(), "--epochs", "2"});
  CHECK(o.code == 1);
  CHECK_THAT(o.err, Catch::Contains("does not match its content hash"));

  // A checkpoint from before the hashes loads, with a note.
  rewrite(last, dir / "old.safetensors", [](NamedTensors&) {});
  o = run_main({"--evaluate", "--checkpoint", (dir / "old.safetensors").string(), "--out",
                (dir / "e3").string()});
  CHECK(o.code == 0);
  CHECK_THAT(o.out, Catch::Contains("has no content hashes"));
  fs::remove_all(dir);
}

TEST_CASE("NaN or infinite weights and a NaN test loss are refused with exit 1",
          "[engine][hygiene2][checkpoint]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_nan");
  REQUIRE(run_main(tiny(data, dir / "run")).code == 0);
  const fs::path last = dir / "run" / "last.safetensors";
  const std::string name = first_weight(last);

  // Four NaN weights, in a file whose hashes match (the run wrote them so).
  rewrite(
      last, dir / "nan.safetensors",
      [&](NamedTensors& ts) {
        float* w = tensor_named(ts, name).data<float>();
        for (int i = 0; i < 4; ++i) w[i * 3] = std::numeric_limits<float>::quiet_NaN();
      },
      /*rehash=*/true);
  Outcome o = run_main({"--evaluate", "--checkpoint", (dir / "nan.safetensors").string(), "--out",
                        (dir / "e1").string()});
  CHECK(o.code == 1);
  CHECK_THAT(o.err,
             Catch::Contains("NaN or infinite values") && Catch::Contains("'" + name + "' (4 of"));
  CHECK_THAT(o.out, !Catch::Contains("accuracy"));
  o = run_main({"--resume", (dir / "nan.safetensors").string(), "--epochs", "2"});
  CHECK(o.code == 1);
  CHECK_THAT(o.err, Catch::Contains("NaN or infinite values"));

  // Finite weights whose outputs overflow: the classifier's weights at 3e38 make every logit
  // +inf, the loss inf - inf = NaN, and --evaluate refuses it.
  std::string classifier;
  for (const auto& [n, t] : load_safetensors(last.string()).tensors)
    if (n.rfind("optimizer.", 0) != 0 && n.find("weight") != std::string::npos && t.dim() == 2)
      classifier = n;  // the last Linear's
  REQUIRE_FALSE(classifier.empty());
  rewrite(
      last, dir / "huge.safetensors",
      [&](NamedTensors& ts) { tensor_named(ts, classifier).fill_(3e38); }, /*rehash=*/true);
  o = run_main({"--evaluate", "--checkpoint", (dir / "huge.safetensors").string(), "--out",
                (dir / "e2").string()});
  CHECK(o.code == 1);
  CHECK_THAT(o.err, Catch::Contains("the test loss is"));
  CHECK_FALSE(fs::exists(dir / "e2" / "eval.json"));
  fs::remove_all(dir);
}

TEST_CASE("config.json and checkpoints record what decides the numbers, and --resume warns",
          "[engine][hygiene2][config]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_config");
  REQUIRE(run_main(plus(tiny(data, dir), {"--cpu-kernels", "handwritten"})).code == 0);
  const json c = json::parse(read_text(dir / "config.json"));
  CHECK(c.at("cpu-kernels") == "handwritten");
  const json& e = c.at("effective");
  CHECK(e.at("cpu-kernels") == "handwritten");
  CHECK(e.at("kernels") == "not used (a CPU run)");  // not "cudnn" on a CPU run
  CHECK(e.at("threads") == omp_get_max_threads());
  CHECK(e.at("tf32") == false);
  CHECK(e.at("deterministic") == false);
  CHECK(e.at("precision") == "fp32");
  CHECK_FALSE(e.at("version").get<std::string>().empty());
  CHECK_FALSE(e.at("git-commit").get<std::string>().empty());
  CHECK(checkpoint_run(dir / "last.safetensors").at("effective") == e);

  // Resumed with the same settings: no warning. With another thread count: a warning naming it.
  Outcome o = run_main({"--resume", (dir / "last.safetensors").string(), "--epochs", "2"});
  CHECK(o.code == 0);
  CHECK_THAT(o.out, !Catch::Contains("differs from the checkpoint"));
  CHECK(json::parse(read_text(dir / "config.json")).at("cpu-kernels") == "handwritten");
  const int threads = omp_get_max_threads();
  omp_set_num_threads(threads + 1);
  o = run_main({"--resume", (dir / "last.safetensors").string(), "--epochs", "3"});
  omp_set_num_threads(threads);
  CHECK(o.code == 0);
  CHECK_THAT(o.out, Catch::Contains("warning: --resume: this run differs from the checkpoint's in "
                                    "threads " +
                                    std::to_string(threads + 1) + " (was " +
                                    std::to_string(threads) + ")"));
  fs::remove_all(dir);
}

TEST_CASE("the warm-up does not move --milestones or --step-size: they are the run's epochs",
          "[engine][hygiene2][schedule]") {
  const LrSchedule m(
      schedule_config(parse_args({"--schedule", "multistep", "--milestones", "1,2", "--warmup",
                                  "0.5", "--lr", "0.1", "--gamma", "0.5", "--data", "."})));
  CHECK(m.lr_at(0.25) < 0.1);                          // warming up
  CHECK(m.lr_at(0.75) == Approx(0.1).epsilon(1e-12));  // warmed up, before milestone 1
  CHECK(m.lr_at(1.0) == Approx(0.05).epsilon(1e-12));  // epoch 1: the first decay, not 1.5
  CHECK(m.lr_at(1.6) == Approx(0.05).epsilon(1e-12));  // no change in mid-epoch
  CHECK(m.lr_at(2.0) == Approx(0.025).epsilon(1e-12));
  const LrSchedule s(schedule_config(parse_args(
      {"--schedule", "step", "--step-size", "2", "--warmup", "1", "--lr", "0.1", "--data", "."})));
  CHECK(s.lr_at(1.9) == Approx(0.1).epsilon(1e-12));
  CHECK(s.lr_at(2.0) == Approx(0.05).epsilon(1e-12));
}

TEST_CASE("the report shows --val-split: the validation curves and the header",
          "[engine][hygiene2][report]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_val_report");
  REQUIRE(run_main(plus(tiny(data, dir, 2), {"--val-split", "32"})).code == 0);
  const std::string html = read_text(dir / "report.html");
  CHECK_THAT(html, Catch::Contains("96 training / 32 validation"));
  CHECK_THAT(html, Catch::Contains(">validation</text>"));  // a legend entry in the charts
  CHECK_THAT(html, Catch::Contains("best validation accuracy"));
  fs::remove_all(dir);
}

TEST_CASE("exit codes are those docs/TRAINING.md gives", "[engine][hygiene2][exit]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_exit");
  // A missing file: 1.
  Outcome o = run_main({"--evaluate", "--checkpoint", (dir / "none.safetensors").string()});
  CHECK(o.code == 1);
  CHECK_THAT(o.err, Catch::Contains("no such file"));
  o = run_main({"--resume", (dir / "none.safetensors").string()});
  CHECK(o.code == 1);
  o = run_main({"--data", (dir / "no-data").string(), "--device", "cpu"});
  CHECK(o.code == 1);
  CHECK_THAT(o.err,
             Catch::Contains("--data " + (dir / "no-data").string() + ": no such directory"));
  // A bad value, --subset beyond the dataset: 2, before anything is printed or written.
  o = run_main({"--data", data, "--model", "plain", "--subset", "100000", "--device", "cpu",
                "--out", (dir / "big").string()});
  CHECK(o.code == 2);
  CHECK_THAT(o.err, Catch::Contains("--subset 100000: the cifar10 training set has 50000 images"));
  CHECK(o.out.empty());
  CHECK_FALSE(fs::exists(dir / "big"));
  o = run_main({"--data", data, "--model", "plain", "--test-subset", "20000", "--device", "cpu",
                "--out", (dir / "big").string()});
  CHECK(o.code == 2);
  // --help and --version: 0.
  CHECK(run_main({"--help"}).code == 0);
  o = run_main({"--version"});
  CHECK(o.code == 0);
  CHECK_THAT(o.out, Catch::StartsWith("train (minidl) ") && Catch::Contains("git commit"));
  fs::remove_all(dir);
}

TEST_CASE("a flag that does not apply is an error, everywhere", "[engine][hygiene2][flags]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_flags");
  const auto base = [&](std::vector<std::string> extra) {
    return plus(tiny(data, dir / "r"), extra);
  };
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--tf32"}, "--tf32: TF32 tensor cores exist on GPUs only"},
      {{"--kernels", "cudnn"}, "--kernels: it chooses the GPU implementation"},
      {{"--zero-init-residual"}, "--zero-init-residual: it applies to the ResNets"},
      {{"--dropout", "0.2"}, "--dropout: only alexnet has dropout"},
      {{"--imagenet-stem"}, "--imagenet-stem applies to"},
      {{"--nesterov", "--optimizer", "adam"}, "nesterov"},
      {{"--momentum", "0.8", "--optimizer", "adam"}, "--momentum: it is SGD's"},
      {{"--milestones", "2"}, "--milestones: it belongs to --schedule multistep, not step"},
      {{"--step-size", "3", "--schedule", "cosine"}, "--step-size: it belongs to --schedule step"},
      {{"--gamma", "0.3", "--schedule", "constant"}, "--gamma: it belongs to --schedule step"},
  };
  for (const auto& [extra, message] : cases) {
    INFO(extra[0]);
    const Outcome o = run_main(base(extra));
    CHECK(o.code == 2);
    CHECK_THAT(o.err, Catch::Contains(message));
    CHECK(o.out.empty());  // before anything runs
  }
  // With --evaluate the training flags do not apply.
  REQUIRE(run_main(tiny(data, dir / "run")).code == 0);
  for (const std::vector<std::string> extra :
       {std::vector<std::string>{"--epochs", "3"}, {"--lr", "0.5"}, {"--subset", "64"}}) {
    INFO(extra[0]);
    const Outcome o =
        run_main(plus({"--evaluate", "--checkpoint", (dir / "run" / "last.safetensors").string(),
                       "--out", (dir / "e").string()},
                      extra));
    CHECK(o.code == 2);
    CHECK_THAT(o.err, Catch::Contains(extra[0] + ": it sets up training"));
  }
  // Flags that apply are accepted: --deterministic on the CPU, --dropout with alexnet (parsed).
  CHECK(run_main(plus(base({"--deterministic"}), {"--max-steps", "1"})).code == 0);
  fs::remove_all(dir);
}

TEST_CASE("PyTorch example aliases, and did-you-mean with prefixes and hints",
          "[engine][hygiene2][flags]") {
  CHECK(parse_args({"-a", "resnet20", "--data", "."}).model == "resnet20");
  CHECK(parse_args({"--arch", "alexnet", "--data", "."}).model == "alexnet");
  CHECK(parse_args({"-j", "3", "--data", "."}).workers == 3);
  CHECK(parse_args({"--workers", "2", "--data", "."}).workers == 2);
  CHECK(parse_args({"--pretrained", "x.safetensors", "--data", "."}).pretrained == "x.safetensors");
  Outcome o = run_main({"--opt", "adamw"});
  CHECK(o.code == 2);
  CHECK_THAT(o.err, Catch::Contains("did you mean --optimizer?"));
  o = run_main({"--sched", "cosine"});
  CHECK_THAT(o.err, Catch::Contains("did you mean --schedule?"));
  o = run_main({"--start-epoch", "3"});
  CHECK(o.code == 2);
  CHECK_THAT(o.err, Catch::Contains("--resume PATH"));
  o = run_main({"--amp"});
  CHECK(o.code == 2);
  CHECK_THAT(o.err, Catch::Contains("mixed precision"));
  o = run_main({"--lrate", "0.1"});  // still the closest by edit distance or prefix
  CHECK_THAT(o.err, Catch::Contains("did you mean --lr?"));
  o = run_main({"--pretrained", "x", "--resume", "y"});
  CHECK(o.code == 2);
}

TEST_CASE("output fits: --help and the epoch line within 100 columns, --summary, --quiet",
          "[engine][hygiene2][output]") {
  const std::string help = train_help();
  std::istringstream lines(help);
  for (std::string line; std::getline(lines, line);) {
    INFO(line);
    CHECK(line.size() <= 100);
  }
  CHECK_THAT(help, Catch::Contains("--workers") && Catch::Contains("--quiet") &&
                       Catch::Contains("--version"));
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_output");
  // The widest epoch line: --val-split, three-digit epochs (the header and the line alike).
  Outcome o = run_main(plus(tiny(data, dir / "a", 100), {"--val-split", "32", "--max-steps", "3"}));
  REQUIRE(o.code == 0);
  std::istringstream out(o.out);
  int epoch_lines = 0;
  for (std::string line; std::getline(out, line);) {
    if (line.rfind("epoch ", 0) == 0 || line.rfind("  1/100", 0) == 0) {
      INFO(line);
      CHECK(line.size() <= 100);
      ++epoch_lines;
    }
  }
  CHECK(epoch_lines >= 2);  // the header and epoch 1's line
  CHECK_THAT(o.out, Catch::Contains("model: plain (") && !Catch::Contains("Total parameters"));
  o = run_main(plus(tiny(data, dir / "b"), {"--summary", "--max-steps", "1"}));
  CHECK_THAT(o.out, Catch::Contains("Total parameters"));
  std::vector<std::string> quiet = plus(tiny(data, dir / "c"), {"--quiet"});
  *(std::find(quiet.begin(), quiet.end(), "--batch-size") + 1) = "200";  // warned about: clamped
  o = run_main(quiet);
  CHECK(o.code == 0);
  CHECK_THAT(o.out, !Catch::Contains("device:") && !Catch::Contains("normalisation") &&
                        Catch::Contains("warning: --batch-size 200") && Catch::Contains("top-5") &&
                        Catch::Contains("best test accuracy"));
  fs::remove_all(dir);
}

TEST_CASE("failures leave no debris and no misleading lines", "[engine][hygiene2][debris]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_debris");
  // A failure before anything was written leaves no run directory.
  Outcome o = run_main({"--evaluate", "--checkpoint", (dir / "none.safetensors").string(), "--out",
                        (dir / "e").string()});
  CHECK(o.code == 1);
  CHECK_FALSE(fs::exists(dir / "e"));
  REQUIRE(run_main(tiny(data, dir / "run")).code == 0);
  fs::copy_file(dir / "run" / "last.safetensors", dir / "bad.safetensors");
  flip_byte(dir / "bad.safetensors", first_weight(dir / "bad.safetensors"), 1);
  o = run_main({"--evaluate", "--checkpoint", (dir / "bad.safetensors").string(), "--out",
                (dir / "e").string()});
  CHECK(o.code == 1);
  CHECK_FALSE(fs::exists(dir / "e"));

  // A resume with nothing left to train writes nothing and names no files it did not write.
  const std::string commands = read_text(dir / "run" / "command.txt");
  o = run_main({"--resume", (dir / "run" / "last.safetensors").string()});
  CHECK(o.code == 0);
  CHECK_THAT(o.out, Catch::Contains("nothing to train") && !Catch::Contains("run directory:"));
  CHECK(read_text(dir / "run" / "command.txt") == commands);

  // Resumed before any evaluation: no "best accuracy 0.00%".
  TrainHooks stop_first;
  stop_first.after_step = [](int64_t, int64_t step) {
    if (step == 1) std::raise(SIGINT);
  };
  std::ostringstream log;
  const RunResult r = run_train(parse_args(tiny(data, dir / "early")), log, stop_first);
  REQUIRE(r.status == RunStatus::Interrupted);
  o = run_main({"--resume", (dir / "early" / "last.safetensors").string()});
  CHECK(o.code == 0);
  CHECK_THAT(o.out, Catch::Contains("no epoch evaluated yet") && !Catch::Contains("0.00%"));

  // A checkpoint that cannot be written (a full disk; here a directory where its temporary file
  // goes) loses neither the epoch's line nor its metrics.csv row.
  fs::create_directories(dir / "full" / "last.safetensors.tmp" / "x");
  o = run_main(tiny(data, dir / "full"));
  CHECK(o.code == 1);
  CHECK_THAT(o.out, Catch::Contains("  1/1 "));
  REQUIRE(fs::exists(dir / "full" / "metrics.csv"));
  CHECK(read_metrics_csv((dir / "full" / "metrics.csv").string()).size() == 1);

  // An --out that cannot be written is named with the reason, before the data is loaded.
  o = run_main(plus(tiny(data, "/proc/self/minidl-run"), {}));
  CHECK(o.code == 1);
  CHECK_THAT(o.err, Catch::Contains("--out /proc/self/minidl-run: cannot"));
  CHECK_THAT(o.err, Catch::Contains("("));
  CHECK_THAT(o.out, !Catch::Contains("data:"));
  fs::remove_all(dir);
}

TEST_CASE(
    "the report's smaller flaws: lr of an evaluation, every command, partial epochs, "
    "legend",
    "[engine][hygiene2][report]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_report");
  // Interrupted in epoch 2 at step 2, then resumed: the original command and the resume's.
  TrainHooks stop;
  stop.after_step = [](int64_t epoch, int64_t step) {
    if (epoch == 2 && step == 2) std::raise(SIGINT);
  };
  std::ostringstream log;
  REQUIRE(run_train(parse_args(tiny(data, dir, 2)), log, stop).status == RunStatus::Interrupted);
  const Outcome o = run_main({"--resume", (dir / "last.safetensors").string()});
  REQUIRE(o.code == 0);
  CHECK_THAT(o.out, Catch::Contains("(train: steps after 2)"));
  const std::string html = read_text(dir / "report.html");
  CHECK_THAT(html, Catch::Contains(">commands<") && Catch::Contains("--print-freq 2</code><br>"
                                                                    "<code>train --resume"));
  CHECK_THAT(html, Catch::Contains("epoch 2 (resumed after step 2)"));
  const std::vector<EpochMetrics> rows = read_metrics_csv((dir / "metrics.csv").string());
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].resumed_at_step == 0);
  CHECK(rows[1].resumed_at_step == 2);
  CHECK(rows[1].test_top5 >= rows[1].test_acc);

  // The legends sit right of the plot area (x >= its right edge, 480 - 16).
  for (size_t p = 0; (p = html.find("class=\"legend\"", p)) != std::string::npos; ++p) {
    const size_t x = html.rfind("<text x=\"", p);
    CHECK(std::stod(html.substr(x + 9, 8)) >= 464.0);
  }
  // An evaluation's report has the learning rate of each epoch, not "no data yet".
  const Outcome e = run_main({"--evaluate", "--checkpoint", (dir / "last.safetensors").string(),
                              "--out", (dir / "eval").string()});
  REQUIRE(e.code == 0);
  const std::string ehtml = read_text(dir / "eval" / "report.html");
  CHECK_THAT(ehtml, Catch::Contains("Learning rate") && !Catch::Contains("no data yet"));
  fs::remove_all(dir);
}

TEST_CASE("top-5 accuracy, --workers and the run's ETA", "[engine][hygiene2][top5]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("h2_top5");
  // top-5: the images whose label has fewer than 5 logits above it, recounted from the logits.
  REQUIRE(run_main(tiny(data, dir / "run")).code == 0);
  const Outcome o =
      run_main({"--evaluate", "--checkpoint", (dir / "run" / "last.safetensors").string(), "--out",
                (dir / "e").string(), "--dump-logits", (dir / "logits.safetensors").string()});
  REQUIRE(o.code == 0);
  const SafetensorsFile f = load_safetensors((dir / "logits.safetensors").string());
  const Tensor& logits = *f.find("logits");
  const Tensor& labels = *f.find("labels");
  int64_t in_top5 = 0;
  for (int64_t i = 0; i < logits.size(0); ++i) {
    const float* row = logits.data<float>() + i * logits.size(1);
    const float mine = row[labels.data<int32_t>()[i]];
    int above = 0;
    for (int64_t c = 0; c < logits.size(1); ++c) above += row[c] > mine;
    in_top5 += above < 5;
  }
  const double expected =
      100.0 * static_cast<double>(in_top5) / static_cast<double>(logits.size(0));
  const json ev = json::parse(read_text(dir / "e" / "eval.json"));
  CHECK(ev.at("test_top5").get<double>() == Approx(expected).epsilon(1e-12));
  CHECK(expected < 100.0);  // after one tiny epoch some labels are outside the top 5
  CHECK_THAT(o.out, Catch::Contains(fmt::format("top-5 {:.2f}%", expected)));
  CHECK(read_metrics_csv((dir / "run" / "metrics.csv").string())[0].test_top5 > 0.0);
  CHECK_THAT(read_text(dir / "run" / "report.html"), Catch::Contains("top-5"));

  // --workers: the same batches, so the same numbers, for any number of loader threads.
  Outcome one = run_main(plus(tiny(data, dir / "w1"), {"-j", "1"}));
  Outcome three = run_main(plus(tiny(data, dir / "w3"), {"--workers", "3"}));
  REQUIRE(one.code == 0);
  REQUIRE(three.code == 0);
  CHECK(read_metrics_csv((dir / "w1" / "metrics.csv").string())[0].test_loss ==
        read_metrics_csv((dir / "w3" / "metrics.csv").string())[0].test_loss);
  // The progress line has the run's ETA.
  CHECK_THAT(one.out, Catch::Contains("ETA ") && Catch::Contains(" (run "));
  fs::remove_all(dir);
}

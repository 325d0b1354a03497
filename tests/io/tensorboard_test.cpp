// TensorBoard event files (io/tensorboard.h): CRC-32C against its published check value, a written
// file read back by our reader, corruption detected, and `train --tensorboard` writing the scalars.
#include <catch2/catch.hpp>

#include <filesystem>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "../engine/engine_test_util.h"
#include "../support/test_util.h"
#include "engine/trainer.h"
#include "io/tensorboard.h"

using namespace minidl;
namespace fs = std::filesystem;

TEST_CASE("tensorboard: CRC-32C check value", "[tensorboard][io]") {
  // RFC 3720 / the CRC catalogue: CRC-32C("123456789") = 0xE3069283.
  CHECK(crc32c("123456789", 9) == 0xE3069283u);
  CHECK(crc32c("", 0) == 0u);
  // TFRecord's mask, by its definition ((c >> 15) | (c << 17)) + 0xa282ead8 worked by hand.
  CHECK(masked_crc32c("123456789", 9) == 0xC78AB0E5u);
}

TEST_CASE("tensorboard: events read back, corruption is found", "[tensorboard][io]") {
  const fs::path dir = test::scratch_dir("tb_events");
  std::string path;
  {
    EventWriter w(dir.string());
    w.scalar("train/loss", 1, 2.5);
    w.scalar("lr", 2, 0.125);
    w.flush();
    path = w.path();
  }
  CHECK(fs::path(path).filename().string().rfind("events.out.tfevents.", 0) == 0);
  const std::vector<TbEvent> ev = read_events(path);
  REQUIRE(ev.size() == 3);
  CHECK(ev[0].file_version == "brain.Event:2");
  CHECK(ev[0].wall_time > 1.6e9);
  REQUIRE(ev[1].scalars.size() == 1);
  CHECK(ev[1].scalars[0] == std::pair<std::string, float>{"train/loss", 2.5f});
  CHECK(ev[1].step == 1);
  CHECK(ev[2].scalars[0] == std::pair<std::string, float>{"lr", 0.125f});
  CHECK(ev[2].step == 2);

  // Flip one bit of the last record's data: its CRC must catch it.
  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  bytes[bytes.size() - 6] ^= 0x01;
  const std::string bad = (dir / "bad.tfevents").string();
  std::ofstream(bad, std::ios::binary) << bytes;
  CHECK_THROWS_WITH(read_events(bad), Catch::Contains("record 2") && Catch::Contains("CRC"));
}

TEST_CASE("tensorboard: train --tensorboard writes each epoch's scalars", "[tensorboard][train]") {
  const std::string data = test::cifar10_dir();
  if (data.empty()) {
    WARN("CIFAR-10 not found: test skipped");
    return;
  }
  const fs::path out = test::scratch_dir("tb_train");
  const TrainConfig cfg = test::parse_args(
      {"--data", data, "--model", "plain", "--subset", "64", "--test-subset", "32",
       "--batch-size", "32", "--epochs", "2", "--device", "cpu", "--out", out.string(),
       "--tensorboard", "--lr", "0.01"});
  // The per-layer gradient norms of each epoch's last step, computed here independently of
  // engine/trace.h: the parameters grouped by layer (the name up to its last '.'), the L2 norm
  // of their gradients in double.
  std::vector<std::map<std::string, double>> norms;
  TrainHooks hooks;
  hooks.before_evaluation = [&](Module& model) {
    std::map<std::string, double> sq;
    for (const NamedParameter& p : model.named_parameters())
      for (float g : p.param->grad.to_vector<float>())
        sq[p.name.substr(0, p.name.rfind('.'))] += double(g) * double(g);
    for (auto& [layer, s] : sq) s = std::sqrt(s);
    norms.push_back(sq);
  };
  std::ostringstream log;
  const RunResult r = run_train(cfg, log, hooks);
  REQUIRE(r.status == RunStatus::Finished);
  std::string path;
  for (const fs::directory_entry& e : fs::directory_iterator(out))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) path = e.path().string();
  REQUIRE(!path.empty());
  std::map<std::string, std::vector<std::pair<int64_t, float>>> series;
  for (const TbEvent& e : read_events(path))
    for (const auto& [tag, v] : e.scalars) series[tag].push_back({e.step, v});
  for (const char* tag : {"train/loss", "train/accuracy", "test/loss", "test/accuracy", "lr",
                          "images_per_second"}) {
    INFO(tag);
    REQUIRE(series[tag].size() == 2);
    CHECK(series[tag][0].first == 1);
    CHECK(series[tag][1].first == 2);
  }
  CHECK(series["test/accuracy"][1].second == static_cast<float>(r.history[1].test_acc));
  CHECK(series["train/loss"][0].second == static_cast<float>(r.history[0].train_loss));

  // grad_norm/<layer>: one per layer with parameters and epoch, at step = epoch, equal to the
  // norm above rounded to float32 (relative error <= 2^-24), plus the double sums' different
  // order (n <= 10^5 terms: n * 2^-53 < 2^-36): 2^-23 bounds both.
  REQUIRE(norms.size() == 2);
  size_t layers = 0;
  for (const auto& [tag, values] : series) {
    if (tag.rfind("grad_norm/", 0) != 0) continue;
    const std::string layer = tag.substr(10);
    INFO(tag);
    ++layers;
    REQUIRE(norms[0].count(layer) == 1);
    REQUIRE(values.size() == 2);
    for (int e = 0; e < 2; ++e) {
      CHECK(values[e].first == e + 1);
      const double want = norms[e].at(layer);
      CHECK(want > 0);
      CHECK(std::abs(values[e].second - want) <= want * 0x1p-23);
    }
  }
  CHECK(layers == norms[0].size());  // every layer with parameters, none twice
}

TEST_CASE("tensorboard: --overwrite removes the old run's event files, and only those",
          "[tensorboard][train][overwrite]") {
  const std::string data = test::cifar10_dir();
  if (data.empty()) {
    WARN("CIFAR-10 not found: test skipped");
    return;
  }
  const fs::path out = test::scratch_dir("tb_overwrite");
  const auto args = [&](std::vector<std::string> more) {
    std::vector<std::string> a{"--data", data, "--model", "plain", "--subset", "32",
                               "--test-subset", "32", "--batch-size", "32", "--epochs", "1",
                               "--device", "cpu", "--out", out.string(), "--tensorboard"};
    a.insert(a.end(), more.begin(), more.end());
    return test::parse_args(a);
  };
  const auto event_files = [&] {
    std::vector<fs::path> found;
    for (const fs::directory_entry& e : fs::directory_iterator(out))
      if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
        found.push_back(e.path());
    return found;
  };
  std::ostringstream log;
  REQUIRE(run_train(args({}), log).status == RunStatus::Finished);
  REQUIRE(event_files().size() == 1);
  // An event file of an earlier invocation under another name (another second, host or pid), and
  // a file of the user's whose name only resembles one.
  fs::copy_file(event_files()[0], out / "events.out.tfevents.1.otherhost.1");
  std::ofstream(out / "my.events.out.tfevents.notes") << "mine";

  // Only the event files left (the other run files removed by hand): still a run, refused.
  for (const char* f : {"metrics.csv", "config.json", "command.txt", "last.safetensors",
                        "best.safetensors", "report.html"})
    fs::remove(out / f);
  CHECK_THROWS_WITH(run_train(args({"--seed", "2"}), log),
                    Catch::Contains("events.out.tfevents.* (2 files)") &&
                        Catch::Contains("--overwrite"));

  REQUIRE(run_train(args({"--seed", "2", "--overwrite"}), log).status == RunStatus::Finished);
  CHECK_THAT(log.str(), Catch::Contains("--overwrite: removed") &&
                            Catch::Contains("events.out.tfevents.1.otherhost.1"));
  const std::vector<fs::path> files = event_files();
  REQUIRE(files.size() == 1);  // the new run's only
  // One file_version record and one epoch: nothing of the old runs appended to or left over
  // (a new file may have the old one's name: the same second and pid).
  int versions = 0, losses = 0;
  for (const TbEvent& e : read_events(files[0].string())) {
    versions += e.file_version.empty() ? 0 : 1;
    for (const auto& [tag, v] : e.scalars) losses += tag == "train/loss" ? 1 : 0;
  }
  CHECK(versions == 1);
  CHECK(losses == 1);
  CHECK(test::read_text(out / "my.events.out.tfevents.notes") == "mine");
}

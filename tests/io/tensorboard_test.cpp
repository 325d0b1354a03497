// TensorBoard event files (io/tensorboard.h): CRC-32C against its published check value, a written
// file read back by our reader, corruption detected, and `train --tensorboard` writing the scalars.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
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
  std::ostringstream log;
  const RunResult r = run_train(cfg, log);
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
}

// The folder dataset on the real CIFAR-10 JPEG files (../shared/data/cifar10-jpeg.tar.gz, unpacked
// into a temporary folder): the decoded pixels against the binary files, and one short epoch.
//
// The archive's layout is train/<class>/NNNN.jpg and test/<class>/NNNN.jpg (5,000 and 1,000 per
// class, 32x32, quality 75, 4:2:0). cifar-10-batches-bin/ was made from these very files
// (cifar10_from_jpeg.py: Pillow's decoder, then a shuffle), so "within JPEG's error" is tighter
// here than the quantisation error against the original CIFAR pixels: both decoders run libjpeg's
// accurate integer IDCT (jidctint) and its fancy (triangle) 4:2:0 chroma upsampling, which are
// integer algorithms specified to the bit, so the bound is 0 and every decoded image must be found
// byte for byte among the binary records, with its label. (A decoder with a different IDCT, e.g.
// the fast one, would differ by a few levels; that would be a test failure here, not noise.)
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "../engine/engine_test_util.h"
#include "../support/test_util.h"
#include "data/folder.h"
#include "engine/trainer.h"

using namespace minidl;
namespace fs = std::filesystem;

namespace {

// The archive beside the binaries, or "" when absent.
std::string jpeg_archive() {
  const std::string bin = test::cifar10_dir();
  if (bin.empty()) return "";
  const fs::path tar = fs::path(bin).parent_path() / "cifar10-jpeg.tar.gz";
  return fs::is_regular_file(tar) ? tar.string() : "";
}

// Unpacks the test split and 200 training images per class into a scratch folder once per
// process (about 45 MB), removed when the process exits.
fs::path unpacked(const std::string& tar) {
  struct Unpacked {
    fs::path dir;
    ~Unpacked() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  };
  static const Unpacked u{[&] {
    const fs::path d = test::scratch_dir("cifar10_jpeg");
    // train/<class>/0[01]*.jpg = 0000-0199.
    const std::string cmd = "tar -xzf '" + tar + "' -C '" + d.string() +
                            "' --wildcards 'test/*' 'train/*/0[01]*.jpg'";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return d;
  }()};
  return u.dir;
}

}  // namespace

TEST_CASE("cifar10 jpeg: decoded pixels equal the binary test records", "[folder][data][real]") {
  const std::string tar = jpeg_archive();
  if (tar.empty()) {
    WARN("../shared/data/cifar10-jpeg.tar.gz not found: test skipped");
    return;
  }
  const fs::path root = unpacked(tar);
  const Dataset bin = load_cifar10(test::cifar10_dir(), Split::Test);
  std::unordered_map<std::string, int32_t> records;
  const uint8_t* px = bin.images.data<uint8_t>();
  for (int64_t i = 0; i < bin.size(); ++i)
    records.emplace(std::string(reinterpret_cast<const char*>(px + i * 3072), 3072), bin.labels[i]);

  DataOptions opt;
  const Dataset d = load_image_folder(root.string(), Split::Test, 0, opt);
  REQUIRE(d.size() == 10000);
  CHECK(d.class_names == bin.class_names);
  int64_t found = 0, label_ok = 0;
  std::vector<uint8_t> chw(3072);
  for (int64_t i = 0; i < d.size(); ++i) {
    decode_eval(*d.files, i, chw.data());  // 32x32 images: the identity resize and crop
    const auto it = records.find(std::string(reinterpret_cast<const char*>(chw.data()), 3072));
    if (it == records.end()) continue;
    ++found;
    label_ok += it->second == d.labels[i];
  }
  CHECK(found == 10000);
  CHECK(label_ok == 10000);
}

TEST_CASE("cifar10 jpeg: one short epoch trains on the folder", "[folder][data][real][train]") {
  const std::string tar = jpeg_archive();
  if (tar.empty()) {
    WARN("../shared/data/cifar10-jpeg.tar.gz not found: test skipped");
    return;
  }
  const fs::path root = unpacked(tar);
  const fs::path out = test::scratch_dir("cifar10_jpeg_run");
  // 2,000 training images (200 per class) and 500 test images, the plain CNN, Adam: a few seconds.
  const TrainConfig cfg = test::parse_args(
      {"--dataset", "folder", "--data", root.string(), "--model", "plain", "--test-subset", "500",
       "--batch-size", "32", "--optimizer", "adam", "--lr", "1e-3", "--wd", "0", "--epochs", "1",
       "--device", "cpu", "--out", out.string(), "--workers", "2"});
  std::ostringstream log;
  const RunResult r = run_train(cfg, log);
  INFO(log.str());
  REQUIRE(r.status == RunStatus::Finished);
  REQUIRE(r.history.size() == 1);
  // Chance is ln 10 = 2.303 and 10%; 63 Adam steps on augmented images must move well off it.
  CHECK(r.history[0].train_loss < 2.1);  // seed 0: 1.95
  CHECK(r.history[0].test_acc > 20.0);    // seed 0: 30%
  // The class names reach config.json (and with it every checkpoint's config_json).
  std::ifstream f(out / "config.json");
  const nlohmann::json j = nlohmann::json::parse(f);
  const std::vector<std::string> names{"airplane", "automobile", "bird",  "cat",  "deer",
                                       "dog",      "frog",       "horse", "ship", "truck"};
  CHECK(j["class-names"] == nlohmann::json(names));
  std::error_code ec;
  fs::remove_all(out, ec);
}

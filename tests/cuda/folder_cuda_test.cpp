// The folder dataset and `predict` on CUDA (in CI on cudasim, the CPU emulator; on a GPU in
// scripts/gpu-check.sh): the decoded batches uploaded and augmented on the device equal the CPU
// loader's bit for bit, a short training run with --device cuda on a generated folder works end to
// end, and predict --device cuda gives the CPU's logits within a derived bound, which the run's
// own evaluation on the device agrees with.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../engine/engine_test_util.h"
#include "../support/test_util.h"
#include "data/folder.h"
#include "data/image.h"
#include "data/loader.h"
#include "engine/metrics.h"
#include "engine/setup.h"
#include "engine/trainer.h"
#include "loader_check.h"

using namespace minidl;
namespace fs = std::filesystem;

namespace {

// `per_class` images of each of 3 classes per split under root/<split>/<class>/, of mixed sizes
// (none 32x32, so every image is resampled), JPEG and PNG, one greyscale; class c is brighter in
// channel c, so a few steps learn something.
void make_folder(const fs::path& root, const std::vector<std::pair<std::string, int>>& splits) {
  const char* classes[] = {"ant", "bee", "cow"};
  int k = 0;
  for (const auto& [split, per_class] : splits)
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < per_class; ++i, ++k) {
        const int w = 37 + 11 * (k % 4), h = 35 + 7 * (k % 3);
        const int channels = k == 4 ? 1 : 3;
        std::vector<uint8_t> px(static_cast<size_t>(w) * h * channels);
        for (int y = 0; y < h; ++y)
          for (int x = 0; x < w; ++x)
            for (int ch = 0; ch < channels; ++ch)
              px[(static_cast<size_t>(y) * w + x) * channels + ch] = static_cast<uint8_t>(
                  ch == c ? 180 + (x * 5 + y * 3 + k) % 70 : (x * 3 + y * (ch + 1) + 7 * k) % 120);
        const fs::path dir = root / split / classes[c];
        fs::create_directories(dir);
        if (i % 2 == 0)
          write_jpeg((dir / fmt::format("{}.jpg", i)).string(), px.data(), w, h, channels);
        else
          write_png((dir / fmt::format("{}.png", i)).string(), px.data(), w, h, channels);
      }
}

}  // namespace

TEST_CASE("folder DataLoader on CUDA yields the CPU loader's batches", "[cuda][loader][folder]") {
  const uint64_t seed = test::test_seed();
  INFO("seed " << seed);
  const fs::path root = test::scratch_dir("cuda_folder_loader");
  make_folder(root, {{"train", 4}, {"val", 1}});  // 12 training images
  // 32: resize + centre crop, then pad-4 crop, flip and cutout on the device; 36: random-resized-
  // crop while decoding (pad 0 on the device), then flip.
  for (int size : {32, 36}) {
    INFO("image size " << size);
    DataOptions opt;
    opt.image_size = size;
    opt.workers = 2;
    const Dataset d = load_image_folder(root.string(), Split::Train, 0, opt);
    REQUIRE(d.size() == 12);
    LoaderConfig c;
    c.batch_size = 5;  // 12 = 5 + 5 + 2: a partial last batch
    c.augment = true;
    c.cutout = size == 32 ? 6 : 0;
    c.norm.mean = {0.49f, 0.48f, 0.45f};
    c.norm.std = {0.25f, 0.24f, 0.26f};
    c.seed = seed;
    DataLoader cpu(d, c);
    c.device = Device::cuda(0);
    DataLoader gpu(d, c);
    // Two epochs of 3 batches: 6 > 4 slots, so the device's upload slots are reused.
    test::check_same_batches(cpu, gpu, {0, 1}, 3);
  }
}

TEST_CASE("folder training and predict with --device cuda agree with the CPU",
          "[cuda][folder][predict][model]") {
  const fs::path dir = test::scratch_dir("cuda_folder_run");
  make_folder(dir / "data", {{"train", 4}, {"val", 2}});
  const fs::path run = dir / "run";
  std::ostringstream log;
  const RunResult r = run_train(
      test::parse_args({"--dataset", "folder", "--data", (dir / "data").string(), "--model",
                        "plain", "--batch-size", "4", "--epochs", "1", "--lr", "0.05",
                        "--workers", "2", "--device", "cuda", "--out", run.string()}),
      log);
  INFO(log.str());
  REQUIRE(r.status == RunStatus::Finished);
  REQUIRE(r.history.size() == 1);
  CHECK_THAT(log.str(), Catch::Contains("12 training / 6 test images, 3 classes"));
  CHECK(std::isfinite(r.history[0].train_loss));
  const fs::path ckpt = run / "best.safetensors";
  REQUIRE(fs::exists(ckpt));

  // predict on both devices, every class's logit (--top-k 3 of 3 classes).
  const auto predict = [&](const std::string& device) {
    const fs::path out = dir / ("predict-" + device + ".json");
    const std::string cmd = fmt::format(
        "'{}/predict' --checkpoint '{}' --json -k 3 --device {} --batch-size 4 '{}' > '{}'",
        MINIDL_BINARY_DIR, ckpt.string(), device, (dir / "data" / "val").string(), out.string());
    const int status = std::system(cmd.c_str());
    INFO(cmd);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    return nlohmann::json::parse(test::read_text(out));
  };
  const nlohmann::json cpu = predict("cpu"), gpu = predict("cuda");
  REQUIRE(cpu["predictions"].size() == 6);
  REQUIRE(gpu["predictions"].size() == 6);

  // The bound. Both devices compute the same float32 network on the same inputs (the host decodes;
  // normalisation is exact on both, tests/ops/augment_test.cpp); they differ only in how each
  // convolution and the linear layer sum their K = C_in k_h k_w products. A float32 sum of K
  // products is within gamma_K = K u / (1 - K u) ~ K u (u = 2^-24) of the exact one, relative to
  // the sum of their absolute values (Higham, Thm 3.5). To first order the layers' errors add up
  // along the network (ReLU, max-pool and the residual-free plain net's pooling are 1-Lipschitz;
  // eval-mode BN after one epoch scales by gamma / sqrt(running var + eps) ~ 1), and each device's
  // logits are within u sum_l K_l of the exact ones relative to the logits' scale, so the two are
  // within twice that. The scale is the largest |logit| plus the RMS of all logits (sums of
  // products may cancel to a small logit: the RMS keeps the bound from vanishing with it).
  const std::unique_ptr<Module> model = build_run_model(read_saved_run(ckpt.string()).config, 3);
  double sum_k = 0;
  for (const NamedParameter& p : model->named_parameters())
    if (p.param->value.dim() >= 2)
      sum_k += static_cast<double>(p.param->value.numel() / p.param->value.size(0));
  double zmax = 0, zsq = 0;
  for (const auto& pr : cpu["predictions"])
    for (const auto& zj : pr["logits"]) {
      const double z = zj.get<double>();
      zmax = std::max(zmax, std::abs(z)), zsq += z * z;
    }
  const double scale = zmax + std::sqrt(zsq / 18.0);
  const double tol = 2.0 * sum_k * 0x1p-24 * scale;
  INFO("sum K = " << sum_k << ", logit scale " << scale << ", bound " << tol);

  // The test loss of the run's own evaluation (the folder's evaluation loader on the device)
  // from the CPU's logits: the cross-entropy of logits z moves by at most 2 max|dz| when z moves
  // by dz (its gradient softmax(z) - onehot has L1 norm <= 2), so it is within 2 tol of the run's,
  // plus float32 rounding of the loss itself (relative 2^-20 leaves room for its mean).
  double worst = 0, loss = 0;
  for (size_t i = 0; i < 6; ++i) {
    const auto &a = cpu["predictions"][i], &b = gpu["predictions"][i];
    REQUIRE(a["file"] == b["file"]);
    REQUIRE(a["logits"].size() == 3);
    REQUIRE(b["logits"].size() == 3);
    const std::string label = fs::path(a["file"].get<std::string>()).parent_path().filename();
    double zm = -1e300, sum = 0, zlabel = 0;
    for (int c = 0; c < 3; ++c) {
      const double za = a["logits"][c].get<double>(), zb = b["logits"][c].get<double>();
      worst = std::max(worst, std::abs(za - zb));
      zm = std::max(zm, za);
    }
    for (int c = 0; c < 3; ++c) sum += std::exp(a["logits"][c].get<double>() - zm);
    const char* names[] = {"ant", "bee", "cow"};  // the classes in label order (sorted)
    int labelled = 0;
    for (int c = 0; c < 3; ++c)
      if (label == names[c]) zlabel = a["logits"][c].get<double>(), ++labelled;
    REQUIRE(labelled == 1);
    loss += (zm + std::log(sum) - zlabel) / 6.0;
  }
  INFO("max |logit difference| " << worst);
  CHECK(worst <= tol);
  const double run_loss = r.history[0].test_loss;
  INFO("test loss: run (cuda) " << run_loss << ", from predict's CPU logits " << loss);
  CHECK(std::abs(run_loss - loss) <= 2 * tol + 0x1p-20 * std::abs(loss));
  std::error_code ec;
  fs::remove_all(dir, ec);
}

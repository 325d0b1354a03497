// bench_decode: can the folder dataset's decoding keep up with training? Measures, at one image
// size, the images/s the DataLoader delivers from a folder (decode + transform + augment, the
// training view) with each --workers count, and the images/s of one training step (forward, loss,
// backward, SGD) of a model on such batches; prints medians and the ratio decode / step.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "bench_common.h"
#include "data/folder.h"
#include "data/image.h"
#include "data/loader.h"
#include "layers/loss.h"
#include "models/models.h"
#include "optim/optimizer.h"

using namespace minidl;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

const char* kHelp = R"(bench_decode: folder decoding throughput against the training step

  --data DIR          a folder dataset (train/<class>/...); default: generate --generate images
  --generate N        images to generate when --data is not given (default 256), 500x375 JPEG q90
  --image-size S      the size the model sees (default 224)
  --batch-size N      images per batch (default 32)
  --workers LIST      decoding thread counts to measure (default 1,2)
  --batches N         batches per timed epoch (default 8); 3 epochs, median
  --model NAME        model of the step (default resnet18, ImageNet stem when S > 32)
  --steps N           timed steps (default 5, after 1 untimed)
)";

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

fs::path generate(int n) {
  const fs::path root = fs::temp_directory_path() / fmt::format("minidl_bench_decode_{}", n);
  if (fs::exists(root / "done")) return root;
  const int w = 500, h = 375;
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int i = 0; i < n; ++i) {
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c)  // smooth shapes with some texture, like a photograph
          px[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(
              128 + 60 * std::sin((x + 7 * i) * 0.02 * (c + 1)) * std::cos(y * 0.03) +
              ((x * 31 + y * 17 + i) % 23));
    // The first image of each class also goes to val/ (the folder dataset needs both splits).
    for (const char* split : {"train", "val"}) {
      if (split == std::string("val") && i >= 4) continue;
      const fs::path dir = root / split / fmt::format("c{}", i % 4);
      fs::create_directories(dir);
      write_jpeg((dir / fmt::format("{}.jpg", i)).string(), px.data(), w, h, 3, 90);
    }
  }
  std::ofstream(root / "done") << "ok";
  return root;
}

int run(int argc, char** argv) {
  const bench::Args args(argc, argv,
                         {"data", "generate", "image-size", "batch-size", "workers", "batches",
                          "model", "steps"},
                         "bench_decode");
  if (args.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  const int S = static_cast<int>(args.get_int("image-size", 224));
  const int64_t B = args.get_int("batch-size", 32);
  const int64_t batches = args.get_int("batches", 8);
  const int64_t steps = args.get_int("steps", 5);
  const fs::path root = args.has("data") ? fs::path(args.get("data", ""))
                                         : generate(static_cast<int>(args.get_int("generate", 256)));
  std::vector<int> workers;
  for (const std::string& w : bench::split_commas(args.get("workers", "1,2")))
    workers.push_back(std::stoi(w));

  fmt::print("# bench_decode: images/s of the folder loader (training view) and of a training step\n");
  fmt::print("# device: {}\n", bench::device_summary(Device::cpu()));
  fmt::print("# commit: {}   date: {}\n", bench::git_commit(), bench::utc_now());
  fmt::print("# command: {}\n", bench::command_line(argc, argv));
  fmt::print("# data: {}, image size {}, batch {}\n", root.string(), S, B);

  struct Row {
    std::string what;
    double ips;
  };
  std::vector<Row> rows;
  Tensor sample_x, sample_y;
  int classes = 0;
  for (int w : workers) {
    DataOptions opt;
    opt.image_size = S;
    opt.workers = w;
    const Dataset d = load_dataset("folder", root.string(), Split::Train, 0, opt);
    classes = d.num_classes;
    LoaderConfig lc;
    lc.batch_size = B;
    lc.augment = true;
    lc.drop_last = true;
    lc.norm = ChannelStats{{0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
    DataLoader loader(d, lc);
    std::vector<double> rates;
    for (int rep = 0; rep < 3; ++rep) {
      loader.start_epoch(rep);
      Batch b;
      int64_t n = 0;
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < batches && loader.next(b); ++i) n += b.size;
      rates.push_back(static_cast<double>(n) /
                      std::chrono::duration<double>(Clock::now() - t0).count());
      if (!sample_x.defined()) {
        sample_x = b.images.clone();
        sample_y = b.labels.clone();
      }
    }
    rows.push_back({fmt::format("decode, {} worker{}", w, w > 1 ? "s" : ""), median(rates)});
  }

  ModelConfig mc;
  mc.name = args.get("model", "resnet18");
  mc.num_classes = classes;
  mc.imagenet_stem = S > 32 && models().at(mc.name).imagenet_stem;
  std::unique_ptr<Module> model = make_model(mc);
  OptimizerConfig oc;
  oc.name = "sgd";
  oc.momentum = 0.9;
  std::unique_ptr<Optimizer> opt = make_optimizer(model->flat_parameters(), oc);
  SoftmaxCrossEntropy criterion;
  std::vector<double> step_rates;
  for (int64_t s = 0; s < steps + 1; ++s) {
    const auto t0 = Clock::now();
    model->zero_grad();
    criterion.forward(model->forward(sample_x, Mode::Train), sample_y);
    model->backward(criterion.backward());
    opt->step(0.01);
    (void)criterion.loss().to_vector<float>();
    if (s > 0)
      step_rates.push_back(static_cast<double>(sample_x.size(0)) /
                           std::chrono::duration<double>(Clock::now() - t0).count());
  }
  const double step = median(step_rates);
  fmt::print("\n| stage | images/s | / training step |\n| --- | ---: | ---: |\n");
  for (const Row& r : rows) fmt::print("| {} | {:.0f} | {:.2f}x |\n", r.what, r.ips, r.ips / step);
  fmt::print("| training step: {}{} at {}x{}, {} OpenMP threads | {:.1f} | 1.00x |\n", mc.name,
             mc.imagenet_stem ? " (ImageNet stem)" : "", S, S, omp_get_max_threads(), step);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
}

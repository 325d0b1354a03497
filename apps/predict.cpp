// predict: the top-k classes of images under a trained checkpoint.
//
//   predict --checkpoint runs/x/best.safetensors cat.jpg more.png photos/ [--top-k 5] [--json]
//
// The model, its class names, normalisation and input size come from the checkpoint's stored run
// configuration (config_json): each image gets the evaluation transform of training (shorter side
// resized, centre crop; data/folder.h), and the images go through the model in batches on
// --device, in the layout the run trained in (--channels-last: the batch converted to NHWC at the
// model's input, engine/mixed_precision.h; the predictions are the same either way). A folder
// argument contributes its .jpg/.jpeg/.png files (recursively, sorted).
// EXIF orientation is not applied (as in training, and torchvision's ImageFolder): an image
// whose tag asks for a rotation gets a note on stderr and "exif_orientation_ignored" in the JSON.
// A file that is missing or cannot be decoded is reported (on stderr, or in the JSON's "errors")
// and the others are still processed; the exit code is then 1. Usage errors exit with 2.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <nlohmann/json.hpp>

#include "data/folder.h"
#include "data/image.h"
#include "data/thread_pool.h"
#include "engine/mixed_precision.h"
#include "engine/setup.h"
#include "io/checkpoint.h"
#include "kernels/augment.h"

using namespace minidl;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Options {
  std::string checkpoint;
  std::vector<std::string> inputs;
  int top_k = 5;
  bool json = false;
  std::string device = "auto";
  int64_t batch_size = 64;
  int workers = 0;
};

struct Failure {
  std::string file, error;
};

// The files to classify, in argument order (a folder's images sorted); missing paths and
// folder entries that are not images by name become failures.
std::vector<std::string> expand_inputs(const std::vector<std::string>& args,
                                       std::vector<Failure>& failures) {
  std::vector<std::string> files;
  for (const std::string& a : args) {
    std::error_code ec;
    if (fs::is_directory(a, ec)) {
      std::vector<std::string> found;
      for (const fs::directory_entry& e : fs::recursive_directory_iterator(a, ec)) {
        if (e.is_directory()) continue;
        const std::string p = e.path().string();
        if (has_image_extension(p))
          found.push_back(p);
        else
          failures.push_back({p, "not a .jpg/.jpeg/.png file (skipped)"});
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) failures.push_back({a, "folder holds no .jpg/.jpeg/.png images"});
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(a, ec)) {
      files.push_back(a);  // named explicitly: decoded whatever its name (the decoder sniffs)
    } else {
      failures.push_back({a, "no such file or folder"});
    }
  }
  return files;
}

struct Prediction {
  std::string file;
  std::vector<std::pair<int, double>> top;  // (class, probability)
  std::vector<float> logits;                 // the model's outputs, every class (--json)
  int exif_orientation = 0;                  // its EXIF orientation tag when not 1 (ignored)
};

int run(const Options& o, std::ostream& out, std::ostream& err) {
  const SavedRun saved = read_saved_run(o.checkpoint);
  if (!saved.has_config)
    throw Error(str("checkpoint ", o.checkpoint,
                    ": holds no minidl run configuration (config_json), so the model, classes and "
                    "normalisation are unknown; predict reads checkpoints written by `train`"));
  const TrainConfig& cfg = saved.config;
  const int classes = cfg.num_classes > 0 ? cfg.num_classes
                                          : static_cast<int>(cfg.class_names.size());
  if (classes <= 0 || cfg.norm_mean.size() != 3 || cfg.norm_std.size() != 3)
    throw Error(str("checkpoint ", o.checkpoint, ": its configuration lacks the class count or "
                    "normalisation constants (written by an older minidl?)"));
  std::vector<std::string> names = cfg.class_names;
  for (int c = static_cast<int>(names.size()); c < classes; ++c) names.push_back(str("class ", c));

  const PickedDevice dev = pick_device(o.device);
  std::unique_ptr<Module> model = build_run_model(cfg, classes);
  model->to(dev.device);
  try {
    load_checkpoint(o.checkpoint, *model, nullptr);
  } catch (const Error& e) {
    throw Error(str("checkpoint ", o.checkpoint, " does not fit the model its configuration names (",
                    cfg.model, ", ", classes, " classes): ", e.what()));
  }

  std::vector<Failure> failures;
  const std::vector<std::string> files = expand_inputs(o.inputs, failures);
  ImageFiles f;
  f.paths = files;
  f.opt.image_size = cfg.image_size;
  const int64_t S = cfg.image_size, per_image = 3 * S * S;
  const int64_t B = std::max<int64_t>(1, o.batch_size);
  AugmentConfig aug;  // normalisation only: no padding, crop offset 0, no flip, no cutout
  aug.pad = 0;
  std::copy(cfg.norm_mean.begin(), cfg.norm_mean.end(), aug.mean.begin());
  std::copy(cfg.norm_std.begin(), cfg.norm_std.end(), aug.std.begin());
  ThreadPool pool(o.workers > 0 ? o.workers
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));

  std::vector<Prediction> preds;
  for (int64_t begin = 0; begin < static_cast<int64_t>(files.size()); begin += B) {
    const int64_t n = std::min<int64_t>(B, static_cast<int64_t>(files.size()) - begin);
    std::vector<uint8_t> px(static_cast<size_t>(n * per_image));
    std::vector<std::string> errors(static_cast<size_t>(n));
    std::vector<int> orientation(static_cast<size_t>(n));
    pool.parallel_for(n, [&](int64_t k) {
      try {
        decode_eval(f, begin + k, px.data() + k * per_image);
        orientation[static_cast<size_t>(k)] =
            read_exif_orientation(files[static_cast<size_t>(begin + k)]);
      } catch (const Error& e) {
        errors[static_cast<size_t>(k)] = e.what();
      }
    });
    // The decodable images of the batch, packed.
    std::vector<int64_t> ok;
    for (int64_t k = 0; k < n; ++k) {
      if (errors[static_cast<size_t>(k)].empty()) {
        if (static_cast<int64_t>(ok.size()) != k)
          std::copy_n(px.begin() + k * per_image, per_image, px.begin() + ok.size() * per_image);
        ok.push_back(k);
      } else {
        failures.push_back({files[static_cast<size_t>(begin + k)], errors[static_cast<size_t>(k)]});
      }
    }
    if (ok.empty()) continue;
    const int64_t m = static_cast<int64_t>(ok.size());
    px.resize(static_cast<size_t>(m * per_image));
    const Tensor images = Tensor::from_vector(px, Shape{m, 3, S, S}, dev.device);
    std::vector<int32_t> idx(static_cast<size_t>(m)), params(static_cast<size_t>(5 * m), 0);
    for (int64_t k = 0; k < m; ++k) {
      idx[k] = static_cast<int32_t>(k);
      params[5 * k + 3] = params[5 * k + 4] = -1;
    }
    Tensor x = Tensor::empty(Shape{m, 3, S, S}, DType::F32, dev.device);
    augment_batch(x, images, Tensor::from_vector(idx, Shape{m}, dev.device),
                  Tensor::from_vector(params, Shape{m, 5}, dev.device), aug);
    const Tensor input = model_input(x, DType::F32, activation_layout(cfg.channels_last));
    const std::vector<float> logits = model->forward(input, Mode::Eval).to_vector<float>();
    for (int64_t k = 0; k < m; ++k) {
      const float* z = logits.data() + k * classes;
      const double zmax = *std::max_element(z, z + classes);
      std::vector<double> p(static_cast<size_t>(classes));
      double sum = 0.0;
      for (int c = 0; c < classes; ++c) sum += p[c] = std::exp(static_cast<double>(z[c]) - zmax);
      std::vector<int> order(static_cast<size_t>(classes));
      std::iota(order.begin(), order.end(), 0);
      const int k_top = std::min(o.top_k, classes);
      std::partial_sort(order.begin(), order.begin() + k_top, order.end(),
                        [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
      Prediction pr;
      pr.file = files[static_cast<size_t>(begin + ok[static_cast<size_t>(k)])];
      pr.logits.assign(z, z + classes);
      const int orient = orientation[static_cast<size_t>(ok[static_cast<size_t>(k)])];
      if (orient > 1) pr.exif_orientation = orient;
      for (int t = 0; t < k_top; ++t) pr.top.push_back({order[t], p[order[t]] / sum});
      preds.push_back(std::move(pr));
    }
  }

  if (o.json) {
    json j;
    j["checkpoint"] = o.checkpoint;
    j["model"] = cfg.model;
    j["image_size"] = cfg.image_size;
    j["predictions"] = json::array();
    for (const Prediction& p : preds) {
      json top = json::array();
      for (const auto& [c, prob] : p.top)
        top.push_back({{"class", names[static_cast<size_t>(c)]}, {"index", c}, {"probability", prob}});
      json pj = {{"file", p.file}, {"top", top}, {"logits", p.logits}};
      if (p.exif_orientation > 1) pj["exif_orientation_ignored"] = p.exif_orientation;
      j["predictions"].push_back(pj);
    }
    j["errors"] = json::array();
    for (const Failure& fl : failures) j["errors"].push_back({{"file", fl.file}, {"error", fl.error}});
    out << j.dump(2) << '\n';
  } else {
    for (const Prediction& p : preds) {
      out << p.file << '\n';
      for (size_t t = 0; t < p.top.size(); ++t)
        out << fmt::format("  {}. {:<16} {:6.2f}%\n", t + 1, names[static_cast<size_t>(p.top[t].first)],
                           100.0 * p.top[t].second);
    }
  }
  for (const Prediction& p : preds)
    if (p.exif_orientation > 1)
      err << "predict: note: " << p.file << " has EXIF orientation " << p.exif_orientation
          << " (a camera's rotation or mirroring); it is classified as stored, unrotated, as "
             "training saw its images (minidl, like torchvision's ImageFolder, ignores EXIF "
             "orientation: docs/TRAINING.md)\n";
  for (const Failure& fl : failures) err << "predict: " << fl.file << ": " << fl.error << '\n';
  if (preds.empty() && failures.empty()) err << "predict: no images given\n";
  return failures.empty() && !preds.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app("Classify images with a checkpoint written by `train` (docs/TRAINING.md).",
               "predict");
  app.add_option("--checkpoint", o.checkpoint, "checkpoint written by train (best.safetensors)")
      ->required();
  app.add_option("inputs", o.inputs, "image files and folders of images")->required();
  app.add_option("--top-k,-k", o.top_k, "classes to print per image")->check(CLI::PositiveNumber);
  app.add_flag("--json", o.json, "print JSON (predictions and errors) instead of text");
  app.add_option("--device", o.device, "auto, cpu, cuda or cuda:N");
  app.add_option("--batch-size,-b", o.batch_size, "images per forward pass")
      ->check(CLI::PositiveNumber);
  app.add_option("--workers", o.workers, "decoding threads (0: one per core)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return run(o, std::cout, std::cerr);
  } catch (const std::exception& e) {
    std::cerr << "predict: error: " << e.what() << '\n';
    return 1;
  }
}

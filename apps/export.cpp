// export: a checkpoint written by `train` as an ONNX model (io/onnx.h).
//
//   export --checkpoint runs/x/best.safetensors --out model.onnx
//
// The model, its input size, class names and normalisation come from the checkpoint's stored run
// configuration; the class names, normalisation and input size are also written into the ONNX
// file's metadata_props. The file is read back and checked structurally before the command
// reports success. Exit codes: 0 written, 1 an error, 2 a usage error.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/setup.h"
#include "io/checkpoint.h"
#include "io/atomic_file.h"
#include "io/onnx.h"

using namespace minidl;

namespace {

int run(const std::string& checkpoint, const std::string& out_path) {
  const SavedRun saved = read_saved_run(checkpoint);
  if (!saved.has_config)
    throw Error(str("checkpoint ", checkpoint,
                    ": holds no minidl run configuration (config_json); export reads checkpoints "
                    "written by `train`"));
  const TrainConfig& cfg = saved.config;
  const int classes =
      cfg.num_classes > 0 ? cfg.num_classes : static_cast<int>(cfg.class_names.size());
  if (classes <= 0)
    throw Error(str("checkpoint ", checkpoint, ": its configuration names no class count"));
  std::unique_ptr<Module> model = build_run_model(cfg, classes);
  load_checkpoint(checkpoint, *model, nullptr);

  OnnxExportOptions opt;
  opt.image_size = cfg.image_size;
  opt.graph_name = cfg.model;
  opt.metadata["class_names"] = nlohmann::json(cfg.class_names).dump();
  opt.metadata["norm_mean"] = nlohmann::json(cfg.norm_mean).dump();
  opt.metadata["norm_std"] = nlohmann::json(cfg.norm_std).dump();
  opt.metadata["image_size"] = std::to_string(cfg.image_size);
  opt.metadata["model"] = cfg.model;
  const std::string bytes = export_onnx(*model, opt);
  const OnnxStructure s = read_onnx_structure(bytes, out_path);  // our own structural check
  write_file_atomic(out_path, bytes);
  std::cout << fmt::format("wrote {} ({:.1f} MB): {} {} nodes, {} initializers, opset {}, input "
                           "(batch, 3, {}, {}), output (batch, {})\n",
                           out_path, static_cast<double>(bytes.size()) / 1e6, cfg.model,
                           s.nodes.size(), s.initializers.size(), s.opset, cfg.image_size,
                           cfg.image_size, classes);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string checkpoint, out;
  CLI::App app("Export a checkpoint written by `train` to ONNX (docs/TRAINING.md).", "export");
  app.add_option("--checkpoint", checkpoint, "checkpoint written by train")->required();
  app.add_option("--out", out, "the .onnx file to write")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return run(checkpoint, out);
  } catch (const std::exception& e) {
    std::cerr << "export: error: " << e.what() << '\n';
    return 1;
  }
}

// The model registry (make_model by name) and the model summary table.
#include "models/models.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>

#include "layers/residual.h"

namespace minidl {

namespace {

using Builder = std::function<std::unique_ptr<Module>(const ModelConfig&)>;

std::unique_ptr<Module> imagenet_style_resnet(const ModelConfig& cfg, BlockType block, std::vector<int> blocks) {
  return make_resnet(ResNetConfig{block, std::move(blocks), {64, 128, 256, 512}, cfg.num_classes,
                                  cfg.imagenet_stem, cfg.zero_init_residual, cfg.seed, cfg.dtype});
}

// He et al. section 4.2: depth 6n + 2, three stages of n BasicBlocks with 16, 32, 64 channels.
std::unique_ptr<Module> cifar_resnet(const ModelConfig& cfg, int depth) {
  const int n = (depth - 2) / 6;
  return make_resnet(ResNetConfig{BlockType::Basic, {n, n, n}, {16, 32, 64}, cfg.num_classes, false,
                                  cfg.zero_init_residual, cfg.seed, cfg.dtype});
}

// Name -> builder, in the order model_names() lists them.
const std::vector<std::pair<std::string, Builder>>& registry() {
  using B = BlockType;
  static const std::vector<std::pair<std::string, Builder>> r = {
      {"resnet18", [](const ModelConfig& c) { return imagenet_style_resnet(c, B::Basic, {2, 2, 2, 2}); }},
      {"resnet34", [](const ModelConfig& c) { return imagenet_style_resnet(c, B::Basic, {3, 4, 6, 3}); }},
      {"resnet50", [](const ModelConfig& c) { return imagenet_style_resnet(c, B::Bottleneck, {3, 4, 6, 3}); }},
      {"resnet101", [](const ModelConfig& c) { return imagenet_style_resnet(c, B::Bottleneck, {3, 4, 23, 3}); }},
      {"resnet152", [](const ModelConfig& c) { return imagenet_style_resnet(c, B::Bottleneck, {3, 8, 36, 3}); }},
      {"resnet20", [](const ModelConfig& c) { return cifar_resnet(c, 20); }},
      {"resnet32", [](const ModelConfig& c) { return cifar_resnet(c, 32); }},
      {"resnet44", [](const ModelConfig& c) { return cifar_resnet(c, 44); }},
      {"resnet56", [](const ModelConfig& c) { return cifar_resnet(c, 56); }},
      {"resnet110", [](const ModelConfig& c) { return cifar_resnet(c, 110); }},
      {"alexnet", make_alexnet},
      {"plain", make_plain},
  };
  return r;
}

bool has_imagenet_stem_option(const std::string& name) {
  return name == "resnet18" || name == "resnet34" || name == "resnet50" || name == "resnet101" ||
         name == "resnet152";
}

std::string join_names() {
  std::string s;
  for (const auto& n : model_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// Walks the module tree along the shape flow, one row per leaf. Children of a container run one
// after another, except in a Residual, where both branches read its input and the sum main +
// shortcut, which no leaf computes, gets its own row after them.
Shape walk(Module& m, const Shape& in, std::vector<SummaryRow>& rows) {
  const auto& children = m.children();
  if (children.empty()) {
    const Shape out = m.output_shape(in);
    rows.push_back({m.path().empty() ? m.type_name() : m.path(), m.describe(), out, m.parameter_count(),
                    m.forward_flops(in)});
    return out;
  }
  if (auto* residual = dynamic_cast<Residual*>(&m)) {
    const Shape out = walk(residual->main(), in, rows);
    if (residual->shortcut()) walk(*residual->shortcut(), in, rows);
    rows.push_back({m.path(), "residual sum: main + shortcut", out, 0, out.numel()});
    return out;
  }
  Shape s = in;
  for (const auto& [name, child] : children) s = walk(*child, s, rows);
  return s;
}

std::string with_commas(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& [name, builder] : registry()) names.push_back(name);
  return names;
}

std::unique_ptr<Module> make_model(const ModelConfig& cfg) {
  const auto& r = registry();
  const auto it = std::find_if(r.begin(), r.end(), [&](const auto& e) { return e.first == cfg.name; });
  MINIDL_CHECK(it != r.end(), "make_model: unknown model '", cfg.name, "'; known models: ", join_names());
  MINIDL_CHECK(cfg.num_classes >= 2, "make_model: ", cfg.name, ": num_classes must be >= 2, got ",
               cfg.num_classes);
  MINIDL_CHECK(!cfg.imagenet_stem || has_imagenet_stem_option(cfg.name), "make_model: ", cfg.name,
               " has no ImageNet stem option (only resnet18, resnet34, resnet50, resnet101, resnet152)");
  return it->second(cfg);
}

std::vector<SummaryRow> summary_rows(Module& model, const Shape& input) {
  MINIDL_CHECK(input.dim() >= 1 && input[0] >= 1, "model_summary: input shape needs a batch dimension, got ",
               input);
  // FLOPs per image: walk with batch 1, then show the shapes at the caller's batch size.
  std::vector<SummaryRow> rows;
  walk(model, input.with(0, 1), rows);
  for (auto& r : rows) r.output = r.output.with(0, input[0]);
  return rows;
}

std::string model_summary(Module& model, const Shape& input) {
  const std::vector<SummaryRow> rows = summary_rows(model, input);
  size_t wp = 5, wd = 5;
  for (const auto& r : rows) {
    wp = std::max(wp, r.path.size());
    wd = std::max(wd, r.description.size());
  }
  const std::string line = fmt::format("{:-<{}}\n", "", wp + wd + 20 + 12 + 12 + 8);
  std::string s = fmt::format("{} on input {}\n", model.describe(), input.str());
  s += line;
  s += fmt::format("{:<{}}  {:<{}}  {:<20}  {:>12}  {:>12}\n", "Layer", wp, "Type", wd, "Output shape",
                   "Params", "MFLOP");
  s += line;
  for (const auto& r : rows)
    s += fmt::format("{:<{}}  {:<{}}  {:<20}  {:>12}  {:>12.3f}\n", r.path, wp, r.description, wd,
                     r.output.str(), with_commas(r.params), static_cast<double>(r.flops) * 1e-6);
  s += line;
  s += fmt::format("Total parameters: {}\n", with_commas(model.parameter_count()));
  s += fmt::format("Forward FLOPs per image: {:.2f} GFLOP\n",
                   static_cast<double>(model.forward_flops(input.with(0, 1))) * 1e-9);
  return s;
}

}  // namespace minidl

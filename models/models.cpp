// The model registry (make_model by name) and the model summary table.
#include "models/models.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>

#include "layers/residual.h"

namespace minidl {

namespace {

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

}  // namespace

const Registry<ModelKind>& models() {
  using B = BlockType;
  static const Registry<ModelKind> r(
      "model",
      {{"resnet18", "torchvision's ResNet-18: BasicBlock [2,2,2,2], CIFAR stem (or --imagenet-stem)",
        {[](const ModelConfig& c) { return imagenet_style_resnet(c, B::Basic, {2, 2, 2, 2}); }, true}},
       {"resnet34", "torchvision's ResNet-34: BasicBlock [3,4,6,3]",
        {[](const ModelConfig& c) { return imagenet_style_resnet(c, B::Basic, {3, 4, 6, 3}); }, true}},
       {"resnet50", "torchvision's ResNet-50: Bottleneck [3,4,6,3]",
        {[](const ModelConfig& c) { return imagenet_style_resnet(c, B::Bottleneck, {3, 4, 6, 3}); }, true}},
       {"resnet101", "torchvision's ResNet-101: Bottleneck [3,4,23,3]",
        {[](const ModelConfig& c) { return imagenet_style_resnet(c, B::Bottleneck, {3, 4, 23, 3}); }, true}},
       {"resnet152", "torchvision's ResNet-152: Bottleneck [3,8,36,3]",
        {[](const ModelConfig& c) { return imagenet_style_resnet(c, B::Bottleneck, {3, 8, 36, 3}); }, true}},
       {"resnet20", "He et al.'s CIFAR ResNet-20: 3 stages of 3 BasicBlocks, 16-32-64 channels",
        {[](const ModelConfig& c) { return cifar_resnet(c, 20); }, false}},
       {"resnet32", "CIFAR ResNet-32: 3 stages of 5 BasicBlocks",
        {[](const ModelConfig& c) { return cifar_resnet(c, 32); }, false}},
       {"resnet44", "CIFAR ResNet-44: 3 stages of 7 BasicBlocks",
        {[](const ModelConfig& c) { return cifar_resnet(c, 44); }, false}},
       {"resnet56", "CIFAR ResNet-56: 3 stages of 9 BasicBlocks",
        {[](const ModelConfig& c) { return cifar_resnet(c, 56); }, false}},
       {"resnet110", "CIFAR ResNet-110: 3 stages of 18 BasicBlocks",
        {[](const ModelConfig& c) { return cifar_resnet(c, 110); }, false}},
       {"alexnet", "AlexNet for 32x32 inputs: five convolutions, two 4096-wide layers with dropout",
        {make_alexnet, false, /*batchnorm=*/false}},
       {"plain", "a small CNN without shortcuts, for comparison", {make_plain, false}}});
  return r;
}

namespace {

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

std::vector<std::string> model_names() { return models().names(); }

std::vector<std::string> imagenet_stem_model_names() {
  std::vector<std::string> names;
  for (const auto& e : models().entries())
    if (e.value.imagenet_stem) names.push_back(e.name);
  return names;
}

bool model_has_batchnorm(const std::string& name) {
  const Registry<ModelKind>::Entry* e = models().find(name);
  return e != nullptr && e->value.batchnorm;
}

std::unique_ptr<Module> make_model(const ModelConfig& cfg) {
  const Registry<ModelKind>::Entry* e = models().find(cfg.name);
  MINIDL_CHECK(e != nullptr, "make_model: ", models().unknown_message(cfg.name));
  MINIDL_CHECK(cfg.num_classes >= 2, "make_model: ", cfg.name, ": num_classes must be >= 2, got ",
               cfg.num_classes);
  MINIDL_CHECK(!cfg.imagenet_stem || e->value.imagenet_stem, "make_model: ", cfg.name,
               " has no ImageNet stem option (only ", join_or(imagenet_stem_model_names()), ")");
  return e->value.build(cfg);
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

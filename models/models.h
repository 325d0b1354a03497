// The model zoo, built by name.
//
//   resnet18, resnet34                  BasicBlock [2,2,2,2], [3,4,6,3], widths 64-128-256-512
//   resnet50, resnet101, resnet152      Bottleneck [3,4,6,3], [3,4,23,3], [3,8,36,3]
//       CIFAR stem by default: conv 3x3 stride 1 (3 -> 64), BN, ReLU, no max-pool;
//       imagenet_stem: conv 7x7 stride 2 pad 3, BN, ReLU, max-pool 3x3 stride 2 pad 1.
//       Names as torchvision: conv1, bn1, layer1.0.conv1, ..., fc.
//   resnet20/32/44/56/110               He et al.'s CIFAR ResNets: 3 stages of n = (depth-2)/6
//       BasicBlocks, 16-32-64 channels, global pool, fc (projection shortcuts, "option B").
//   alexnet                             AlexNet for 32x32 inputs: five conv layers, three
//       max-pools, two 4096-wide fully connected layers with dropout.
//   plain                               a small CNN without shortcuts, for comparison.
//
// Initialisation as torchvision: convs kaiming_normal(fan_out, relu), BN weight 1 bias 0, Linear
// nn.Linear's default; the seed makes it reproducible.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/registry.h"
#include "layers/module.h"

namespace minidl {

struct ModelConfig {
  std::string name = "resnet18";
  int num_classes = 10;
  bool imagenet_stem = false;       // ResNet-18..152 only
  bool zero_init_residual = false;  // torchvision's option: last BN of each block starts at 0
  double dropout = 0.5;             // AlexNet classifier dropout
  uint64_t seed = 0;
  DType dtype = DType::F32;
};

// What a model's registry entry holds besides its name and help line.
struct ModelKind {
  std::function<std::unique_ptr<Module>(const ModelConfig&)> build;
  bool imagenet_stem = false;  // accepts ModelConfig::imagenet_stem (ResNet-18..152)
  bool batchnorm = true;       // has BatchNorm layers (what --sync-bn synchronises)
};
// Every model by name, in the order above: for `train --model`, its --help and make_model.
const Registry<ModelKind>& models();

// Throws naming the unknown model and listing the known names.
std::unique_ptr<Module> make_model(const ModelConfig& cfg);
// Whether the model of that name has BatchNorm layers (false for an unknown name).
bool model_has_batchnorm(const std::string& name);
std::vector<std::string> model_names();
// The models that take an ImageNet stem (resnet18 ... resnet152).
std::vector<std::string> imagenet_stem_model_names();

// A table: each layer (path, description), its output shape and parameter count, then the total
// parameter count and forward FLOPs per image, for input shape (1, 3, 32, 32) by default.
std::string model_summary(Module& model, const Shape& input = Shape{1, 3, 32, 32});

// The rows of that table: one per leaf layer in forward order (a residual block also gets a row
// for its sum main + shortcut, which no leaf computes), so that the rows' parameters add up to
// model.parameter_count() and their FLOPs to model.forward_flops(input with batch 1).
struct SummaryRow {
  std::string path;
  std::string description;
  Shape output;    // for the given input's batch size
  int64_t params;  // the layer's own parameters
  int64_t flops;   // forward FLOPs for one image
};
std::vector<SummaryRow> summary_rows(Module& model, const Shape& input = Shape{1, 3, 32, 32});

// The builders make_model dispatches to, for callers that need a configuration make_model has no
// name for (the tests build tiny ResNets to check whole-model gradients).
enum class BlockType { Basic, Bottleneck };
struct ResNetConfig {
  BlockType block = BlockType::Basic;
  std::vector<int> blocks;       // blocks per stage, e.g. {2, 2, 2, 2}
  std::vector<int64_t> widths;   // planes per stage, e.g. {64, 128, 256, 512}; the stem has widths[0]
  int num_classes = 10;
  bool imagenet_stem = false;
  bool zero_init_residual = false;
  uint64_t seed = 0;
  DType dtype = DType::F32;
};
std::unique_ptr<Module> make_resnet(const ResNetConfig& cfg);
std::unique_ptr<Module> make_alexnet(const ModelConfig& cfg);  // uses num_classes, dropout, seed, dtype
std::unique_ptr<Module> make_plain(const ModelConfig& cfg);    // uses num_classes, seed, dtype

}  // namespace minidl

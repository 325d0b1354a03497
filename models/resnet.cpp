// ResNet (He et al., "Deep Residual Learning for Image Recognition", 2015), built as
// torchvision.models.ResNet builds it, with two stems:
//
//   CIFAR stem:    conv1 3x3 s1 p1 -> bn1 -> relu                      (32x32 stays 32x32)
//   ImageNet stem: conv1 7x7 s2 p3 -> bn1 -> relu -> maxpool 3x3 s2 p1 (224 -> 56)
//   then layer1 .. layerS: stage s has blocks[s] blocks of width widths[s]; its first block has
//   stride 1 (s = 0) or 2 and a projection shortcut when the shape changes;
//   then avgpool (global) -> flatten -> fc (widths.back() * expansion -> num_classes).
//
// resnet18..152 use widths 64-128-256-512. He et al.'s CIFAR ResNets (resnet20..110) use three
// stages of 16-32-64 with the CIFAR stem. The paper used shortcut option A for them (identity with
// zero-padded extra channels, no parameters); we use option B (1x1 conv + BN projection) so the
// same BasicBlock serves every model. That adds two small projections, so resnet20 has 272,474
// parameters here instead of the paper's 0.27M of option A (scripts/param_counts.py).
#include <functional>

#include "core/init.h"
#include "layers/linear.h"
#include "layers/pooling.h"
#include "layers/residual.h"
#include "models/models.h"

namespace minidl {

namespace {

// Every module below `m`, depth first, `m` included.
void visit(Module& m, const std::function<void(Module&)>& f) {
  f(m);
  for (auto& [name, child] : m.children()) visit(*child, f);
}

// The layer order is written once, in the constructor; shapes, FLOPs, forward and backward (the
// same chain in reverse, conv1 accumulating its weight gradient and returning no dL/dx) come from
// Sequential.
class ResNet : public Sequential {
 public:
  explicit ResNet(const ResNetConfig& cfg) : Sequential("ResNet"), cfg_(cfg) {
    Generator gen(cfg.seed);
    const int64_t stem = cfg.widths.front();
    const Conv2dConfig stem_conv = cfg.imagenet_stem ? Conv2dConfig{3, stem, 7, 2, 3, false, cfg.dtype}
                                                     : Conv2dConfig{3, stem, 3, 1, 1, false, cfg.dtype};
    // The image needs no gradient: conv1 skips computing dL/dx.
    add("conv1", std::make_unique<Conv2d>(stem_conv, gen)).set_needs_input_grad(false);
    add("bn1", std::make_unique<BatchNorm2d>(BatchNorm2dConfig{stem, 0.1, 1e-5, cfg.dtype}));
    add("relu", std::make_unique<ReLU>());
    if (cfg.imagenet_stem) add("maxpool", std::make_unique<MaxPool2d>(Pool2dParams{3, 2, 1}));

    const int64_t expansion = cfg.block == BlockType::Basic ? BasicBlock::expansion : Bottleneck::expansion;
    int64_t in = stem;
    for (size_t s = 0; s < cfg.blocks.size(); ++s) {
      auto stage = std::make_unique<Sequential>();
      for (int b = 0; b < cfg.blocks[s]; ++b) {
        const BlockConfig bc{in, cfg.widths[s], (s > 0 && b == 0) ? 2 : 1, cfg.dtype};
        if (cfg.block == BlockType::Basic)
          last_bns_.push_back(&stage->add(std::make_unique<BasicBlock>(bc, gen)).last_bn());
        else
          last_bns_.push_back(&stage->add(std::make_unique<Bottleneck>(bc, gen)).last_bn());
        in = cfg.widths[s] * expansion;
      }
      add(str("layer", s + 1), std::move(stage));
    }

    add("avgpool", std::make_unique<GlobalAvgPool>());                                   // (N, C, 1, 1)
    add("flatten", std::make_unique<Flatten>());                                         // (N, C)
    add("fc", std::make_unique<Linear>(LinearConfig{in, cfg.num_classes, true, cfg.dtype}, gen));  // logits

    // torchvision's initialisation: convs kaiming_normal(fan_out, relu); BN weight 1, bias 0 (the
    // BatchNorm2d constructor already did that); fc keeps nn.Linear's default.
    visit(*this, [&](Module& m) {
      if (auto* conv = dynamic_cast<Conv2d*>(&m))
        init::kaiming_normal(conv->weight().value, gen, 0.0, init::FanMode::FanOut, "relu");
    });
    // zero_init_residual: each block starts as the identity on its shortcut (Goyal et al. 2017).
    if (cfg.zero_init_residual)
      for (BatchNorm2d* bn : last_bns_) bn->weight().value.zero_();
  }

  std::string describe() const override {
    std::string blocks, widths;
    for (size_t s = 0; s < cfg_.blocks.size(); ++s) {
      blocks += str(s ? ", " : "", cfg_.blocks[s]);
      widths += str(s ? "-" : "", cfg_.widths[s]);
    }
    return str("ResNet(", cfg_.block == BlockType::Basic ? "BasicBlock" : "Bottleneck", " [", blocks,
               "], widths ", widths, ", ", cfg_.imagenet_stem ? "imagenet" : "cifar", " stem, ",
               cfg_.num_classes, " classes)");
  }

  // A wrong input is reported as the model's (forward checks it before any work).
  Shape output_shape(const Shape& in) const override {
    MINIDL_CHECK(in.dim() == 4 && in[1] == 3, who(), ": expected images (N, 3, H, W), got ", in);
    return Sequential::output_shape(in);
  }

 private:
  ResNetConfig cfg_;
  std::vector<BatchNorm2d*> last_bns_;  // each block's last BN (zero_init_residual)
};

}  // namespace

std::unique_ptr<Module> make_resnet(const ResNetConfig& cfg) {
  MINIDL_CHECK(!cfg.blocks.empty() && cfg.blocks.size() == cfg.widths.size(),
               "make_resnet: need one width per stage, got ", cfg.blocks.size(), " stages and ",
               cfg.widths.size(), " widths");
  for (size_t s = 0; s < cfg.blocks.size(); ++s)
    MINIDL_CHECK(cfg.blocks[s] >= 1 && cfg.widths[s] >= 1, "make_resnet: stage ", s + 1,
                 " needs at least one block and a positive width, got ", cfg.blocks[s], " blocks of width ",
                 cfg.widths[s]);
  MINIDL_CHECK(cfg.num_classes >= 2, "make_resnet: num_classes must be >= 2, got ", cfg.num_classes);
  return std::make_unique<ResNet>(cfg);
}

}  // namespace minidl

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

class ResNet : public Module {
 public:
  explicit ResNet(const ResNetConfig& cfg) : Module("ResNet"), cfg_(cfg) {
    Generator gen(cfg.seed);
    const int64_t stem = cfg.widths.front();
    if (cfg.imagenet_stem) {
      conv1_ = std::make_unique<Conv2d>(Conv2dConfig{3, stem, 7, 2, 3, false, cfg.dtype}, gen);
      maxpool_ = std::make_unique<MaxPool2d>(Pool2dParams{3, 2, 1});
    } else {
      conv1_ = std::make_unique<Conv2d>(Conv2dConfig{3, stem, 3, 1, 1, false, cfg.dtype}, gen);
    }
    // The image needs no gradient: conv1 skips computing dL/dx.
    conv1_->set_needs_input_grad(false);
    bn1_ = std::make_unique<BatchNorm2d>(BatchNorm2dConfig{stem, 0.1, 1e-5, cfg.dtype});
    relu_ = std::make_unique<ReLU>();
    register_module("conv1", conv1_.get());
    register_module("bn1", bn1_.get());
    register_module("relu", relu_.get());
    if (maxpool_) register_module("maxpool", maxpool_.get());

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
      register_module(str("layer", s + 1), stage.get());
      layers_.push_back(std::move(stage));
    }

    avgpool_ = std::make_unique<GlobalAvgPool>();
    flatten_ = std::make_unique<Flatten>();
    fc_ = std::make_unique<Linear>(LinearConfig{in, cfg.num_classes, true, cfg.dtype}, gen);
    register_module("avgpool", avgpool_.get());
    register_module("flatten", flatten_.get());
    register_module("fc", fc_.get());

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

  Shape output_shape(const Shape& in) const override {
    MINIDL_CHECK(in.dim() == 4 && in[1] == 3, who(), ": expected images (N, 3, H, W), got ", in);
    Shape s = bn1_->output_shape(conv1_->output_shape(in));
    if (maxpool_) s = maxpool_->output_shape(s);
    for (const auto& stage : layers_) s = stage->output_shape(s);
    return fc_->output_shape(flatten_->output_shape(avgpool_->output_shape(s)));
  }

  // Summed along the shape flow, child by child.
  int64_t forward_flops(const Shape& in) const override {
    Shape s = conv1_->output_shape(in);
    int64_t f = conv1_->forward_flops(in) + bn1_->forward_flops(s) + relu_->forward_flops(s);
    if (maxpool_) {
      f += maxpool_->forward_flops(s);
      s = maxpool_->output_shape(s);
    }
    for (const auto& stage : layers_) {
      f += stage->forward_flops(s);
      s = stage->output_shape(s);
    }
    f += avgpool_->forward_flops(s);
    s = flatten_->output_shape(avgpool_->output_shape(s));
    return f + flatten_->forward_flops(s) + fc_->forward_flops(s);
  }

  Tensor forward(const Tensor& x, Mode mode) override {
    check_input(x);
    output_shape(x.shape());  // a wrong input is reported as the model's, before any work
    Tensor h = conv1_->forward(x, mode);
    h = bn1_->forward(h, mode);
    h = relu_->forward(h, mode);
    if (maxpool_) h = maxpool_->forward(h, mode);
    for (auto& stage : layers_) h = stage->forward(h, mode);
    h = avgpool_->forward(h, mode);  // (N, C, 1, 1)
    h = flatten_->forward(h, mode);  // (N, C)
    return fc_->forward(h, mode);    // (N, classes) logits
  }

  // The same chain in reverse. conv1 accumulates its weight gradient and returns no dL/dx.
  Tensor backward(const Tensor& dy) override {
    Tensor g = fc_->backward(dy);
    g = flatten_->backward(g);
    g = avgpool_->backward(g);
    for (size_t s = layers_.size(); s-- > 0;) g = layers_[s]->backward(g);
    if (maxpool_) g = maxpool_->backward(g);
    g = relu_->backward(g);
    g = bn1_->backward(g);
    return conv1_->backward(g);
  }

 private:
  ResNetConfig cfg_;
  std::unique_ptr<Conv2d> conv1_;
  std::unique_ptr<BatchNorm2d> bn1_;
  std::unique_ptr<ReLU> relu_;
  std::unique_ptr<MaxPool2d> maxpool_;  // ImageNet stem only
  std::vector<std::unique_ptr<Sequential>> layers_;
  std::unique_ptr<GlobalAvgPool> avgpool_;
  std::unique_ptr<Flatten> flatten_;
  std::unique_ptr<Linear> fc_;
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

// "plain": a small VGG-style CNN without shortcuts, to compare with the ResNets and to train
// quickly on the CPU. Three stages of two conv3x3-BN-ReLU units (32, 64, 128 channels), a 2x2
// max-pool between stages, then global average pooling and one linear layer:
//
//   features:  0 conv(3, 32)   1 bn  2 relu   3 conv(32, 32)   4 bn  5 relu   6 maxpool   32 -> 16
//              7 conv(32, 64)  8 bn  9 relu  10 conv(64, 64)  11 bn 12 relu  13 maxpool   16 -> 8
//             14 conv(64, 128) 15 bn 16 relu 17 conv(128, 128) 18 bn 19 relu
//   avgpool (global) -> flatten -> fc(128, classes)
//
// Initialised like the ResNets (convs kaiming_normal fan_out relu, no conv bias since BN follows,
// BN 1/0, fc nn.Linear's default), so a comparison isolates the shortcuts.
#include "core/init.h"
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/pooling.h"
#include "models/models.h"

namespace minidl {

namespace {

// features -> avgpool -> flatten -> fc: the order is written once, here, and the passes come from
// Sequential. The backward returns no input gradient: features.0 computes none.
class PlainNet : public Sequential {
 public:
  explicit PlainNet(const ModelConfig& cfg) : Sequential("PlainNet"), cfg_(cfg) {
    Generator gen(cfg.seed);
    const DType dt = cfg.dtype;
    auto features = std::make_unique<Sequential>();
    auto conv_bn_relu = [&](int64_t in, int64_t out) {
      Conv2d& c = features->add(std::make_unique<Conv2d>(Conv2dConfig{in, out, 3, 1, 1, false, dt}, gen));
      features->add(std::make_unique<BatchNorm2d>(BatchNorm2dConfig{out, 0.1, 1e-5, dt}));
      features->add(std::make_unique<ReLU>());
      return &c;
    };
    auto pool = [&] { features->add(std::make_unique<MaxPool2d>(Pool2dParams{2, 2, 0})); };
    std::vector<Conv2d*> convs;
    convs.push_back(conv_bn_relu(3, 32));
    convs.push_back(conv_bn_relu(32, 32));
    pool();
    convs.push_back(conv_bn_relu(32, 64));
    convs.push_back(conv_bn_relu(64, 64));
    pool();
    convs.push_back(conv_bn_relu(64, 128));
    convs.push_back(conv_bn_relu(128, 128));
    convs.front()->set_needs_input_grad(false);  // the image needs no gradient

    add("features", std::move(features));
    add("avgpool", std::make_unique<GlobalAvgPool>());  // (N, 128, 1, 1)
    add("flatten", std::make_unique<Flatten>());        // (N, 128)
    add("fc", std::make_unique<Linear>(LinearConfig{128, cfg.num_classes, true, dt}, gen));  // logits

    for (Conv2d* c : convs) init::kaiming_normal(c->weight().value, gen, 0.0, init::FanMode::FanOut, "relu");
  }

  std::string describe() const override { return str("PlainNet(", cfg_.num_classes, " classes)"); }

  // A wrong input is reported as the model's (forward checks it before any work).
  Shape output_shape(const Shape& in) const override {
    MINIDL_CHECK(in.dim() == 4 && in[1] == 3, who(), ": expected images (N, 3, H, W), got ", in);
    return Sequential::output_shape(in);
  }

 private:
  ModelConfig cfg_;
};

}  // namespace

std::unique_ptr<Module> make_plain(const ModelConfig& cfg) {
  MINIDL_CHECK(cfg.num_classes >= 2, "make_plain: num_classes must be >= 2, got ", cfg.num_classes);
  return std::make_unique<PlainNet>(cfg);
}

}  // namespace minidl

// AlexNet for 32x32 inputs: the CIFAR variant of Krizhevsky et al. (2012) found in most CIFAR
// training repositories. Five 3x3 convolutions (the first strided) with three 2x2 max-pools take
// 32x32 to 2x2, then the classifier of the original: two 4096-wide layers with dropout.
//
//   features:   0 conv(3, 64, k3, s2, p1)   1 relu  2 maxpool 2x2      32 -> 16 -> 8
//               3 conv(64, 192, k3, p1)     4 relu  5 maxpool 2x2       8 -> 4
//               6 conv(192, 384, k3, p1)    7 relu
//               8 conv(384, 256, k3, p1)    9 relu
//              10 conv(256, 256, k3, p1)   11 relu 12 maxpool 2x2       4 -> 2
//   flatten:    (N, 256, 2, 2) -> (N, 1024)
//   classifier: 0 dropout  1 linear(1024, 4096)  2 relu  3 dropout  4 linear(4096, 4096)  5 relu
//               6 linear(4096, classes)
//
// Parameter names follow torchvision's indexing (features.0.weight ... classifier.6.bias); the
// flatten has no parameters, so its name appears nowhere in the state_dict. Initialisation is
// PyTorch's default for every conv and linear layer, as torchvision's AlexNet (the constructors
// already draw it).
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/pooling.h"
#include "models/models.h"

namespace minidl {

namespace {

// features -> flatten -> classifier, each a Sequential: the order is written once, here, and the
// passes come from Sequential. The backward returns no input gradient: features.0 computes none.
class AlexNet : public Sequential {
 public:
  explicit AlexNet(const ModelConfig& cfg) : Sequential("AlexNet"), cfg_(cfg) {
    Generator gen(cfg.seed);
    const DType dt = cfg.dtype;
    auto conv = [&](int64_t in, int64_t out, int stride) {
      return std::make_unique<Conv2d>(Conv2dConfig{in, out, 3, stride, 1, true, dt}, gen);
    };
    auto pool = [] { return std::make_unique<MaxPool2d>(Pool2dParams{2, 2, 0}); };
    // Each dropout layer draws its masks from its own stream, seeded from the model's generator.
    auto dropout = [&] {
      const uint64_t seed = (static_cast<uint64_t>(gen.next_u32()) << 32) | gen.next_u32();
      return std::make_unique<Dropout>(cfg.dropout, seed);
    };

    auto features = std::make_unique<Sequential>();
    features->add(conv(3, 64, 2)).set_needs_input_grad(false);  // the image needs no gradient
    features->add(std::make_unique<ReLU>());
    features->add(pool());
    features->add(conv(64, 192, 1));
    features->add(std::make_unique<ReLU>());
    features->add(pool());
    features->add(conv(192, 384, 1));
    features->add(std::make_unique<ReLU>());
    features->add(conv(384, 256, 1));
    features->add(std::make_unique<ReLU>());
    features->add(conv(256, 256, 1));
    features->add(std::make_unique<ReLU>());
    features->add(pool());

    auto classifier = std::make_unique<Sequential>();
    classifier->add(dropout());
    classifier->add(std::make_unique<Linear>(LinearConfig{256 * 2 * 2, 4096, true, dt}, gen));
    classifier->add(std::make_unique<ReLU>());
    classifier->add(dropout());
    classifier->add(std::make_unique<Linear>(LinearConfig{4096, 4096, true, dt}, gen));
    classifier->add(std::make_unique<ReLU>());
    classifier->add(std::make_unique<Linear>(LinearConfig{4096, cfg.num_classes, true, dt}, gen));

    add("features", std::move(features));      // (N, 256, 2, 2) for 32x32 images
    add("flatten", std::make_unique<Flatten>());  // (N, 1024)
    add("classifier", std::move(classifier));  // (N, classes) logits
  }

  std::string describe() const override {
    return str("AlexNet(32x32, ", cfg_.num_classes, " classes, dropout ", cfg_.dropout, ")");
  }

  // A wrong input is reported as the model's (forward checks it before any work).
  Shape output_shape(const Shape& in) const override {
    MINIDL_CHECK(in.dim() == 4 && in[1] == 3, who(), ": expected images (N, 3, H, W), got ", in);
    return Sequential::output_shape(in);
  }

 private:
  ModelConfig cfg_;
};

}  // namespace

std::unique_ptr<Module> make_alexnet(const ModelConfig& cfg) {
  MINIDL_CHECK(cfg.num_classes >= 2, "make_alexnet: num_classes must be >= 2, got ", cfg.num_classes);
  MINIDL_CHECK(cfg.dropout >= 0.0 && cfg.dropout < 1.0, "make_alexnet: dropout must be in [0, 1), got ",
               cfg.dropout);
  return std::make_unique<AlexNet>(cfg);
}

}  // namespace minidl

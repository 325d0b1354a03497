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

class AlexNet : public Module {
 public:
  explicit AlexNet(const ModelConfig& cfg) : Module("AlexNet"), cfg_(cfg) {
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

    features_ = std::make_unique<Sequential>();
    features_->add(conv(3, 64, 2)).set_needs_input_grad(false);  // the image needs no gradient
    features_->add(std::make_unique<ReLU>());
    features_->add(pool());
    features_->add(conv(64, 192, 1));
    features_->add(std::make_unique<ReLU>());
    features_->add(pool());
    features_->add(conv(192, 384, 1));
    features_->add(std::make_unique<ReLU>());
    features_->add(conv(384, 256, 1));
    features_->add(std::make_unique<ReLU>());
    features_->add(conv(256, 256, 1));
    features_->add(std::make_unique<ReLU>());
    features_->add(pool());

    flatten_ = std::make_unique<Flatten>();

    classifier_ = std::make_unique<Sequential>();
    classifier_->add(dropout());
    classifier_->add(std::make_unique<Linear>(LinearConfig{256 * 2 * 2, 4096, true, dt}, gen));
    classifier_->add(std::make_unique<ReLU>());
    classifier_->add(dropout());
    classifier_->add(std::make_unique<Linear>(LinearConfig{4096, 4096, true, dt}, gen));
    classifier_->add(std::make_unique<ReLU>());
    classifier_->add(std::make_unique<Linear>(LinearConfig{4096, cfg.num_classes, true, dt}, gen));

    register_module("features", features_.get());
    register_module("flatten", flatten_.get());
    register_module("classifier", classifier_.get());
  }

  std::string describe() const override {
    return str("AlexNet(32x32, ", cfg_.num_classes, " classes, dropout ", cfg_.dropout, ")");
  }

  Shape output_shape(const Shape& in) const override {
    MINIDL_CHECK(in.dim() == 4 && in[1] == 3, who(), ": expected images (N, 3, H, W), got ", in);
    return classifier_->output_shape(flatten_->output_shape(features_->output_shape(in)));
  }

  int64_t forward_flops(const Shape& in) const override {
    const Shape f = features_->output_shape(in);
    const Shape flat = flatten_->output_shape(f);
    return features_->forward_flops(in) + flatten_->forward_flops(f) + classifier_->forward_flops(flat);
  }

  Tensor forward(const Tensor& x, Mode mode) override {
    check_input(x);
    output_shape(x.shape());  // a wrong input is reported as the model's, before any work
    Tensor h = features_->forward(x, mode);  // (N, 256, 2, 2) for 32x32 images
    h = flatten_->forward(h, mode);           // (N, 1024)
    return classifier_->forward(h, mode);     // (N, classes) logits
  }

  Tensor backward(const Tensor& dy) override {
    Tensor g = classifier_->backward(dy);
    g = flatten_->backward(g);
    return features_->backward(g);  // undefined: features.0 computes no dL/dx
  }

 private:
  ModelConfig cfg_;
  std::unique_ptr<Sequential> features_;
  std::unique_ptr<Flatten> flatten_;
  std::unique_ptr<Sequential> classifier_;
};

}  // namespace

std::unique_ptr<Module> make_alexnet(const ModelConfig& cfg) {
  MINIDL_CHECK(cfg.num_classes >= 2, "make_alexnet: num_classes must be >= 2, got ", cfg.num_classes);
  MINIDL_CHECK(cfg.dropout >= 0.0 && cfg.dropout < 1.0, "make_alexnet: dropout must be in [0, 1), got ",
               cfg.dropout);
  return std::make_unique<AlexNet>(cfg);
}

}  // namespace minidl

// Models written on the tape, with their weights taken from an explicit model (layers/, models/).
//
//   auto explicit_model = make_model({.name = "resnet20", .seed = 1});
//   ag::Parameters P = ag::Parameters::from_module(*explicit_model);   // copies, by state_dict name
//   ag::Var logits = ag::resnet(P, ag::Var(images), ag::resnet_spec("resnet20"), true);
//   ag::cross_entropy(logits, labels).backward();
//   P.grad("layer1.0.conv1.weight")   // == the explicit model's gradient, bit for bit on the CPU
//
// The forward functions state the layer order as the explicit models' constructors do, with the
// same names, so that every parameter finds its twin. tests/autograd/models_test.cpp compares the
// gradients of ResNet-20 and AlexNet element by element.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "layers/module.h"

namespace minidl::ag {

// Named leaves (parameters, requires_grad), BatchNorm states and dropout generators.
class Parameters {
 public:
  // Copies of m's parameters (leaves named as in its state_dict), of its BatchNorm running
  // statistics (by the BatchNorm's path) and of its Dropout layers' generators (by path), so that
  // the tape draws the masks the explicit layers draw.
  static Parameters from_module(Module& m);

  Var& operator[](const std::string& name);  // throws naming the missing parameter
  Tensor grad(const std::string& name) { return (*this)[name].grad(); }
  BatchNormState& batchnorm(const std::string& path);
  Generator& generator(const std::string& path);
  const std::vector<std::string>& names() const { return order_; }
  void zero_grad();

 private:
  std::map<std::string, Var> vars_;
  std::vector<std::string> order_;
  std::map<std::string, BatchNormState> bn_;
  std::map<std::string, Generator> gens_;
};

// y = relu?(bn(conv(x))) pieces shared by the models: BatchNorm by path ("layer1.0.bn1").
Var batchnorm(Parameters& P, const std::string& path, const Var& x, bool training);

struct ResNetSpec {
  bool bottleneck = false;
  std::vector<int> blocks;
  std::vector<int64_t> widths;
  bool imagenet_stem = false;
};
// The spec of a named ResNet of models/models.h: resnet18..152, resnet20..110.
ResNetSpec resnet_spec(const std::string& name);
Var resnet(Parameters& P, const Var& x, const ResNetSpec& spec, bool training);
// AlexNet for 32x32 (models/alexnet.cpp): dropout p as ModelConfig::dropout.
Var alexnet(Parameters& P, const Var& x, double dropout, bool training);

}  // namespace minidl::ag

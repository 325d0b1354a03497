// ResNet-20 and AlexNet written on the tape (autograd/models.h) against the explicit-layer models
// (models/): with the same weights, the same batch and the same dropout masks, one training step's
// loss, logits and every parameter gradient are equal bit for bit on the CPU, because both call
// the same kernel functions with the same arguments.
#include <catch2/catch.hpp>

#include <cstring>

#include "autograd/models.h"
#include "layers/loss.h"
#include "models/models.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

// One step of `model` (explicit) and of `tape_forward` (on the tape, with parameters copied from
// the model before the step), compared.
template <typename TapeForward>
void compare_step(Module& model, int64_t batch, uint64_t seed, TapeForward tape_forward) {
  INFO("seed " << seed);
  Generator g(seed);
  const Tensor x = uniform_tensor(Shape{batch, 3, 32, 32}, g, -2.0, 2.0, DType::F32);
  const Tensor labels = label_tensor(batch, 10, g);

  ag::Parameters P = ag::Parameters::from_module(model);  // before the step: same BN stats, masks

  model.zero_grad();
  const Tensor logits = model.forward(x, Mode::Train).clone();
  SoftmaxCrossEntropy loss_layer;
  const Tensor loss = loss_layer.forward(logits, labels).clone();
  model.backward(loss_layer.backward());

  const ag::Var tape_logits = tape_forward(P, ag::Var(x));
  ag::Var tape_loss = ag::cross_entropy(tape_logits, labels);
  tape_loss.backward();

  CHECK(bit_equal(tape_logits.value(), logits));
  CHECK(bit_equal(tape_loss.value(), loss));
  int compared = 0;
  for (const NamedParameter& np : model.named_parameters()) {
    INFO(np.name);
    CHECK(bit_equal(P.grad(np.name), np.param->grad));
    ++compared;
  }
  CHECK(compared == static_cast<int>(P.names().size()));
  // The BatchNorm statistics were updated alike.
  for (const NamedBuffer& nb : model.named_buffers()) {
    const auto dot = nb.name.rfind('.');
    const std::string path = nb.name.substr(0, dot), stat = nb.name.substr(dot + 1);
    if (stat == "running_mean") CHECK(bit_equal(P.batchnorm(path).running_mean, *nb.tensor));
    if (stat == "running_var") CHECK(bit_equal(P.batchnorm(path).running_var, *nb.tensor));
  }
}

}  // namespace

TEST_CASE("tape: ResNet-20 on the tape gives the explicit model's gradients bit for bit",
          "[autograd][model]") {
  const uint64_t seed = test_seed();
  auto model = make_model(ModelConfig{.name = "resnet20", .seed = seed});
  const ag::ResNetSpec spec = ag::resnet_spec("resnet20");
  compare_step(*model, 2, seed, [&](ag::Parameters& P, const ag::Var& x) {
    return ag::resnet(P, x, spec, true);
  });
}

TEST_CASE("tape: AlexNet (with dropout) on the tape gives the explicit model's gradients bit for bit",
          "[autograd][model]") {
  const uint64_t seed = test_seed();
  auto model = make_model(ModelConfig{.name = "alexnet", .dropout = 0.5, .seed = seed});
  compare_step(*model, 2, seed, [&](ag::Parameters& P, const ag::Var& x) {
    return ag::alexnet(P, x, 0.5, true);
  });
}

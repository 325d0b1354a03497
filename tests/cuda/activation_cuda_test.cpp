// CUDA activations on every KernelPath (cuDNN for ReLU/Sigmoid/Tanh on the Cudnn path, our kernel
// otherwise and always for LeakyReLU) against the CPU reference in float64 on the same float32
// inputs, forward and backward, on a ResNet-sized tensor and on odd lengths (1 element, one more
// than a block, not a multiple of 4).
#include <catch2/catch.hpp>

#include "kernels/activation.h"
#include "layers/activation.h"
#include "../support/cuda_paths.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("cuda activations match the float64 CPU reference", "[cuda][activation][sanitize]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const Device gpu = Device::cuda(0);
  for (Shape s : {Shape{8, 64, 32, 32}, Shape{1}, Shape{257}, Shape{3, 5, 7, 9}}) {
    // Inputs away from 0 so that ReLU's derivative is the same on both sides of any rounding.
    const Tensor x32 = away_from_zero_tensor(s, g, 1e-3, DType::F32);
    const Tensor dy32 = uniform_tensor(s, g, -1, 1, DType::F32);
    const Tensor x64 = cast(x32, DType::F64), dy64 = cast(dy32, DType::F64);
    for (Activation act : {Activation::ReLU, Activation::LeakyReLU, Activation::Sigmoid, Activation::Tanh}) {
      Tensor y_ref = Tensor::empty(s, DType::F64), dx_ref = Tensor::empty(s, DType::F64);
      activation_forward(y_ref, x64, act, 0.1);
      activation_backward(dx_ref, dy64, x64, y_ref, act, 0.1);
      for (KernelPath path : cuda_paths()) {
        INFO(activation_name(act) << " on " << kernel_path_name(path) << ", shape " << s);
        const Tensor x = x32.to(gpu), dy = dy32.to(gpu);
        Tensor y = Tensor::empty(s, DType::F32, gpu), dx = Tensor::empty(s, DType::F32, gpu);
        poison(y);
        poison(dx);
        activation_forward(y, x, act, 0.1, path);
        activation_backward(dx, dy, x, y, act, 0.1, path);
        // A float32 expf/tanhf evaluation is a few ulp from the exact value; cuDNN may use faster
        // intrinsics with a few ulp more: 1e-5 relative, plus 1e-6 absolute for results near 0.
        const Comparison cy = compare(y, y_ref, 1e-6, 1e-5);
        INFO("forward: " << cy.report);
        CHECK(cy.ok);
        // Backward multiplies dy by a derivative computed from that rounded y: the same bound, doubled.
        const Comparison cdx = compare(dx, dx_ref, 2e-6, 2e-5);
        INFO("backward: " << cdx.report);
        CHECK(cdx.ok);
      }
    }
  }
}

TEST_CASE("cuda ReLU layer runs on the input's device", "[cuda][activation]") {
  Generator g(test_seed());
  const Tensor x = normal_tensor(Shape{2, 3, 4, 5}, g, 1.0, DType::F32);
  ReLU relu;
  relu.set_kernel_path(KernelPath::Handwritten);  // named: the default (cuDNN) is not emulated
  const Tensor y = relu.forward(x.to(Device::cuda(0)), Mode::Train);
  CHECK(y.device() == Device::cuda(0));
  const auto v = y.to_vector<float>(), xs = x.to_vector<float>();
  for (size_t i = 0; i < v.size(); ++i) REQUIRE(v[i] == (xs[i] > 0 ? xs[i] : 0.0f));
}

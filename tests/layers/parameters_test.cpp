// The model's flat parameter buffers (layers/parameters.h): gathering in state_dict order, the
// parameters viewing their slices, zero_grad as one memset, staying bound across Module::to, and
// the errors. The CUDA move is tested in tests/cuda/core_cuda_test.cpp.
#include <catch2/catch.hpp>

#include <memory>

#include "layers/basic.h"
#include "layers/linear.h"
#include "layers/module.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

Parameter make_param(const std::vector<double>& v, DType dtype = DType::F64) {
  Parameter p;
  p.value = cast(Tensor::from_vector(v, Shape{static_cast<int64_t>(v.size())}), dtype);
  p.grad = Tensor::zeros(p.value.shape(), dtype);
  return p;
}

// Linear(3, 2) - Linear(2, 4) in float64: "0.weight" (2, 3), "0.bias" (2), "1.weight" (4, 2),
// "1.bias" (4); 20 elements.
std::unique_ptr<Sequential> two_linear() {
  Generator gen(7);
  auto net = std::make_unique<Sequential>();
  net->add(std::make_unique<Linear>(
      LinearConfig{.in_features = 3, .out_features = 2, .bias = true, .dtype = DType::F64}, gen));
  net->add(std::make_unique<Linear>(
      LinearConfig{.in_features = 2, .out_features = 4, .bias = true, .dtype = DType::F64}, gen));
  return net;
}

}  // namespace

TEST_CASE("flat parameters: gathered in order, each parameter a view of its slice",
          "[layers][parameters]") {
  Parameter a = make_param({1, 2, 3, 4, 5, 6});
  a.value = a.value.view(Shape{2, 3});
  a.grad = Tensor::full(Shape{2, 3}, 7.0, DType::F64);  // stale gradient: must be cleared
  Parameter b = make_param({-1, -2, -3, -4});
  FlatParameters flat({{"a", &a}, {"b", &b}});

  // Values copied in order; each parameter is a view of its slice, shape kept.
  CHECK(flat.values().shape() == Shape{10});
  CHECK(flat.numel() == 10);
  CHECK(flat.size() == 2);
  CHECK(flat.offset(0) == 0);
  CHECK(flat.offset(1) == 6);
  CHECK(flat.offset(2) == 10);
  CHECK(flat.values().to_vector<double>() == std::vector<double>{1, 2, 3, 4, 5, 6, -1, -2, -3, -4});
  CHECK(a.value.shape() == Shape{2, 3});
  CHECK(a.value.same_data(flat.values().slice(0, 6)));
  CHECK(b.value.same_data(flat.values().slice(6, 10)));
  CHECK(a.grad.same_data(flat.grads().slice(0, 6)));
  CHECK(b.grad.same_data(flat.grads().slice(6, 10)));
  CHECK(flat.grads().to_vector<double>() == std::vector<double>(10, 0.0));
  CHECK_NOTHROW(flat.check_bound("test"));

  // Writing through a parameter is seen in the flat buffer and the other way round.
  b.grad.fill_(3.0);
  a.grad.fill_(-1.0);
  CHECK(flat.grads().to_vector<double>() == std::vector<double>{-1, -1, -1, -1, -1, -1, 3, 3, 3, 3});
  flat.zero_grad();
  CHECK(a.grad.to_vector<double>() == std::vector<double>(6, 0.0));
  CHECK(b.grad.to_vector<double>() == std::vector<double>(4, 0.0));

  // to() the device they are on: nothing moves, everything stays bound.
  const Tensor before = flat.values();
  flat.to(Device::cpu());
  CHECK(flat.values().same_data(before));
  CHECK(a.value.same_data(flat.values().slice(0, 6)));
}

TEST_CASE("flat parameters: bad parameter lists and cut-loose parameters are named",
          "[layers][parameters][errors]") {
  Parameter a = make_param({1, 2});
  Parameter f = make_param({1, 2}, DType::F32);
  REQUIRE_THROWS_WITH(FlatParameters({{"a", &a}, {"layer1.bias", &f}}),
                      Catch::Contains("'layer1.bias'") && Catch::Contains("float32") &&
                          Catch::Contains("float64"));
  REQUIRE_THROWS_WITH(FlatParameters({{"a", &a}, {"again", &a}}),
                      Catch::Contains("'again'") && Catch::Contains("twice"));
  REQUIRE_THROWS_WITH(FlatParameters({}), Catch::Contains("no parameters"));
  Parameter empty;
  REQUIRE_THROWS_WITH(FlatParameters({{"ghost", &empty}}),
                      Catch::Contains("'ghost'") && Catch::Contains("no value"));

  Parameter b = make_param({3});
  FlatParameters flat({{"conv1.weight", &a}, {"fc.bias", &b}});
  b.value = b.value.clone();  // replaced by other code
  REQUIRE_THROWS_WITH(flat.check_bound("optimizer sgd"),
                      Catch::StartsWith("optimizer sgd") && Catch::Contains("'fc.bias'") &&
                          Catch::Contains("model.to"));
  // Moving would silently drop the replacement: refused, naming it.
  REQUIRE_THROWS_WITH(flat.to(Device::cpu()), Catch::Contains("'fc.bias'"));
}

TEST_CASE("the model owns its flat buffers: made once, in named_parameters order",
          "[layers][parameters]") {
  auto net = two_linear();
  std::vector<std::string> names;
  std::vector<double> values;
  for (const NamedParameter& np : net->named_parameters()) {
    names.push_back(np.name);
    for (double v : np.param->value.to_vector<double>()) values.push_back(v);
  }
  CHECK_FALSE(net->has_flat_parameters());
  FlatParameters& flat = net->flat_parameters();
  CHECK(net->has_flat_parameters());
  CHECK(&net->flat_parameters() == &flat);  // once per model
  REQUIRE(flat.size() == 4);
  for (size_t i = 0; i < flat.size(); ++i) CHECK(flat.parameters()[i].name == names[i]);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"});
  CHECK(flat.values().to_vector<double>() == values);  // the initial weights, unchanged
  const std::vector<NamedParameter> params = net->named_parameters();
  for (size_t i = 0; i < params.size(); ++i)
    CHECK(params[i].param->value.same_data(flat.values().slice(flat.offset(i), flat.offset(i + 1))));

  // Backward accumulates into the flat gradient buffer; zero_grad clears all of it.
  const Tensor x = Tensor::full(Shape{5, 3}, 0.5, DType::F64);
  const Tensor y = net->forward(x, Mode::Train);
  net->backward(Tensor::full(y.shape(), 1.0, DType::F64));
  double norm = 0.0;
  for (double g : flat.grads().to_vector<double>()) norm += g * g;
  CHECK(norm > 0.0);
  net->zero_grad();
  CHECK(flat.grads().to_vector<double>() == std::vector<double>(20, 0.0));

  // to() keeps the parameters bound (here to the device they are on; tests/cuda moves them).
  net->to(Device::cpu());
  CHECK_NOTHROW(flat.check_bound("test"));

  // A part of the model cannot take the parameters into buffers of its own.
  REQUIRE_THROWS_WITH((*net)[1].flat_parameters(),
                      Catch::Contains("'1'") && Catch::Contains("root module"));
}

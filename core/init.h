// Weight initialisers with PyTorch's exact formulas, so a freshly built minidl model draws from the
// same distributions as the torch.nn / torchvision model it replaces.
//
// fan_in  = in_channels * kh * kw (conv) or in_features (linear)
// fan_out = out_channels * kh * kw (conv) or out_features (linear)
// gain(nonlinearity, a): linear/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + a^2))
//
// kaiming_uniform(a):  U(-b, b), b = gain * sqrt(3 / fan)            (torch.nn.init.kaiming_uniform_)
// kaiming_normal:      N(0, std^2), std = gain / sqrt(fan)          (torch.nn.init.kaiming_normal_)
// xavier_uniform:      U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))
// xavier_normal:       N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))
//
// nn.Conv2d and nn.Linear default: weight kaiming_uniform(a = sqrt(5)) with fan_in, which gives
// b = 1/sqrt(fan_in); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). torchvision ResNet: conv weights
// kaiming_normal(fan_out, relu), BatchNorm weight 1 and bias 0, Linear as nn.Linear.
#pragma once

#include <cstdint>
#include <string>

#include "core/rng.h"
#include "core/tensor.h"

namespace minidl::init {

enum class FanMode { FanIn, FanOut };

double calculate_gain(const std::string& nonlinearity, double param = 0.0);

// fan_in and fan_out of a weight of shape (out, in) or (out, in, kh, kw).
int64_t fan_in(const Shape& weight);
int64_t fan_out(const Shape& weight);

// Each fills `t` (any device, float32/float64) from `gen`, drawing on the host in element order.
void uniform(Tensor& t, double lo, double hi, Generator& gen);
void normal(Tensor& t, double mean, double std, Generator& gen);
void constant(Tensor& t, double value);
void kaiming_uniform(Tensor& w, Generator& gen, double a = 0.0, FanMode mode = FanMode::FanIn,
                     const std::string& nonlinearity = "leaky_relu");
void kaiming_normal(Tensor& w, Generator& gen, double a = 0.0, FanMode mode = FanMode::FanIn,
                    const std::string& nonlinearity = "leaky_relu");
void xavier_uniform(Tensor& w, Generator& gen, double gain = 1.0);
void xavier_normal(Tensor& w, Generator& gen, double gain = 1.0);

// PyTorch's default for nn.Conv2d / nn.Linear: weight kaiming_uniform(a=sqrt(5)), bias
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)). `bias` may be undefined.
void pytorch_default(Tensor& weight, Tensor* bias, Generator& gen);

}  // namespace minidl::init

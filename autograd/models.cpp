// ResNet and AlexNet on the tape (autograd/models.h). The layer order and names repeat the
// constructors of models/resnet.cpp, layers/residual.cpp and models/alexnet.cpp.
#include "autograd/models.h"

#include <functional>

#include "layers/basic.h"

namespace minidl::ag {

namespace {

void visit(Module& m, const std::function<void(Module&)>& f) {
  f(m);
  for (auto& [name, child] : m.children()) visit(*child, f);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Parameters Parameters::from_module(Module& m) {
  Parameters P;
  for (const NamedParameter& np : m.named_parameters()) {
    P.vars_[np.name] = Var(np.param->value.clone(), true, np.name);
    P.order_.push_back(np.name);
  }
  for (const NamedBuffer& nb : m.named_buffers()) {
    for (const char* stat : {".running_mean", ".running_var", ".num_batches_tracked"}) {
      if (!ends_with(nb.name, stat)) continue;
      BatchNormState& s = P.bn_[nb.name.substr(0, nb.name.size() - std::string(stat).size())];
      const Tensor copy = nb.tensor->clone();
      if (std::string(stat) == ".running_mean") s.running_mean = copy;
      if (std::string(stat) == ".running_var") s.running_var = copy;
      if (std::string(stat) == ".num_batches_tracked") s.num_batches_tracked = copy;
    }
  }
  visit(m, [&](Module& child) {
    if (auto* d = dynamic_cast<Dropout*>(&child)) P.gens_[child.path()] = d->generator();
  });
  return P;
}

Var& Parameters::operator[](const std::string& name) {
  auto it = vars_.find(name);
  MINIDL_CHECK(it != vars_.end(), "ag::Parameters: no parameter named '", name, "' (",
               vars_.size(), " parameters, e.g. '", order_.empty() ? "" : order_.front(), "')");
  return it->second;
}

BatchNormState& Parameters::batchnorm(const std::string& path) {
  auto it = bn_.find(path);
  MINIDL_CHECK(it != bn_.end(), "ag::Parameters: no BatchNorm statistics for '", path, "'");
  return it->second;
}

Generator& Parameters::generator(const std::string& path) {
  auto it = gens_.find(path);
  MINIDL_CHECK(it != gens_.end(), "ag::Parameters: no dropout generator for '", path, "'");
  return it->second;
}

void Parameters::zero_grad() {
  for (auto& [name, v] : vars_) v.zero_grad();
}

Var batchnorm(Parameters& P, const std::string& path, const Var& x, bool training) {
  return batchnorm(x, P[path + ".weight"], P[path + ".bias"], P.batchnorm(path), training,
                   BatchNormParams{0.1, 1e-5});
}

// ------------------------------------------------------------------------------------ ResNet

ResNetSpec resnet_spec(const std::string& name) {
  const std::vector<int64_t> wide{64, 128, 256, 512};
  if (name == "resnet18") return {false, {2, 2, 2, 2}, wide};
  if (name == "resnet34") return {false, {3, 4, 6, 3}, wide};
  if (name == "resnet50") return {true, {3, 4, 6, 3}, wide};
  if (name == "resnet101") return {true, {3, 4, 23, 3}, wide};
  if (name == "resnet152") return {true, {3, 8, 36, 3}, wide};
  for (int depth : {20, 32, 44, 56, 110})
    if (name == str("resnet", depth)) {
      const int n = (depth - 2) / 6;
      return {false, {n, n, n}, {16, 32, 64}};
    }
  throw_error(str("ag::resnet_spec: no ResNet named '", name,
                  "' (resnet18, 34, 50, 101, 152, resnet20, 32, 44, 56, 110)"));
}

namespace {

Var conv(Parameters& P, const std::string& path, const Var& x, int stride, int pad) {
  return conv2d(x, P[path + ".weight"], Var(), {stride, pad});
}

// relu(main(x) + shortcut(x)), main = conv-bn(-relu) x2 (basic) or x3 (bottleneck).
Var block(Parameters& P, const std::string& b, const Var& x, bool bottleneck, int stride,
          bool projection, bool training) {
  Var h;
  if (!bottleneck) {
    h = relu(batchnorm(P, b + ".bn1", conv(P, b + ".conv1", x, stride, 1), training));
    h = batchnorm(P, b + ".bn2", conv(P, b + ".conv2", h, 1, 1), training);
  } else {
    h = relu(batchnorm(P, b + ".bn1", conv(P, b + ".conv1", x, 1, 0), training));
    h = relu(batchnorm(P, b + ".bn2", conv(P, b + ".conv2", h, stride, 1), training));
    h = batchnorm(P, b + ".bn3", conv(P, b + ".conv3", h, 1, 0), training);
  }
  // x feeds both branches (fan-out): backward adds the two gradients that reach it.
  const Var shortcut =
      projection ? batchnorm(P, b + ".downsample.1", conv(P, b + ".downsample.0", x, stride, 0),
                             training)
                 : x;
  return relu(add(h, shortcut));
}

}  // namespace

Var resnet(Parameters& P, const Var& x, const ResNetSpec& spec, bool training) {
  MINIDL_CHECK(x.value().dim() == 4 && x.shape()[1] == 3,
               "ag::resnet: expected images (N, 3, H, W), got ", x.value().describe());
  Var h = spec.imagenet_stem ? conv(P, "conv1", x, 2, 3) : conv(P, "conv1", x, 1, 1);
  h = relu(batchnorm(P, "bn1", h, training));
  if (spec.imagenet_stem) h = maxpool2d(h, {3, 2, 1});
  const int64_t expansion = spec.bottleneck ? 4 : 1;
  int64_t in = spec.widths.front();
  for (size_t s = 0; s < spec.blocks.size(); ++s)
    for (int i = 0; i < spec.blocks[s]; ++i) {
      const int stride = (s > 0 && i == 0) ? 2 : 1;
      const int64_t out = spec.widths[s] * expansion;
      h = block(P, str("layer", s + 1, ".", i), h, spec.bottleneck, stride,
                stride != 1 || in != out, training);
      in = out;
    }
  return linear(flatten(global_avgpool(h)), P["fc.weight"], P["fc.bias"]);
}

// ------------------------------------------------------------------------------------ AlexNet

Var alexnet(Parameters& P, const Var& x, double p, bool training) {
  auto conv_relu = [&](const Var& in, int index, int stride) {
    const std::string path = str("features.", index);
    return relu(conv2d(in, P[path + ".weight"], P[path + ".bias"], {stride, 1}));
  };
  auto fc = [&](const Var& in, int index) {
    const std::string path = str("classifier.", index);
    return linear(in, P[path + ".weight"], P[path + ".bias"]);
  };
  Var h = maxpool2d(conv_relu(x, 0, 2), {2, 2, 0});
  h = maxpool2d(conv_relu(h, 3, 1), {2, 2, 0});
  h = conv_relu(h, 6, 1);
  h = conv_relu(h, 8, 1);
  h = maxpool2d(conv_relu(h, 10, 1), {2, 2, 0});
  h = flatten(h);
  h = relu(fc(dropout(h, p, P.generator("classifier.0"), training), 1));
  h = relu(fc(dropout(h, p, P.generator("classifier.3"), training), 4));
  return fc(h, 6);
}

}  // namespace minidl::ag

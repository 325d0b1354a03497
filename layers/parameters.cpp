// Gathering parameters into flat buffers (layout in parameters.h).
#include "layers/parameters.h"

#include <set>

namespace minidl {

FlatParameters::FlatParameters(std::vector<NamedParameter> params) : params_(std::move(params)) {
  const char* who = "flat parameters";
  MINIDL_CHECK(!params_.empty(), who, ": no parameters to gather");
  // Every parameter must live where the first one does: each buffer is one allocation.
  MINIDL_CHECK(params_[0].param != nullptr && params_[0].param->value.defined(), who,
               ": parameter '", params_[0].name, "' has no value");
  const Tensor& first = params_[0].param->value;
  std::set<const Parameter*> seen;
  offsets_.push_back(0);
  for (const NamedParameter& np : params_) {
    MINIDL_CHECK(np.param != nullptr && np.param->value.defined(), who, ": parameter '", np.name,
                 "' has no value");
    const Tensor& v = np.param->value;
    MINIDL_CHECK(v.device() == first.device() && v.dtype() == first.dtype(), who, ": parameter '",
                 np.name, "' is ", v.describe(), " but '", params_[0].name, "' is ",
                 first.describe(), " (all parameters must share one device and dtype)");
    MINIDL_CHECK(seen.insert(np.param).second, who, ": parameter '", np.name,
                 "' is listed twice (it would be updated twice per step)");
    offsets_.push_back(offsets_.back() + v.numel());
  }
  MINIDL_CHECK(numel() > 0, who, ": the parameters have no elements");

  values_ = Tensor::empty(Shape{numel()}, first.dtype(), first.device());
  grads_ = Tensor::zeros(Shape{numel()}, first.dtype(), first.device());
  for (size_t i = 0; i < params_.size(); ++i)
    values_.slice(offsets_[i], offsets_[i + 1]).copy_(params_[i].param->value);
  bind();
}

void FlatParameters::bind() {
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = *params_[i].param;
    const Shape shape = p.value.shape();
    p.value = values_.slice(offsets_[i], offsets_[i + 1]).view(shape);
    p.grad = grads_.slice(offsets_[i], offsets_[i + 1]).view(shape);
  }
}

void FlatParameters::to(Device d) {
  // A parameter replaced since the last bind would be silently discarded by re-pointing it.
  check_bound("flat parameters: to(" + d.str() + ")");
  values_ = values_.to(d);
  grads_ = grads_.to(d);
  bind();
}

void FlatParameters::check_bound(const std::string& who) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Parameter& p = *params_[i].param;
    const Tensor expect_v = values_.slice(offsets_[i], offsets_[i + 1]);
    const Tensor expect_g = grads_.slice(offsets_[i], offsets_[i + 1]);
    MINIDL_CHECK(p.value.same_data(expect_v) && p.grad.same_data(expect_g), who, ": parameter '",
                 params_[i].name, "' no longer points into the model's flat parameter buffers (it is "
                 "now ", p.value.describe(), "). It was replaced, or a part of the model was moved "
                 "on its own: move the whole model with model.to(device), which keeps the buffers");
  }
}

}  // namespace minidl

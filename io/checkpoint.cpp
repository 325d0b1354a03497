// Training checkpoints on top of the safetensors reader/writer (layout in checkpoint.h).
#include "io/checkpoint.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/half.h"
#include "io/safetensors.h"

namespace minidl {

namespace {

const std::string kOptimizerPrefix = "optimizer.";
const std::string kHashesKey = "tensor_hashes";

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The number of NaN or infinite elements of a floating-point tensor on the host: float32,
// float64, bfloat16 and float16 (widened exactly to float, so a 16-bit NaN or inf stays one);
// 0 for the integer dtypes.
int64_t count_non_finite(const Tensor& t) {
  int64_t bad = 0;
  auto count = [&](const auto* p) {
    for (int64_t i = 0; i < t.numel(); ++i) bad += !std::isfinite(widen(p[i]));
  };
  switch (t.dtype()) {
    case DType::F32:
      count(t.data<float>());
      break;
    case DType::F64:
      count(t.data<double>());
      break;
    case DType::BF16:
      count(t.data<bf16>());
      break;
    case DType::F16:
      count(t.data<f16>());
      break;
    case DType::I32:
    case DType::U8:
      break;
  }
  return bad;
}

// Shortest decimal text that parses back to the same double (to_chars round-trips exactly).
std::string exact(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// The model tensors a checkpoint holds, in state_dict order.
std::vector<std::pair<std::string, Tensor*>> model_tensors(Module& model) {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (const NamedParameter& np : model.named_parameters())
    out.emplace_back(np.name, &np.param->value);
  for (const NamedBuffer& nb : model.named_buffers())
    if (nb.tensor->defined()) out.emplace_back(nb.name, nb.tensor);
  return out;
}

std::string list_names(const std::vector<std::string>& names) {
  std::string s;
  const size_t shown = std::min<size_t>(names.size(), 10);
  for (size_t i = 0; i < shown; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > shown) s += str(" and ", names.size() - shown, " more");
  return s;
}

class Metadata {
 public:
  Metadata(const std::map<std::string, std::string>& m, const std::string& who) : m_(m), who_(who) {}

  bool has(const std::string& key) const { return m_.count(key) != 0; }
  const std::string& text(const std::string& key) const {
    auto it = m_.find(key);
    MINIDL_CHECK(it != m_.end(), who_, ": metadata entry '", key, "' is missing");
    return it->second;
  }
  template <typename T>
  T number(const std::string& key) const {
    const std::string& s = text(key);
    T v{};
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    MINIDL_CHECK(r.ec == std::errc() && r.ptr == s.data() + s.size(), who_, ": metadata entry '",
                 key, "' should be a number, got '", s, "'");
    return v;
  }

 private:
  const std::map<std::string, std::string>& m_;
  const std::string& who_;
};

}  // namespace

uint64_t tensor_content_hash(const Tensor& tensor) {
  const Tensor t = tensor.to(Device::cpu());
  const auto* p = static_cast<const unsigned char*>(t.raw_data());
  const size_t n = t.nbytes();
  constexpr uint64_t kPrime = 0x100000001b3ull;
  uint64_t h = 0xcbf29ce484222325ull;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = 0;
    for (int k = 7; k >= 0; --k) w = (w << 8) | p[i + k];  // little-endian on any host
    h = (h ^ w) * kPrime;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * kPrime;
  return h;
}

void save_checkpoint(const std::string& path, Module& model, const Optimizer* opt,
                     const TrainState& state) {
  NamedTensors tensors;          // host copies: hashed here, written by save_safetensors
  std::set<std::string> as_i64;  // torch keeps integer buffers in int64
  for (const auto& [name, t] : model_tensors(model)) {
    tensors.emplace_back(name, t->to(Device::cpu()));
    if (t->dtype() == DType::I32) as_i64.insert(name);
  }
  std::map<std::string, std::string> meta{
      {"format", "minidl-checkpoint"},
      {"format_version", std::to_string(kCheckpointFormatVersion)},
      {"epoch", std::to_string(state.epoch)},
      {"global_step", std::to_string(state.global_step)},
      {"best_accuracy", exact(state.best_accuracy)},
      {"best_epoch", std::to_string(state.best_epoch)},
      {"model_name", state.model_name},
      {"config_json", state.config_json},
  };
  if (state.loss_scale > 0) {
    meta["loss_scale"] = exact(state.loss_scale);
    meta["loss_scale_growth_tracker"] = std::to_string(state.loss_scale_growth_tracker);
  }
  if (opt != nullptr) {
    for (const auto& [name, t] : opt->state())
      tensors.emplace_back(kOptimizerPrefix + name, t.to(Device::cpu()));
    meta["optimizer"] = opt->config().name;
    meta["optimizer_step"] = std::to_string(opt->step_count());
  }
  nlohmann::json hashes = nlohmann::json::object();
  for (const auto& [name, t] : tensors) hashes[name] = hex16(tensor_content_hash(t));
  meta[kHashesKey] = hashes.dump();
  save_safetensors(path, tensors, meta, as_i64);
}

TrainState load_checkpoint(const std::string& path, Module& model, Optimizer* opt) {
  const std::string who = "load_checkpoint '" + path + "'";
  const SafetensorsFile file = load_safetensors(path);
  const Metadata meta(file.metadata, who);
  // A plain state_dict (safetensors.torch.save_file writes no metadata, or "format": "pt").
  const bool state_dict_only = !meta.has("format") || meta.text("format") == "pt";
  MINIDL_CHECK(state_dict_only || meta.text("format") == "minidl-checkpoint", who,
               ": metadata \"format\" is \"", meta.has("format") ? meta.text("format") : "",
               "\"; expected \"minidl-checkpoint\" or a PyTorch state_dict (\"pt\" or none)");
  if (!state_dict_only) {
    const int version = meta.number<int>("format_version");
    MINIDL_CHECK(version >= kOldestCheckpointFormatVersion && version <= kCheckpointFormatVersion,
                 who, ": checkpoint format version ", version, ", this build reads versions ",
                 kOldestCheckpointFormatVersion, " to ", kCheckpointFormatVersion);
  }

  // Every tensor against its content hash (format 3 on), then no NaN or infinity anywhere.
  TrainState state;
  if (meta.has(kHashesKey)) {
    const nlohmann::json hashes =
        nlohmann::json::parse(meta.text(kHashesKey), nullptr, /*allow_exceptions=*/false);
    MINIDL_CHECK(hashes.is_object(), who, ": metadata entry '", kHashesKey,
                 "' is not a JSON object: the file is damaged");
    for (const auto& [name, t] : file.tensors) {
      const auto it = hashes.find(name);
      MINIDL_CHECK(it != hashes.end() && it->is_string(), who, ": tensor '", name,
                   "' has no content hash: the file is damaged or was edited");
      const std::string actual = hex16(tensor_content_hash(t));
      MINIDL_CHECK(it->get<std::string>() == actual, who, ": tensor '", name,
                   "' does not match its content hash (stored ", it->get<std::string>(),
                   ", computed ", actual,
                   "): the file is corrupt (damaged on disk or in a copy); "
                   "use another checkpoint, e.g. best.safetensors or last.safetensors of the run");
    }
    state.verified = true;
  } else {
    MINIDL_CHECK(state_dict_only || meta.number<int>("format_version") < 3, who,
                 ": metadata entry '", kHashesKey, "' is missing: the file is damaged");
  }
  {
    std::vector<std::string> bad;
    for (const auto& [name, t] : file.tensors)
      if (const int64_t n = count_non_finite(t); n > 0)
        bad.push_back(str(name, "' (", n, " of ", t.numel(), " values"));
    MINIDL_CHECK(bad.empty(), who, ": NaN or infinite values in ", bad.size(), " tensor(s): '",
                 bad.front(), ")", bad.size() > 1 ? str(" and ", bad.size() - 1, " more") : "",
                 ": the weights diverged or the file is damaged; minidl does not evaluate or "
                 "train from such a state (use an earlier checkpoint)");
  }

  // Check every model tensor (present, same shape and dtype) and that nothing else is there.
  const auto targets = model_tensors(model);
  std::vector<std::string> missing, unexpected;
  std::vector<const Tensor*> sources;
  for (const auto& [name, dst] : targets) {
    const Tensor* src = file.find(name);
    if (src == nullptr) {
      missing.push_back(name);
      continue;
    }
    MINIDL_CHECK(src->shape() == dst->shape() && src->dtype() == dst->dtype(), who, ": tensor '",
                 name, "' is ", dtype_name(src->dtype()), " ", src->shape(),
                 " in the file but the model expects ", dtype_name(dst->dtype()), " ",
                 dst->shape(), " (was it saved from a different model or configuration?)");
    sources.push_back(src);
  }
  std::string origin;
  if (state_dict_only)
    origin = " (a state_dict without minidl metadata: is it from the same architecture?)";
  else if (meta.has("model_name"))
    origin = str(" (the file holds model '", meta.text("model_name"), "')");
  MINIDL_CHECK(missing.empty(), who, ": ", missing.size(), " model tensor(s) missing from the file: ",
               list_names(missing), origin);
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(kOptimizerPrefix, 0) == 0) continue;
    bool known = false;
    for (const auto& target : targets) known = known || target.first == name;
    if (!known) unexpected.push_back(name);
  }
  MINIDL_CHECK(unexpected.empty(), who, ": ", unexpected.size(),
               " tensor(s) in the file that the model does not have: ", list_names(unexpected));

  if (state_dict_only) {  // weights only: nothing trained yet as far as minidl knows
    for (size_t i = 0; i < targets.size(); ++i) targets[i].second->copy_(*sources[i]);
    return state;
  }
  state.epoch = meta.number<int64_t>("epoch");
  state.global_step = meta.number<int64_t>("global_step");
  state.best_accuracy = meta.number<double>("best_accuracy");
  state.best_epoch = meta.number<int64_t>("best_epoch");
  state.model_name = meta.text("model_name");
  state.config_json = meta.text("config_json");
  if (meta.has("loss_scale")) {
    state.loss_scale = meta.number<double>("loss_scale");
    state.loss_scale_growth_tracker = meta.number<int64_t>("loss_scale_growth_tracker");
  }

  // The optimizer validates before it copies, and the model copies cannot fail on bad input, so a
  // failed load leaves both untouched.
  if (opt != nullptr && meta.has("optimizer")) {
    MINIDL_CHECK(meta.text("optimizer") == opt->config().name, who, ": the file holds ",
                 meta.text("optimizer"), " optimizer state but the optimizer is ",
                 opt->config().name);
    std::vector<std::pair<std::string, Tensor>> opt_state;
    for (const auto& [name, t] : file.tensors)
      if (name.rfind(kOptimizerPrefix, 0) == 0)
        opt_state.emplace_back(name.substr(kOptimizerPrefix.size()), t);
    opt->load_state(opt_state, meta.number<int64_t>("optimizer_step"));
  }
  for (size_t i = 0; i < targets.size(); ++i) targets[i].second->copy_(*sources[i]);
  return state;
}

}  // namespace minidl

// train --trace-steps and the report's per-layer gradient norms (engine/trace.h).
#include "engine/trace.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "kernels/convert.h"
#include "layers/forward_observer.h"

namespace minidl {

namespace {

std::vector<double> host_values(const Tensor& t) {
  Tensor h = t.to(Device::cpu());
  if (h.dtype() == DType::F64) return h.to_vector<double>();
  if (h.dtype() != DType::F32) h = to_dtype(h, DType::F32);  // bf16/fp16 under --precision
  const std::vector<float> f = h.to_vector<float>();
  return {f.begin(), f.end()};
}

double sum_sq(const Tensor& t) {
  double s = 0;
  for (double v : host_values(t)) s += v * v;
  return s;
}

void leaves(Module& m, std::vector<Module*>& out) {
  if (m.children().empty()) {
    out.push_back(&m);
    return;
  }
  for (auto& [name, child] : m.children()) leaves(*child, out);
}

// A leaf's own parameters (a leaf has no children, so named_parameters() are its own).
std::vector<NamedParameter> params_of(const Module& m) {
  return const_cast<Module&>(m).named_parameters();
}

}  // namespace

StepTracer::StepTracer(Module& model) : model_(model) {
  std::vector<Module*> ls;
  leaves(model, ls);
  for (Module* l : ls) {
    index_[l] = rows_.size();
    rows_.push_back(Row{l});
  }
}

StepTracer::~StepTracer() { set_forward_observer({}); }

void StepTracer::before_forward() {
  for (Row& r : rows_) r.has_act = false;
  set_forward_observer([this](const Module& layer, const Tensor& y) {
    auto it = index_.find(&layer);
    if (it == index_.end()) return;  // a container: its leaves are reported
    Row& r = rows_[it->second];
    const std::vector<double> v = host_values(y);
    double s = 0, s2 = 0;
    for (double x : v) s += x;
    r.act_mean = v.empty() ? 0 : s / double(v.size());
    for (double x : v) s2 += (x - r.act_mean) * (x - r.act_mean);
    r.act_std = v.empty() ? 0 : std::sqrt(s2 / double(v.size()));
    r.has_act = true;
  });
}

void StepTracer::after_backward() {
  set_forward_observer({});
  for (Row& r : rows_) {
    r.before.clear();
    double g = 0;
    for (const NamedParameter& np : params_of(*r.layer)) {
      g += sum_sq(np.param->grad);
      r.before.push_back(np.param->value.to(Device::cpu()).clone());
    }
    r.grad_norm = std::sqrt(g);
  }
}

void StepTracer::after_step() {
  for (Row& r : rows_) {
    double d = 0, w = 0;
    const std::vector<NamedParameter> ps = params_of(*r.layer);
    for (size_t i = 0; i < ps.size() && i < r.before.size(); ++i) {
      const std::vector<double> now = host_values(ps[i].param->value);
      const std::vector<double> was = host_values(r.before[i]);
      for (size_t k = 0; k < now.size(); ++k) {
        d += (now[k] - was[k]) * (now[k] - was[k]);
        w += was[k] * was[k];
      }
    }
    r.update_ratio = w > 0 ? std::sqrt(d / w) : 0.0;
  }
}

std::vector<StepTracer::LayerTrace> StepTracer::rows() const {
  std::vector<LayerTrace> out;
  for (const Row& r : rows_)
    out.push_back({r.layer->path() + " " + r.layer->type_name(), r.has_act,
                   !params_of(*r.layer).empty(), r.act_mean, r.act_std, r.grad_norm,
                   r.update_ratio});
  return out;
}

std::string StepTracer::table(int64_t step) const {
  std::string s = fmt::format("trace: step {}\n  {:<30} {:>11} {:>11} {:>11} {:>13}\n", step,
                              "layer", "act mean", "act std", "|grad|", "|update|/|w|");
  for (const LayerTrace& r : rows())
    s += fmt::format("  {:<30} {:>11} {:>11} {:>11} {:>13}\n", r.layer,
                     r.has_act ? fmt::format("{:.4g}", r.act_mean) : "-",
                     r.has_act ? fmt::format("{:.4g}", r.act_std) : "-",
                     r.has_params ? fmt::format("{:.4g}", r.grad_norm) : "-",
                     r.has_params ? fmt::format("{:.3g}", r.update_ratio) : "-");
  return s;
}

std::vector<std::pair<std::string, double>> layer_grad_norms(Module& model) {
  std::vector<Module*> ls;
  leaves(model, ls);
  std::vector<std::pair<std::string, double>> out;
  for (Module* l : ls) {
    const std::vector<NamedParameter> ps = params_of(*l);
    if (ps.empty()) continue;
    double g = 0;
    for (const NamedParameter& np : ps) g += sum_sq(np.param->grad);
    out.push_back({l->path(), std::sqrt(g)});
  }
  return out;
}

std::string grad_norm_chart(const ReportData& r) {
  const auto& layers = r.layer_grad_norms;
  if (layers.empty()) return "";
  // At most 12 layers, evenly spread from the first to the last.
  const size_t n = layers.size(), shown = std::min<size_t>(n, 12);
  static const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"};
  std::vector<ChartSeries> series;
  for (size_t k = 0; k < shown; ++k) {
    const size_t i = shown == 1 ? 0 : k * (n - 1) / (shown - 1);
    ChartSeries cs{layers[i].first, colors[k % 12], {}};
    for (const auto& [epoch, norm] : layers[i].second)
      if (norm > 0 && std::isfinite(norm)) cs.points.push_back({epoch, std::log10(norm)});
    series.push_back(cs);
  }
  std::string h = "<h2>Gradient norms per layer</h2>\n<p>The L2 norm of each layer's parameter "
                  "gradient at the last step of every epoch, on a log10 scale";
  h += shown < n ? fmt::format(" ({} of {} layers, spread over the depth)", shown, n) : "";
  h += ". Curves that fall apart by orders of magnitude from the last layer to the first mean the "
       "gradient vanishes on its way back; `train --trace-steps N` prints the numbers per step.</p>\n";
  h += "<div class=\"charts\">\n" +
       svg_line_chart("Gradient norm per layer", "epoch", "log10 |grad|", series, 1.0) + "</div>\n";
  return h;
}

}  // namespace minidl

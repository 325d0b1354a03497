// The gradcheck program (engine/gradcheck.h): targets by name, a float32 twin for float32 checks,
// --break's planted bugs, the table.
#include "engine/gradcheck.h"

#include <fmt/format.h>
#include <fmt/ostream.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <sstream>

#include "core/registry.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"
#include "layers/gradcheck.h"
#include "layers/linear.h"
#include "layers/loss.h"
#include "layers/pooling.h"
#include "layers/residual.h"
#include "models/models.h"
#include "tutorial/student_layer.h"
#include "tutorial/student_layer_solution.h"

namespace minidl {

namespace {

struct TargetSettings {
  Shape in;  // the input shape
  DType dtype = DType::F64;
  int64_t out_channels = 4;
  int kernel = 3, stride = 1, pad = 1;
  uint64_t seed = 1;
};

struct Target {
  std::function<std::unique_ptr<Module>(const TargetSettings&)> make;
  Shape default_shape;
  int64_t default_max_elements = 48;
};

Generator& init_gen(const TargetSettings& s) {
  static Generator g;
  g = Generator(s.seed);
  return g;
}

// The loss as a layer: logits (N, K) -> the mean label-smoothed cross-entropy (1,) against fixed
// labels, so that the checker's projection L = R * loss differentiates the fused softmax loss.
class CrossEntropyProbe : public Module {
 public:
  CrossEntropyProbe(int64_t n, int64_t k, uint64_t seed) : Module("CrossEntropyProbe"), loss_(0.1) {
    labels_ = Tensor::empty(Shape{n}, DType::I32);
    Generator g(seed);
    for (int64_t i = 0; i < n; ++i) labels_.data<int32_t>()[i] = int32_t(g.below(k));
  }
  Tensor forward(const Tensor& x, Mode) override { return loss_.forward(x, labels_); }
  Tensor backward(const Tensor& dy) override {
    // dL/dz = dL/dloss * dloss/dz: the kernel's gradient is for dL/dloss = 1.
    const double s = dy.dtype() == DType::F64 ? dy.item<double>() : dy.item<float>();
    Tensor dz = loss_.backward();
    Tensor out = Tensor::zeros(dz.shape(), dz.dtype());
    add_scaled(out, out, dz, s);
    return out;
  }
  Shape output_shape(const Shape&) const override { return Shape{1}; }
  std::string describe() const override { return "SoftmaxCrossEntropy(label_smoothing=0.1)"; }

 private:
  SoftmaxCrossEntropy loss_;
  Tensor labels_;
};

const Registry<Target>& targets() {
  using S = TargetSettings;
  auto model = [](const std::string& name, Shape shape, int64_t max_elements) {
    return Target{[name](const S& s) {
                    return make_model(ModelConfig{.name = name, .seed = s.seed, .dtype = s.dtype});
                  },
                  shape, max_elements};
  };
  auto act = [](auto make) {
    return Target{[make](const S&) -> std::unique_ptr<Module> { return make(); }, Shape{2, 3, 4, 5}};
  };
  static const Registry<Target> r(
      "target",
      {{"conv2d", "Conv2d(C, --out-channels, --kernel, --stride, --pad) with bias",
        {[](const S& s) {
           return std::make_unique<Conv2d>(
               Conv2dConfig{s.in[1], s.out_channels, s.kernel, s.stride, s.pad, true, s.dtype},
               init_gen(s));
         },
         Shape{2, 3, 7, 5}}},
       {"linear", "Linear(features, --out-channels) with bias",
        {[](const S& s) {
           return std::make_unique<Linear>(
               LinearConfig{s.in.numel() / s.in[0], s.out_channels, true, s.dtype}, init_gen(s));
         },
         Shape{3, 7}}},
       {"batchnorm", "BatchNorm2d(C), batch statistics (--mode train) or running ones (eval)",
        {[](const S& s) {
           return std::make_unique<BatchNorm2d>(BatchNorm2dConfig{s.in[1], 0.1, 1e-5, s.dtype});
         },
         Shape{3, 2, 4, 5}}},
       {"relu", "ReLU", act([] { return std::make_unique<ReLU>(); })},
       {"leaky_relu", "LeakyReLU(0.1)", act([] { return std::make_unique<LeakyReLU>(0.1); })},
       {"sigmoid", "Sigmoid", act([] { return std::make_unique<Sigmoid>(); })},
       {"tanh", "Tanh", act([] { return std::make_unique<Tanh>(); })},
       {"maxpool2d", "MaxPool2d(--kernel, --stride, --pad)",
        {[](const S& s) {
           return std::make_unique<MaxPool2d>(Pool2dParams{s.kernel, s.stride, s.pad});
         },
         Shape{2, 2, 6, 7}}},
       {"avgpool2d", "AvgPool2d(--kernel, --stride, --pad), padding counted",
        {[](const S& s) {
           return std::make_unique<AvgPool2d>(Pool2dParams{s.kernel, s.stride, s.pad});
         },
         Shape{2, 2, 6, 7}}},
       {"global_avgpool", "GlobalAvgPool: (N, C, H, W) -> (N, C, 1, 1)",
        act([] { return std::make_unique<GlobalAvgPool>(); })},
       {"dropout", "Dropout(0.3), the same mask for every forward of the check",
        {[](const S& s) { return std::make_unique<Dropout>(0.3, s.seed); }, Shape{2, 3, 4, 5}}},
       {"flatten", "Flatten", act([] { return std::make_unique<Flatten>(); })},
       {"cross_entropy", "softmax cross-entropy with label smoothing 0.1, input = logits (N, K)",
        {[](const S& s) {
           return std::make_unique<CrossEntropyProbe>(s.in[0], s.in.numel() / s.in[0], s.seed);
         },
         Shape{3, 5}}},
       {"basic_block", "BasicBlock(C -> --out-channels, --stride) with its projection shortcut",
        {[](const S& s) {
           return std::make_unique<BasicBlock>(BlockConfig{s.in[1], s.out_channels, s.stride, s.dtype},
                                               init_gen(s));
         },
         Shape{2, 3, 6, 6}, 12}},
       {"bottleneck", "Bottleneck(C -> 4 x --out-channels, --stride)",
        {[](const S& s) {
           return std::make_unique<Bottleneck>(BlockConfig{s.in[1], s.out_channels, s.stride, s.dtype},
                                               init_gen(s));
         },
         Shape{2, 3, 6, 6}, 12}},
       {"resnet20", "the resnet20 model (any --shape (N, 3, H, W))", model("resnet20", Shape{2, 3, 8, 8}, 3)},
       {"resnet18", "the resnet18 model", model("resnet18", Shape{2, 3, 8, 8}, 2)},
       {"alexnet", "the alexnet model (needs 32x32)", model("alexnet", Shape{2, 3, 32, 32}, 2)},
       {"plain", "the plain model", model("plain", Shape{2, 3, 8, 8}, 3)},
       {"student", "your PReLU of tutorial step (b), tutorial/student_layer.h",
        {[](const S& s) { return std::make_unique<tutorial::StudentPReLU>(s.in[1], s.dtype); },
         Shape{2, 3, 4, 4}}},
       {"student-solution", "the answer to tutorial step (b)",
        {[](const S& s) {
           return std::make_unique<tutorial::StudentPReLUSolution>(s.in[1], s.dtype);
         },
         Shape{2, 3, 4, 4}}}});
  return r;
}

// --break: a known bug planted in the backward, to see what a failure looks like.
enum class Bug { None, InputScale, WeightSign, AccumulateTwice };

const Registry<Bug>& bugs() {
  static const Registry<Bug> r(
      "bug", {{"input-scale", "the input gradient 1% too large (a wrong constant)", Bug::InputScale},
              {"weight-sign", "the first parameter's gradient with the wrong sign", Bug::WeightSign},
              {"accumulate-twice", "every parameter gradient added twice", Bug::AccumulateTwice}});
  return r;
}

class Broken : public Module {
 public:
  Broken(std::unique_ptr<Module> inner, Bug bug) : Module("Broken"), inner_(std::move(inner)), bug_(bug) {
    register_module("", inner_.get());
  }
  Tensor forward(const Tensor& x, Mode mode) override { return inner_->forward(x, mode); }
  Tensor backward(const Tensor& dy) override {
    Tensor dx = inner_->backward(dy);
    auto params = named_parameters();
    if (bug_ == Bug::InputScale) add_scaled(dx, dx, dx, 0.01);
    if (bug_ == Bug::WeightSign) add_scaled(params[0].param->grad, params[0].param->grad,
                                            params[0].param->grad, -2.0);
    if (bug_ == Bug::AccumulateTwice)
      for (auto& p : params) add(p.param->grad, p.param->grad, p.param->grad);
    return dx;
  }
  Shape output_shape(const Shape& in) const override { return inner_->output_shape(in); }
  std::string describe() const override { return inner_->describe(); }

 private:
  std::unique_ptr<Module> inner_;
  Bug bug_;
};

Shape parse_shape(const std::string& text) {
  std::vector<int64_t> d;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ','))
    try {
      size_t used = 0;
      d.push_back(std::stoll(part, &used));
      if (used != part.size() || d.back() < 1) throw std::invalid_argument(part);
    } catch (const std::exception&) {
      throw_error(str("--shape: '", text, "' is not a shape: expected sizes >= 1 separated by "
                      "commas, e.g. 2,3,8,8"));
    }
  MINIDL_CHECK(d.size() >= 1 && d.size() <= 4, "--shape: '", text, "' has ", d.size(),
               " dimensions; 1 to 4 are possible");
  Shape s;
  switch (d.size()) {
    case 1: s = Shape{d[0]}; break;
    case 2: s = Shape{d[0], d[1]}; break;
    case 3: s = Shape{d[0], d[1], d[2]}; break;
    default: s = Shape{d[0], d[1], d[2], d[3]}; break;
  }
  return s;
}

std::vector<double> as_doubles(const Tensor& t) {
  if (t.dtype() == DType::F64) return t.to_vector<double>();
  const std::vector<float> f = t.to_vector<float>();
  return {f.begin(), f.end()};
}

// Every Dropout's generator back to where it was, so that each forward draws the same masks.
std::function<void()> dropout_rewinder(Module& m) {
  std::vector<std::pair<Dropout*, Generator>> saved;
  std::function<void(Module&)> visit = [&](Module& x) {
    if (auto* d = dynamic_cast<Dropout*>(&x)) saved.push_back({d, d->generator()});
    for (auto& [n, c] : x.children()) visit(*c);
  };
  visit(m);
  if (saved.empty()) return {};
  return [saved] {
    for (auto& [d, g] : saved) d->generator() = g;
  };
}

}  // namespace

int gradcheck_main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"gradcheck: check a backward against float64 central differences"};
  std::string target_name, shape_text, dtype_text = "float64", mode_text = "train", bug_text;
  TargetSettings s;
  int64_t max_elements = 0;
  double tolerance = 0, h = 1e-5;
  bool list = false, channels_last = false;
  app.add_option("--target", target_name, "what to check (--list names them)");
  app.add_option("--shape", shape_text, "input shape, e.g. 2,3,8,8 (default: the target's)");
  app.add_option("--dtype", dtype_text, "float64 or float32 (the analytic side's dtype)");
  app.add_option("--mode", mode_text, "train or eval");
  app.add_option("--seed", s.seed, "seed of the weights, input, projection and sample");
  app.add_option("--out-channels", s.out_channels, "conv2d/linear/blocks: output width");
  app.add_option("--kernel", s.kernel, "conv2d/pooling: window size");
  app.add_option("--stride", s.stride, "conv2d/pooling/blocks: stride");
  app.add_option("--pad", s.pad, "conv2d/pooling: padding");
  app.add_option("--max-elements", max_elements, "elements checked per tensor (sampled above)");
  app.add_option("--tolerance", tolerance, "largest accepted error (default 1e-6, float32 1e-3)");
  app.add_option("--step", h, "central-difference step h");
  app.add_option("--break", bug_text, "plant a known bug: input-scale, weight-sign, accumulate-twice");
  app.add_flag("--channels-last", channels_last,
               "run both sides on a channels-last (NHWC) input, as train --channels-last runs "
               "the layers; needs a 4-D --shape");
  app.add_flag("--list", list, "list the targets and the bugs");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    err << "gradcheck: " << e.what() << "\n";
    return 2;
  }
  if (list) {
    out << "targets:\n" << targets().help_text() << "\n\nbugs (--break):\n" << bugs().help_text() << "\n";
    return 0;
  }

  std::unique_ptr<Module> m64, ma;  // the float64 module (differences) and the analytic one
  Tensor x64, xa;
  GradCheckOptions opt;
  try {
    MINIDL_CHECK(!target_name.empty(), "--target is required: ", join_or(targets().names()));
    MINIDL_CHECK(targets().contains(target_name), "--target ", targets().unknown_message(target_name));
    const Target& t = targets().at(target_name);
    MINIDL_CHECK(dtype_text == "float64" || dtype_text == "float32", "--dtype: '", dtype_text,
                 "' is not known: expected float64 or float32");
    MINIDL_CHECK(mode_text == "train" || mode_text == "eval", "--mode: '", mode_text,
                 "' is not known: expected train or eval");
    MINIDL_CHECK(bug_text.empty() || bugs().contains(bug_text), "--break ",
                 bugs().unknown_message(bug_text));
    const Bug bug = bug_text.empty() ? Bug::None : bugs().at(bug_text);
    const DType dtype = dtype_text == "float32" ? DType::F32 : DType::F64;
    s.in = shape_text.empty() ? t.default_shape : parse_shape(shape_text);
    opt.mode = mode_text == "train" ? Mode::Train : Mode::Eval;
    opt.max_elements = max_elements > 0 ? max_elements : t.default_max_elements;
    opt.h = h;
    // float64: the tests' bound (layers/gradcheck.h). float32: the analytic gradient carries the
    // rounding of float32 sums, |error| <= K u sum|terms| with u = 2^-24 (5.96e-8); K up to ~16k
    // terms per reduction at these shapes gives <= 9.8e-4 relative to the terms (or to the 0.1
    // floor, whichever is larger).
    opt.tolerance = tolerance > 0 ? tolerance : (dtype == DType::F64 ? 1e-6 : 1e-3);
    MINIDL_CHECK(!channels_last || s.in.dim() == 4, "--channels-last: the input ", s.in,
                 " is not 4-D (N, C, H, W); give a 4-D --shape or leave the flag out");

    s.dtype = DType::F64;
    m64 = t.make(s);
    m64->output_shape(s.in);  // a shape the target cannot take is reported before any work
    Generator g(s.seed ^ 0x9e3779b97f4a7c15ull);
    x64 = Tensor::empty(s.in, DType::F64);
    for (int64_t i = 0; i < x64.numel(); ++i) x64.data<double>()[i] = g.uniform(-1.0, 1.0);
    if (dtype == DType::F32) {
      // The float32 module, and the float64 twin given its (exactly representable) values.
      s.dtype = DType::F32;
      ma = t.make(s);
      xa = to_dtype(x64, DType::F32);
      x64 = to_dtype(xa, DType::F64);
      auto pa = ma->named_parameters();
      auto p64 = m64->named_parameters();
      for (size_t i = 0; i < pa.size(); ++i) p64[i].param->value.copy_(to_dtype(pa[i].param->value, DType::F64));
    }
    if (bug != Bug::None) {
      std::unique_ptr<Module>& target = ma ? ma : m64;
      MINIDL_CHECK(bug == Bug::InputScale || !target->named_parameters().empty(), "--break ",
                   bug_text, ": ", target_name, " has no parameters; try --break input-scale");
      target = std::make_unique<Broken>(std::move(target), bug);
    }
  } catch (const Error& e) {
    err << "gradcheck: " << e.what() << "\n";
    return 2;
  }

  Module& analytic = ma ? *ma : *m64;
  // --channels-last: both modules run on the same values in NHWC (a dropout mask, drawn in memory
  // order, is then the same on both sides); the perturbed values and the gradients stay in logical
  // (n, c, h, w) order, the input converted per forward.
  const Layout layout = channels_last ? Layout::NHWC : Layout::NCHW;
  const Tensor xin = to_layout(ma ? xa : x64, layout);
  // The analytic gradients of L = sum(R * f(x)).
  Generator g(s.seed);
  const auto rewind_a = dropout_rewinder(analytic);
  const auto rewind_64 = dropout_rewinder(*m64);
  analytic.zero_grad();
  const Tensor y = analytic.forward(xin, opt.mode);
  const Tensor R64 = gradcheck_projection(y.shape(), g, DType::F64);
  const Tensor dx = analytic.backward(to_layout(to_dtype(R64, y.dtype()), y.layout()));
  std::vector<GradTarget> targets_;
  // A model's first convolution computes no input gradient (the image needs none): then only the
  // parameters are checked.
  if (dx.defined())
    targets_.push_back({"input", x64.data<double>(), as_doubles(to_layout(dx, Layout::NCHW))});
  auto p64 = m64->named_parameters();
  auto pa = analytic.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    targets_.push_back({pa[i].name, p64[i].param->value.data<double>(), as_doubles(pa[i].param->grad)});
  const auto loss = [&] {
    if (rewind_64) rewind_64();
    const Tensor y64 = to_layout(m64->forward(to_layout(x64, layout), opt.mode), Layout::NCHW);
    double L = 0;
    for (int64_t i = 0; i < y64.numel(); ++i) L += R64.data<double>()[i] * y64.data<double>()[i];
    return L;
  };
  const GradCheckResult r = check_gradients(loss, targets_, s.seed, opt);

  out << fmt::format("gradcheck {}: {} on {} {}{}, mode {}, seed {}{}\n", target_name,
                     analytic.describe(), dtype_text, fmt::streamed(s.in),
                     channels_last ? " channels_last" : "", mode_text, s.seed,
                     bug_text.empty() ? "" : ", with the planted bug " + bug_text);
  out << fmt::format("analytic: backward in {}; numeric: float64 central differences (Richardson, "
                     "h = {:g}); error = |a - n| / max(|a|, |n|, {:g}); tolerance {:g}\n\n",
                     dtype_text, opt.h, opt.floor, opt.tolerance);
  out << fmt::format("{:<24} {:>9} {:>8} {:>12} {:>12}  {:<44} {}\n", "tensor", "elements",
                     "checked", "max abs err", "max error", "worst element: analytic vs numeric",
                     "result");
  int failed = 0;
  for (const TensorGradCheck& tc : r.tensors) {
    failed += !tc.ok;
    out << fmt::format("{:<24} {:>9} {:>8} {:>12.3e} {:>12.3e}  {:<44} {}\n", tc.name, tc.numel,
                       tc.checked, tc.max_abs_error, tc.max_error,
                       fmt::format("[{}] {:.9g} vs {:.9g}", tc.worst_index, tc.worst_analytic,
                                   tc.worst_numeric),
                       tc.ok ? "PASS" : "FAIL");
  }
  out << "\n"
      << (failed == 0 ? fmt::format("PASS: all {} tensors within {:g}\n", r.tensors.size(), opt.tolerance)
                      : fmt::format("FAIL: {} of {} tensors off by more than {:g}\n", failed,
                                    r.tensors.size(), opt.tolerance));
  return failed == 0 ? 0 : 1;
}

}  // namespace minidl

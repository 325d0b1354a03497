// The Residual combinator, and the residual blocks composed from it (layers/residual.h).
//
// The blocks only say which layers they hold and in what order; the passes come from the
// combinators: Sequential chains the children forward and backward, and Residual handles the one
// thing that is not a chain, the sum main(x) + shortcut(x).
#include "layers/residual.h"

#include "kernels/elementwise.h"

namespace minidl {

// -------------------------------------------------------------------------------------- Residual

Residual::Residual(std::unique_ptr<Module> main, std::unique_ptr<Module> shortcut,
                   const std::string& shortcut_name)
    : Module("Residual"),
      main_(std::move(main)),
      shortcut_(std::move(shortcut)),
      shortcut_name_(shortcut_name) {
  MINIDL_CHECK(main_ != nullptr, "Residual: the main branch is null (a null shortcut is the identity)");
  MINIDL_CHECK(!shortcut_ || !shortcut_name.empty(), "Residual: the shortcut needs a name");
  // Registration order = parameter order: the main branch, then the shortcut (torchvision's).
  register_module("", main_.get());
  if (shortcut_) register_module(shortcut_name, shortcut_.get());
}

std::string Residual::describe() const {
  std::string out = "Residual(";
  auto line = [&](const std::string& name, std::string d) {
    for (size_t pos = d.find('\n'); pos != std::string::npos; pos = d.find('\n', pos + 1))
      d.insert(pos + 1, "  ");
    out += "\n  (" + name + "): " + d;
  };
  line("main", main_->describe());
  if (shortcut_)
    line(shortcut_name_, shortcut_->describe());
  else
    line("shortcut", "identity");
  return out + "\n)";
}

Shape Residual::output_shape(const Shape& in) const {
  const Shape out = main_->output_shape(in);
  const Shape sc = shortcut_ ? shortcut_->output_shape(in) : in;
  MINIDL_CHECK(out == sc, who(), ": for input ", in, " the main branch gives ", out, " but the shortcut ",
               shortcut_ ? "gives " : "(identity) is ", sc,
               "; the branches must agree (a projection shortcut adapts stride and channels)");
  return out;
}

int64_t Residual::forward_flops(const Shape& in) const {
  const Shape out = output_shape(in);
  const int64_t sc = shortcut_ ? shortcut_->forward_flops(in) : 0;
  return main_->forward_flops(in) + sc + out.numel() /* the sum */;
}

Tensor Residual::forward(const Tensor& x, Mode mode) {
  check_input(x);
  const Shape out_shape = output_shape(x.shape());

  const Tensor y_main = main_->forward(x, mode);
  // Shortcut: the input itself, or its projection to the main branch's shape.
  const Tensor y_shortcut = shortcut_ ? shortcut_->forward(x, mode) : x;

  ensure_tensor(sum_, out_shape, x.dtype(), x.device(), y_main.layout());
  add(sum_, y_main, y_shortcut);
  return sum_;
}

// Going backward through out = main(x) + shortcut(x): since d(a + b)/da = d(a + b)/db = 1, the
// gradient at the sum, dL/dout, enters the main branch and the shortcut unchanged. Each branch
// returns the gradient with respect to its input, which is x for both, so x receives both
// contributions (the multivariate chain rule sums over every path from x to the loss):
//
//   dL/dx = main.backward(dL/dout) + shortcut.backward(dL/dout)
//
// with shortcut.backward(g) = g for the identity.
// The branches accumulate their parameter gradients themselves; the sum is written into dx_,
// which belongs to the Residual and is overwritten, as the layer contract says (the branches'
// own dx buffers are theirs, so neither is added into in place).
Tensor Residual::backward(const Tensor& dy) {
  MINIDL_CHECK(sum_.defined(), who(), ": backward called before forward");
  check_shape(dy, sum_.shape(), who().c_str(), "output gradient");

  const Tensor dx_main = main_->backward(dy);
  backward_done(*main_);
  // Identity: its gradient is dL/dout itself; a projection: its backward.
  const Tensor dx_shortcut = shortcut_ ? shortcut_->backward(dy) : dy;
  if (shortcut_) backward_done(*shortcut_);
  MINIDL_CHECK(dx_main.defined() && dx_shortcut.defined(), who(), ": the ",
               dx_main.defined() ? "shortcut" : "main branch",
               " returned no input gradient (set_needs_input_grad(false) cannot be used inside a residual "
               "branch: the sum needs both)");

  ensure_tensor(dx_, dx_main.shape(), dx_main.dtype(), dx_main.device(), dx_main.layout());
  add(dx_, dx_main, dx_shortcut);
  return dx_;
}

// -------------------------------------------------------------------------------------- blocks

namespace {

void check_block_config(const BlockConfig& cfg, const char* type) {
  MINIDL_CHECK(cfg.in_channels > 0 && cfg.planes > 0, type,
               ": in_channels and planes must be positive, got in_channels=", cfg.in_channels,
               ", planes=", cfg.planes);
  MINIDL_CHECK(cfg.stride >= 1, type, ": stride must be >= 1, got ", cfg.stride);
}

std::unique_ptr<Conv2d> conv(int64_t in, int64_t out, int kernel, int stride, DType dtype, Generator& gen) {
  // BatchNorm follows every convolution of a block and has its own shift, so no conv bias.
  return std::make_unique<Conv2d>(Conv2dConfig{in, out, kernel, stride, kernel / 2, /*bias=*/false, dtype},
                                  gen);
}

std::unique_ptr<BatchNorm2d> batchnorm(int64_t channels, DType dtype) {
  return std::make_unique<BatchNorm2d>(BatchNorm2dConfig{channels, 0.1, 1e-5, dtype});
}

// The shortcut: the identity (null) when the block keeps the shape, else the projection: a 1x1
// convolution with the block's stride, then BatchNorm, named "0" and "1" as torchvision's
// nn.Sequential(conv1x1, BatchNorm2d).
std::unique_ptr<Sequential> make_shortcut(int64_t in, int64_t out, int stride, DType dtype, Generator& gen) {
  if (stride == 1 && in == out) return nullptr;
  auto ds = std::make_unique<Sequential>();
  ds->add(conv(in, out, 1, stride, dtype, gen));
  ds->add(batchnorm(out, dtype));
  return ds;
}

void check_block_input(const Module& m, const Shape& in, int64_t channels) {
  MINIDL_CHECK(in.dim() == 4 && in[1] == channels, m.who(), ": expected input (N, ", channels,
               ", H, W), got ", in);
}

}  // namespace

// ------------------------------------------------------------------------------------ BasicBlock

// A block's passes, as the combinators run them. Forward: the main branch conv1 -> ... -> bn2,
// then the shortcut, their sum, relu_out. Backward: relu_out's backward turns dL/dout into
// dL/dsum; the Residual sends it into the main branch, whose Sequential runs bn2, conv2, relu1,
// bn1, conv1 backward in that order, and into the shortcut, then adds the two input gradients.
//
// The constructors build the layers in the order they draw from `gen` (conv1, conv2, [conv3,]
// then the projection), which is the order the seed's initial weights depend on.
BasicBlock::BasicBlock(const BlockConfig& cfg, Generator& gen) : Sequential("BasicBlock"), cfg_(cfg) {
  check_block_config(cfg, "BasicBlock");
  const int64_t out = cfg.planes * expansion;

  // Main branch: conv1 -> bn1 -> relu -> conv2 -> bn2
  auto main = std::make_unique<Sequential>();
  main->add("conv1", conv(cfg.in_channels, cfg.planes, 3, cfg.stride, cfg.dtype, gen));
  main->add("bn1", batchnorm(cfg.planes, cfg.dtype));
  main->add("relu1", std::make_unique<ReLU>());
  main->add("conv2", conv(cfg.planes, out, 3, 1, cfg.dtype, gen));
  last_bn_ = &main->add("bn2", batchnorm(out, cfg.dtype));

  // out = relu(main(x) + shortcut(x))
  auto shortcut = make_shortcut(cfg.in_channels, out, cfg.stride, cfg.dtype, gen);
  projection_ = shortcut != nullptr;
  add_transparent(std::make_unique<Residual>(std::move(main), std::move(shortcut), "downsample"));
  add("relu_out", std::make_unique<ReLU>());
}

std::string BasicBlock::describe() const {
  return str("BasicBlock(", cfg_.in_channels, " -> ", cfg_.planes * expansion, ", stride ", cfg_.stride,
             projection_ ? ", projection shortcut)" : ")");
}

Shape BasicBlock::output_shape(const Shape& in) const {
  check_block_input(*this, in, cfg_.in_channels);
  return Sequential::output_shape(in);
}

// ------------------------------------------------------------------------------------ Bottleneck

Bottleneck::Bottleneck(const BlockConfig& cfg, Generator& gen) : Sequential("Bottleneck"), cfg_(cfg) {
  check_block_config(cfg, "Bottleneck");
  const int64_t out = cfg.planes * expansion;

  // Main branch: 1x1 reduce -> 3x3 (strided: torchvision v1.5 puts the stride here, not on the
  // first 1x1) -> 1x1 expand, each followed by BN (and ReLU but the last).
  auto main = std::make_unique<Sequential>();
  main->add("conv1", conv(cfg.in_channels, cfg.planes, 1, 1, cfg.dtype, gen));
  main->add("bn1", batchnorm(cfg.planes, cfg.dtype));
  main->add("relu1", std::make_unique<ReLU>());
  main->add("conv2", conv(cfg.planes, cfg.planes, 3, cfg.stride, cfg.dtype, gen));
  main->add("bn2", batchnorm(cfg.planes, cfg.dtype));
  main->add("relu2", std::make_unique<ReLU>());
  main->add("conv3", conv(cfg.planes, out, 1, 1, cfg.dtype, gen));
  last_bn_ = &main->add("bn3", batchnorm(out, cfg.dtype));

  // out = relu(main(x) + shortcut(x))
  auto shortcut = make_shortcut(cfg.in_channels, out, cfg.stride, cfg.dtype, gen);
  projection_ = shortcut != nullptr;
  add_transparent(std::make_unique<Residual>(std::move(main), std::move(shortcut), "downsample"));
  add("relu_out", std::make_unique<ReLU>());
}

std::string Bottleneck::describe() const {
  return str("Bottleneck(", cfg_.in_channels, " -> ", cfg_.planes, " -> ", cfg_.planes * expansion,
             ", stride ", cfg_.stride, projection_ ? ", projection shortcut)" : ")");
}

Shape Bottleneck::output_shape(const Shape& in) const {
  check_block_input(*this, in, cfg_.in_channels);
  return Sequential::output_shape(in);
}

}  // namespace minidl

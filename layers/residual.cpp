// Residual blocks: the forward and backward passes written out layer by layer.
//
// Each child keeps what its own backward needs, so the block only chains the children and handles
// the one thing that is not a child: the sum main(x) + shortcut(x). Going backward through
// out = relu(sum), the output ReLU's backward gives dL/dsum; since d(a + b)/da = d(a + b)/db = 1,
// that same gradient enters the main branch and the shortcut, and the input receives both
// contributions: dx = dx_main + dx_shortcut (x fed both branches). Parameter gradients accumulate
// inside the children; the block's dx is overwritten, as the layer contract says.
#include "layers/residual.h"

#include "kernels/elementwise.h"

namespace minidl {

namespace {

void check_block_config(const BlockConfig& cfg, const char* type) {
  MINIDL_CHECK(cfg.in_channels > 0 && cfg.planes > 0, type,
               ": in_channels and planes must be positive, got in_channels=", cfg.in_channels,
               ", planes=", cfg.planes);
  MINIDL_CHECK(cfg.stride >= 1, type, ": stride must be >= 1, got ", cfg.stride);
}

Conv2dConfig conv_config(int64_t in, int64_t out, int kernel, int stride, DType dtype) {
  // BatchNorm follows every convolution of a block and has its own shift, so no conv bias.
  return Conv2dConfig{in, out, kernel, stride, kernel / 2, /*bias=*/false, dtype};
}

// The projection shortcut: 1x1 convolution with the block's stride, then BatchNorm.
// Named "0" and "1" as torchvision's nn.Sequential(conv1x1, BatchNorm2d).
std::unique_ptr<Sequential> make_downsample(int64_t in, int64_t out, int stride, DType dtype,
                                            Generator& gen) {
  auto ds = std::make_unique<Sequential>();
  ds->add(std::make_unique<Conv2d>(conv_config(in, out, 1, stride, dtype), gen));
  ds->add(std::make_unique<BatchNorm2d>(BatchNorm2dConfig{out, 0.1, 1e-5, dtype}));
  return ds;
}

void check_block_input(const Module& m, const Shape& in, int64_t channels) {
  MINIDL_CHECK(in.dim() == 4 && in[1] == channels, m.who(), ": expected input (N, ", channels,
               ", H, W), got ", in);
}

}  // namespace

// ------------------------------------------------------------------------------------ BasicBlock

BasicBlock::BasicBlock(const BlockConfig& cfg, Generator& gen) : Module("BasicBlock"), cfg_(cfg) {
  check_block_config(cfg, "BasicBlock");
  const int64_t out = cfg.planes * expansion;
  conv1_ = std::make_unique<Conv2d>(conv_config(cfg.in_channels, cfg.planes, 3, cfg.stride, cfg.dtype), gen);
  bn1_ = std::make_unique<BatchNorm2d>(BatchNorm2dConfig{cfg.planes, 0.1, 1e-5, cfg.dtype});
  relu1_ = std::make_unique<ReLU>();
  conv2_ = std::make_unique<Conv2d>(conv_config(cfg.planes, out, 3, 1, cfg.dtype), gen);
  bn2_ = std::make_unique<BatchNorm2d>(BatchNorm2dConfig{out, 0.1, 1e-5, cfg.dtype});
  relu_out_ = std::make_unique<ReLU>();
  if (cfg.stride != 1 || cfg.in_channels != out)
    downsample_ = make_downsample(cfg.in_channels, out, cfg.stride, cfg.dtype, gen);

  // Registration order = forward order of the main branch, then the shortcut, then the output
  // ReLU; the parameter order (conv1, bn1, conv2, bn2, downsample) is torchvision's.
  register_module("conv1", conv1_.get());
  register_module("bn1", bn1_.get());
  register_module("relu1", relu1_.get());
  register_module("conv2", conv2_.get());
  register_module("bn2", bn2_.get());
  if (downsample_) register_module("downsample", downsample_.get());
  register_module("relu_out", relu_out_.get());
}

std::string BasicBlock::describe() const {
  return str("BasicBlock(", cfg_.in_channels, " -> ", cfg_.planes * expansion, ", stride ", cfg_.stride,
             downsample_ ? ", projection shortcut)" : ")");
}

Shape BasicBlock::output_shape(const Shape& in) const {
  check_block_input(*this, in, cfg_.in_channels);
  return conv2_->output_shape(conv1_->output_shape(in));
}

int64_t BasicBlock::forward_flops(const Shape& in) const {
  const Shape s1 = conv1_->output_shape(in);
  const Shape s2 = conv2_->output_shape(s1);
  int64_t f = conv1_->forward_flops(in) + bn1_->forward_flops(s1) + relu1_->forward_flops(s1) +
              conv2_->forward_flops(s1) + bn2_->forward_flops(s2);
  if (downsample_) f += downsample_->forward_flops(in);
  return f + s2.numel() /* the residual sum */ + relu_out_->forward_flops(s2);
}

Tensor BasicBlock::forward(const Tensor& x, Mode mode) {
  check_input(x);
  const Shape out_shape = output_shape(x.shape());

  // Main branch: conv1 -> bn1 -> relu -> conv2 -> bn2
  Tensor h = conv1_->forward(x, mode);
  h = bn1_->forward(h, mode);
  h = relu1_->forward(h, mode);
  h = conv2_->forward(h, mode);
  const Tensor main = bn2_->forward(h, mode);

  // Shortcut: the input itself, or its projection to the new shape.
  const Tensor shortcut = downsample_ ? downsample_->forward(x, mode) : x;

  // out = relu(main + shortcut)
  ensure_tensor(sum_, out_shape, x.dtype(), x.device());
  add(sum_, main, shortcut);
  return relu_out_->forward(sum_, mode);
}

Tensor BasicBlock::backward(const Tensor& dy) {
  MINIDL_CHECK(sum_.defined(), who(), ": backward called before forward");
  check_shape(dy, sum_.shape(), who().c_str(), "output gradient");

  // Through the output ReLU: dL/dsum.
  const Tensor dsum = relu_out_->backward(dy);

  // The sum passes dL/dsum unchanged to both branches. Main branch, in reverse:
  Tensor g = bn2_->backward(dsum);
  g = conv2_->backward(g);
  g = relu1_->backward(g);
  g = bn1_->backward(g);
  const Tensor dx_main = conv1_->backward(g);

  // Shortcut branch: identity (its gradient is dL/dsum itself) or the projection's backward.
  const Tensor dx_shortcut = downsample_ ? downsample_->backward(dsum) : dsum;

  // x fed both branches, so its gradient is the sum of the two.
  ensure_tensor(dx_, dx_main.shape(), dx_main.dtype(), dx_main.device());
  add(dx_, dx_main, dx_shortcut);
  return dx_;
}

// ------------------------------------------------------------------------------------ Bottleneck

Bottleneck::Bottleneck(const BlockConfig& cfg, Generator& gen) : Module("Bottleneck"), cfg_(cfg) {
  check_block_config(cfg, "Bottleneck");
  const int64_t out = cfg.planes * expansion;
  // torchvision v1.5: the stride sits on the 3x3 convolution, not on the first 1x1.
  conv1_ = std::make_unique<Conv2d>(conv_config(cfg.in_channels, cfg.planes, 1, 1, cfg.dtype), gen);
  bn1_ = std::make_unique<BatchNorm2d>(BatchNorm2dConfig{cfg.planes, 0.1, 1e-5, cfg.dtype});
  relu1_ = std::make_unique<ReLU>();
  conv2_ = std::make_unique<Conv2d>(conv_config(cfg.planes, cfg.planes, 3, cfg.stride, cfg.dtype), gen);
  bn2_ = std::make_unique<BatchNorm2d>(BatchNorm2dConfig{cfg.planes, 0.1, 1e-5, cfg.dtype});
  relu2_ = std::make_unique<ReLU>();
  conv3_ = std::make_unique<Conv2d>(conv_config(cfg.planes, out, 1, 1, cfg.dtype), gen);
  bn3_ = std::make_unique<BatchNorm2d>(BatchNorm2dConfig{out, 0.1, 1e-5, cfg.dtype});
  relu_out_ = std::make_unique<ReLU>();
  if (cfg.stride != 1 || cfg.in_channels != out)
    downsample_ = make_downsample(cfg.in_channels, out, cfg.stride, cfg.dtype, gen);

  register_module("conv1", conv1_.get());
  register_module("bn1", bn1_.get());
  register_module("relu1", relu1_.get());
  register_module("conv2", conv2_.get());
  register_module("bn2", bn2_.get());
  register_module("relu2", relu2_.get());
  register_module("conv3", conv3_.get());
  register_module("bn3", bn3_.get());
  if (downsample_) register_module("downsample", downsample_.get());
  register_module("relu_out", relu_out_.get());
}

std::string Bottleneck::describe() const {
  return str("Bottleneck(", cfg_.in_channels, " -> ", cfg_.planes, " -> ", cfg_.planes * expansion,
             ", stride ", cfg_.stride, downsample_ ? ", projection shortcut)" : ")");
}

Shape Bottleneck::output_shape(const Shape& in) const {
  check_block_input(*this, in, cfg_.in_channels);
  return conv3_->output_shape(conv2_->output_shape(conv1_->output_shape(in)));
}

int64_t Bottleneck::forward_flops(const Shape& in) const {
  const Shape s1 = conv1_->output_shape(in);
  const Shape s2 = conv2_->output_shape(s1);
  const Shape s3 = conv3_->output_shape(s2);
  int64_t f = conv1_->forward_flops(in) + bn1_->forward_flops(s1) + relu1_->forward_flops(s1) +
              conv2_->forward_flops(s1) + bn2_->forward_flops(s2) + relu2_->forward_flops(s2) +
              conv3_->forward_flops(s2) + bn3_->forward_flops(s3);
  if (downsample_) f += downsample_->forward_flops(in);
  return f + s3.numel() /* the residual sum */ + relu_out_->forward_flops(s3);
}

Tensor Bottleneck::forward(const Tensor& x, Mode mode) {
  check_input(x);
  const Shape out_shape = output_shape(x.shape());

  // Main branch: 1x1 reduce -> 3x3 (strided) -> 1x1 expand, each followed by BN (and ReLU but the last).
  Tensor h = conv1_->forward(x, mode);
  h = bn1_->forward(h, mode);
  h = relu1_->forward(h, mode);
  h = conv2_->forward(h, mode);
  h = bn2_->forward(h, mode);
  h = relu2_->forward(h, mode);
  h = conv3_->forward(h, mode);
  const Tensor main = bn3_->forward(h, mode);

  const Tensor shortcut = downsample_ ? downsample_->forward(x, mode) : x;

  // out = relu(main + shortcut)
  ensure_tensor(sum_, out_shape, x.dtype(), x.device());
  add(sum_, main, shortcut);
  return relu_out_->forward(sum_, mode);
}

Tensor Bottleneck::backward(const Tensor& dy) {
  MINIDL_CHECK(sum_.defined(), who(), ": backward called before forward");
  check_shape(dy, sum_.shape(), who().c_str(), "output gradient");

  // Through the output ReLU: dL/dsum.
  const Tensor dsum = relu_out_->backward(dy);

  // The sum passes dL/dsum unchanged to both branches. Main branch, in reverse:
  Tensor g = bn3_->backward(dsum);
  g = conv3_->backward(g);
  g = relu2_->backward(g);
  g = bn2_->backward(g);
  g = conv2_->backward(g);
  g = relu1_->backward(g);
  g = bn1_->backward(g);
  const Tensor dx_main = conv1_->backward(g);

  const Tensor dx_shortcut = downsample_ ? downsample_->backward(dsum) : dsum;

  // x fed both branches, so its gradient is the sum of the two.
  ensure_tensor(dx_, dx_main.shape(), dx_main.dtype(), dx_main.device());
  add(dx_, dx_main, dx_shortcut);
  return dx_;
}

}  // namespace minidl

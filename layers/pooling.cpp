// Pooling layers. No parameters; dL/dx OVERWRITES dx_ (every input pixel is written, zero where no
// window selected it). MaxPool2d keeps x, y and the argmax of its last forward for backward (the
// hand-written CUDA and CPU paths route dy through argmax, the cuDNN path recomputes from x and y).
#include "layers/pooling.h"

namespace minidl {

namespace {
// The window settings alone, checked at construction so a bad model definition fails before any
// data is seen (pool2d_output_shape re-checks them with the input's shape).
Pool2dParams checked(Pool2dParams p, const char* type) {
  MINIDL_CHECK(p.kernel >= 1 && p.stride >= 1 && p.pad >= 0 && p.pad <= p.kernel / 2, type,
               ": expected kernel >= 1, stride >= 1 and 0 <= padding <= kernel / 2, got k=",
               p.kernel, ", s=", p.stride, ", p=", p.pad);
  return p;
}

std::string window(const char* type, Pool2dParams p) {
  return str(type, "(k=", p.kernel, ", s=", p.stride, ", p=", p.pad, ")");
}
}  // namespace

// ---------------------------------------------------------------- MaxPool2d

MaxPool2d::MaxPool2d(Pool2dParams p) : Module("MaxPool2d"), p_(checked(p, "MaxPool2d")) {}

std::string MaxPool2d::describe() const { return window("MaxPool2d", p_); }

Shape MaxPool2d::output_shape(const Shape& in) const {
  return pool2d_output_shape(in, p_, who().c_str());
}

// One comparison per window element and output.
int64_t MaxPool2d::forward_flops(const Shape& in) const {
  return output_shape(in).numel() * p_.kernel * p_.kernel;
}

Tensor MaxPool2d::forward(const Tensor& x, Mode) {
  check_input(x);
  const Shape out = output_shape(x.shape());
  ensure_tensor(y_, out, x.dtype(), x.device(), x.layout());
  ensure_tensor(argmax_, out, DType::I32, x.device(), x.layout());
  maxpool2d_forward(y_, argmax_, x, p_);
  x_ = x;
  return y_;
}

Tensor MaxPool2d::backward(const Tensor& dy) {
  MINIDL_CHECK(x_.defined(), who(), ": backward called before forward");
  check_shape(dy, y_.shape(), who().c_str(), "output gradient");
  ensure_tensor(dx_, x_.shape(), x_.dtype(), x_.device(), x_.layout());
  maxpool2d_backward(dx_, dy, x_, y_, argmax_, p_);
  return dx_;
}

// ---------------------------------------------------------------- AvgPool2d

AvgPool2d::AvgPool2d(Pool2dParams p) : Module("AvgPool2d"), p_(checked(p, "AvgPool2d")) {}

std::string AvgPool2d::describe() const { return window("AvgPool2d", p_); }

Shape AvgPool2d::output_shape(const Shape& in) const {
  return pool2d_output_shape(in, p_, who().c_str());
}

// k*k adds (the last one a multiply by 1/k^2) per output.
int64_t AvgPool2d::forward_flops(const Shape& in) const {
  return output_shape(in).numel() * p_.kernel * p_.kernel;
}

Tensor AvgPool2d::forward(const Tensor& x, Mode) {
  check_input(x);
  ensure_tensor(y_, output_shape(x.shape()), x.dtype(), x.device(), x.layout());
  avgpool2d_forward(y_, x, p_);
  in_shape_ = x.shape();
  in_layout_ = x.layout();
  return y_;
}

Tensor AvgPool2d::backward(const Tensor& dy) {
  MINIDL_CHECK(y_.defined(), who(), ": backward called before forward");
  check_shape(dy, y_.shape(), who().c_str(), "output gradient");
  ensure_tensor(dx_, in_shape_, dy.dtype(), dy.device(), in_layout_);
  avgpool2d_backward(dx_, dy, p_);
  return dx_;
}

// ---------------------------------------------------------------- GlobalAvgPool

GlobalAvgPool::GlobalAvgPool() : Module("GlobalAvgPool") {}

Shape GlobalAvgPool::output_shape(const Shape& in) const {
  MINIDL_CHECK(in.dim() == 4 && in[2] * in[3] > 0, who(),
               ": expected input (N, C, H, W) with H, W >= 1, got ", in);
  return Shape{in[0], in[1], 1, 1};
}

int64_t GlobalAvgPool::forward_flops(const Shape& in) const { return in.numel(); }

Tensor GlobalAvgPool::forward(const Tensor& x, Mode) {
  check_input(x);
  ensure_tensor(y_, output_shape(x.shape()), x.dtype(), x.device(), x.layout());
  global_avgpool_forward(y_, x);
  in_shape_ = x.shape();
  in_layout_ = x.layout();
  return y_;
}

Tensor GlobalAvgPool::backward(const Tensor& dy) {
  MINIDL_CHECK(y_.defined(), who(), ": backward called before forward");
  check_shape(dy, y_.shape(), who().c_str(), "output gradient");
  ensure_tensor(dx_, in_shape_, dy.dtype(), dy.device(), in_layout_);
  global_avgpool_backward(dx_, dy);
  return dx_;
}

}  // namespace minidl

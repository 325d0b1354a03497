// Tutorial step (b): write your own layer (docs/tutorial/b-write-a-layer.md).
//
// PReLU, a ReLU whose negative slope is learned, one slope per channel (He et al. 2015):
//
//   y[n,c,h,w] = x            if x > 0
//              = a[c] * x     otherwise
//
// forward() and the loops of backward() are written. element_grad() has two TODOs: one element's
// input gradient dL/dx and its share of the slope gradient dL/da. Fill them in, then run
//
//   build/gradcheck --target student
//
// which compares your gradients with float64 central differences and prints PASS or FAIL for the
// input and for "weight" (the slopes). tutorial/student_layer_solution.h has one answer; look only
// after the checker passes, or when stuck.
#pragma once

#include <algorithm>

#include "layers/module.h"

namespace minidl::tutorial {

class StudentPReLU : public Module {
 public:
  StudentPReLU(int64_t channels, DType dtype, const char* type = "StudentPReLU")
      : Module(type), channels_(channels) {
    // 0.25 is PyTorch's initial slope; a little spread makes a wrong channel index visible.
    Tensor a = Tensor::empty(Shape{channels}, DType::F64);
    for (int64_t c = 0; c < channels; ++c) a.data<double>()[c] = 0.25 + 0.05 * c;
    Tensor w = Tensor::empty(Shape{channels}, dtype);
    if (dtype == DType::F64)
      w = a;
    else
      for (int64_t c = 0; c < channels; ++c) w.data<float>()[c] = float(a.data<double>()[c]);
    slope_ = register_parameter("weight", w);
  }

  Shape output_shape(const Shape& in) const override {
    MINIDL_CHECK(in.dim() == 4 && in[1] == channels_, who(), ": expected (N, ", channels_,
                 ", H, W), got ", in);
    return in;
  }

  Tensor forward(const Tensor& x, Mode) override {
    check_input(x);
    output_shape(x.shape());
    x_ = x;
    Tensor y = Tensor::empty(x.shape(), x.dtype());
    if (x.dtype() == DType::F64)
      run<double>(x, y);
    else
      run<float>(x, y);
    return y;
  }

  Tensor backward(const Tensor& dy) override {
    Tensor dx = Tensor::zeros(x_.shape(), x_.dtype());
    if (x_.dtype() == DType::F64)
      grad<double>(dy, dx);
    else
      grad<float>(dy, dx);
    return dx;
  }

 protected:
  template <typename T>
  void run(const Tensor& x, Tensor& y) {
    const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
    const T* px = x.data<T>();
    const T* a = slope_->value.data<T>();
    T* py = y.data<T>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < HW; ++i) {
          const int64_t k = (n * C + c) * HW + i;
          py[k] = px[k] > T(0) ? px[k] : a[c] * px[k];
        }
  }

  template <typename T>
  void grad(const Tensor& dy, Tensor& dx) {
    const int64_t N = x_.size(0), C = x_.size(1), HW = x_.size(2) * x_.size(3);
    const T* px = x_.data<T>();
    const T* pdy = dy.data<T>();
    const T* a = slope_->value.data<T>();
    T* pdx = dx.data<T>();
    T* da = slope_->grad.data<T>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < HW; ++i) {
          const int64_t k = (n * C + c) * HW + i;
          double dx_k = 0, da_k = 0;
          element_grad(pdy[k], px[k], a[c], dx_k, da_k);
          pdx[k] = T(dx_k);
          // a[c] is used by every element of channel c, over the batch and the image: its
          // gradient is the sum of their contributions. And it is ADDED to .grad (+=), the
          // layer contract: the optimizer zeroes the gradients before each step.
          da[c] += T(da_k);
        }
  }

  // One element y = (x > 0 ? x : a x) with dL/dy = dy: its input gradient dL/dx and its
  // contribution to dL/da.
  virtual void element_grad(double dy, double x, double a, double& dx, double& da) const {
    // TODO (1): the input gradient. dL/dx = dL/dy * dy/dx, and dy/dx is 1 where x > 0 and a
    //           elsewhere.
    dx = dy;
    // TODO (2): this element's share of the slope gradient, dL/dy * dy/da. What is dy/da where
    //           x > 0, and where x <= 0?
    da = 0;
    (void)x;  // (remove these two lines once you use x and a)
    (void)a;
  }

  int64_t channels_;
  Parameter* slope_ = nullptr;
  Tensor x_;
};

}  // namespace minidl::tutorial

// One answer to tutorial step (b) (tutorial/student_layer.h): the TODOs of backward() done. The
// gradcheck app grades it as --target student-solution.
#pragma once

#include "tutorial/student_layer.h"

namespace minidl::tutorial {

class StudentPReLUSolution : public StudentPReLU {
 public:
  StudentPReLUSolution(int64_t channels, DType dtype)
      : StudentPReLU(channels, dtype, "StudentPReLUSolution") {}

  Tensor backward(const Tensor& dy) override {
    Tensor dx = Tensor::zeros(x_.shape(), x_.dtype());
    if (x_.dtype() == DType::F64)
      grad<double>(dy, dx);
    else
      grad<float>(dy, dx);
    return dx;
  }

 private:
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
          // dy/dx = 1 where x > 0, a[c] elsewhere; dy/da[c] = x where x <= 0, 0 elsewhere, and
          // a[c] serves every (n, h, w) of channel c, so its gradient sums over them.
          pdx[k] = px[k] > T(0) ? pdy[k] : a[c] * pdy[k];
          if (!(px[k] > T(0))) da[c] += pdy[k] * px[k];
        }
  }
};

}  // namespace minidl::tutorial

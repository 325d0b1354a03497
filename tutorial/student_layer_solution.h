// One answer to tutorial step (b) (tutorial/student_layer.h): the TODOs of element_grad() done.
// The gradcheck app grades it as --target student-solution.
#pragma once

#include "tutorial/student_layer.h"

namespace minidl::tutorial {

class StudentPReLUSolution : public StudentPReLU {
 public:
  StudentPReLUSolution(int64_t channels, DType dtype)
      : StudentPReLU(channels, dtype, "StudentPReLUSolution") {}

 protected:
  // dy/dx = 1 where x > 0, a elsewhere; dy/da = 0 where x > 0, x elsewhere.
  void element_grad(double dy, double x, double a, double& dx, double& da) const override {
    dx = x > 0 ? dy : a * dy;
    da = x > 0 ? 0.0 : dy * x;
  }
};

}  // namespace minidl::tutorial

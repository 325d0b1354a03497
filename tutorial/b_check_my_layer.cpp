// Tutorial step (b): check your own layer with one library call (docs/tutorial/b-write-a-layer.md).
//
//   build/tutorial_b_check_my_layer              checks tutorial/student_layer.h (your PReLU)
//   build/tutorial_b_check_my_layer --solution   checks the answer, tutorial/student_layer_solution.h
//
// The call is minidl::check_gradients(layer, x, seed) (layers/gradcheck.h), the checker every
// layer test of minidl uses: float64 central differences against your backward, for the input and
// every parameter. Exit 0 when every gradient passes, 1 otherwise. `gradcheck --target student`
// runs the same check with a table of the errors.
#include <cstdio>
#include <cstring>
#include <iostream>

#include "layers/gradcheck.h"
#include "tutorial/student_layer_solution.h"

using namespace minidl;

int main(int argc, char** argv) {
  const bool solution = argc > 1 && std::strcmp(argv[1], "--solution") == 0;
  Generator g(5);
  Tensor x = Tensor::empty(Shape{2, 3, 4, 4}, DType::F64);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<double>()[i] = g.uniform(-1.0, 1.0);

  tutorial::StudentPReLU mine(3, DType::F64);
  tutorial::StudentPReLUSolution answer(3, DType::F64);
  Module& layer = solution ? static_cast<Module&>(answer) : mine;

  const GradCheckResult r = check_gradients(layer, x, /*seed=*/1);
  std::cout << r.report;
  std::printf("%s: %s\n", layer.type_name().c_str(),
              r.ok ? "PASS, every gradient matches the finite differences"
                   : "FAIL, fill in the TODOs of backward() in tutorial/student_layer.h");
  return r.ok ? 0 : 1;
}

// The `gradcheck` program as a function (apps/gradcheck.cpp), so that tests can check what a user
// sees. It checks the backward of any op, layer, block or model of minidl, at the input shape and
// dtype the user chooses, against float64 central differences (layers/gradcheck.h), and prints per
// input and parameter the largest absolute and relative errors, the worst element and PASS/FAIL:
//
//   gradcheck --target conv2d --shape 2,3,7,5 --dtype float32
//   gradcheck --target resnet20 --shape 2,3,8,8 --max-elements 3
//   gradcheck --target linear --break weight-sign        # what a failure looks like
//   gradcheck --list
//
// In float32 the analytic gradient comes from the float32 module and the differences from a float64
// twin holding the same (float32-representable) weights and input.
//
// Exit codes: 0 every gradient passed, 1 some gradient failed, 2 usage error (nothing checked).
#pragma once

#include <ostream>

namespace minidl {

int gradcheck_main(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace minidl

// The finite-difference gradient checker lives in the library (layers/gradcheck.h), where the
// gradcheck app and a student's own layer test reach it too; the tests name it as before.
#pragma once

#include "layers/gradcheck.h"

namespace minidl::test {
using minidl::check_gradients;
using minidl::GradCheckOptions;
using minidl::GradCheckResult;
}  // namespace minidl::test

// Errors: one exception type, one way to build messages, one check macro.
//
// Messages are built by streaming the arguments (like PyTorch's c10::str) so this header stays free
// of fmt and compiles under nvcc. Every user-facing check names the thing (layer, flag, file, shape),
// what was expected and what was received; library code throws and never calls exit().
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace minidl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenate anything that has an operator<< into one string.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] inline void throw_error(const std::string& msg) { throw Error(msg); }

}  // namespace minidl

// MINIDL_CHECK(cond, "layer ", name, ": expected ", a, " got ", b);
#define MINIDL_CHECK(cond, ...)                                   \
  do {                                                            \
    if (!(cond)) ::minidl::throw_error(::minidl::str(__VA_ARGS__)); \
  } while (0)

// Internal invariants: the message carries file:line because the user cannot fix these.
#define MINIDL_ASSERT(cond, ...)                                                          \
  do {                                                                                    \
    if (!(cond))                                                                          \
      ::minidl::throw_error(::minidl::str("internal error at ", __FILE__, ":", __LINE__, \
                                          ": ", #cond, " ", ##__VA_ARGS__));              \
  } while (0)

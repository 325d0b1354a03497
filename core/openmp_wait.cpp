// OpenMP's wait policy for minidl's programs (openmp_wait.h).
#include "core/openmp_wait.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace minidl {

namespace {

// Set in the environment of the re-executed program, so that the policy is reported as minidl's
// choice rather than the user's; the re-executed program removes it (its children see
// OMP_WAIT_POLICY as set by their environment).
constexpr const char* kMarker = "MINIDL_OMP_WAIT_POLICY_SET";
bool set_by_minidl = false;

}  // namespace

void use_passive_openmp_waits(char** argv) {
  if (std::getenv(kMarker) != nullptr) {  // the re-executed program
    set_by_minidl = true;
    ::unsetenv(kMarker);
    return;
  }
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr)
    return;  // the user's choice
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::setenv(kMarker, "1", 1);
  ::execv("/proc/self/exe", argv);
  // Still here: the program could not be executed again. Run as it is, and say so.
  const int err = errno;
  ::unsetenv("OMP_WAIT_POLICY");
  ::unsetenv(kMarker);
  std::cerr << "warning: could not re-execute /proc/self/exe (" << std::strerror(err)
            << ") to set OMP_WAIT_POLICY=passive; on a loaded machine OpenMP's spinning threads "
               "may slow training: set OMP_WAIT_POLICY=passive yourself\n";
}

std::string openmp_wait_policy() {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  if (policy != nullptr && set_by_minidl) return policy;
  if (policy != nullptr) return std::string(policy) + " (OMP_WAIT_POLICY)";
  if (spin != nullptr) return std::string("GOMP_SPINCOUNT=") + spin;
  return "default (spinning)";
}

}  // namespace minidl

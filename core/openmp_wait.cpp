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
// GOMP_SPINCOUNT as set by their environment).
constexpr const char* kMarker = "MINIDL_OMP_WAIT_POLICY_SET";
// Pause instructions a waiting thread spins before it sleeps (openmp_wait.h says why 3,000).
constexpr const char* kSpinCount = "3000";
bool set_by_minidl = false;

}  // namespace

void use_bounded_openmp_spins(char** argv) {
  if (std::getenv(kMarker) != nullptr) {  // the re-executed program
    set_by_minidl = true;
    ::unsetenv(kMarker);
    return;
  }
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr)
    return;  // the user's choice
  ::setenv("GOMP_SPINCOUNT", kSpinCount, 1);
  ::setenv(kMarker, "1", 1);
  ::execv("/proc/self/exe", argv);
  // Still here: the program could not be executed again. Run as it is, and say so.
  const int err = errno;
  ::unsetenv("GOMP_SPINCOUNT");
  ::unsetenv(kMarker);
  std::cerr << "warning: could not re-execute /proc/self/exe (" << std::strerror(err)
            << ") to set GOMP_SPINCOUNT=" << kSpinCount
            << "; on a loaded machine OpenMP's spinning threads may slow training: set "
               "GOMP_SPINCOUNT="
            << kSpinCount << " yourself\n";
}

std::string openmp_wait_policy() {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  if (spin != nullptr && set_by_minidl) return std::string("spin ") + spin + " then sleep";
  if (policy != nullptr) return std::string(policy) + " (OMP_WAIT_POLICY)";
  if (spin != nullptr) return std::string("GOMP_SPINCOUNT=") + spin;
  return "default (spinning)";
}

}  // namespace minidl

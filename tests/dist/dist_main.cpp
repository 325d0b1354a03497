// Test runner of tests/dist: starts MPI when mpirun started the process (dist::init), then Catch.
// Each rank runs every selected test case; mpirun's exit status is non-zero when any rank failed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>

#include "dist/comm.h"

int main(int argc, char* argv[]) {
  minidl::dist::init();
  std::printf("minidl dist tests: %s\n", minidl::dist::world().describe().c_str());
  return Catch::Session().run(argc, argv);
}

// Test runner for the CPU suite: prints the random seed so any failure can be repeated.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>

#include "backends.h"
#include "core/openmp_wait.h"
#include "test_util.h"

int main(int argc, char* argv[]) {
  // As train does: on a loaded CI machine spinning OpenMP threads slow the end-to-end runs.
  minidl::use_bounded_openmp_spins(argv);
  minidl::test::set_tested_device_type(minidl::DeviceType::CPU);
  std::printf("minidl tests: random seed %llu (set MINIDL_TEST_SEED=%llu to repeat)\n",
              static_cast<unsigned long long>(minidl::test::test_seed()),
              static_cast<unsigned long long>(minidl::test::test_seed()));
  return Catch::Session().run(argc, argv);
}

// Test runner for the CUDA suite. Without a usable GPU it prints why and exits with 77, which
// CTest reports as "Skipped" (SKIP_RETURN_CODE): the tests are built and visible, never silently
// passed. Listing tests (for CTest's discovery) works everywhere.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>

#include "core/device.h"
#include "backends.h"
#include "test_util.h"

int main(int argc, char* argv[]) {
  minidl::test::set_tested_device_type(minidl::DeviceType::CUDA);
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) listing = true;
  if (!listing && !minidl::cuda_available()) {
    std::printf("SKIPPED: %s. The CUDA tests compare every CUDA op with the CPU reference; run them "
                "on a machine with an NVIDIA GPU (scripts/gpu-check.sh).\n",
                minidl::cuda_device_summary().c_str());
    return 77;
  }
  if (!listing)
    std::printf("minidl CUDA tests on %s, random seed %llu (set MINIDL_TEST_SEED to repeat)\n",
                minidl::cuda_device_summary().c_str(),
                static_cast<unsigned long long>(minidl::test::test_seed()));
  return Catch::Session().run(argc, argv);
}

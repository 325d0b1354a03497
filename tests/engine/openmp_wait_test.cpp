// The train program bounds OpenMP's spin-waits itself (core/openmp_wait.h): run as a user would
// run it, without OMP_WAIT_POLICY or GOMP_SPINCOUNT, its device line says the waits spin 3000
// pauses and then sleep; a policy the user sets is kept and named.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string>

#include "../support/test_util.h"
#include "engine_test_util.h"

namespace {

// The output of a shell command (stdout and stderr).
std::string shell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ::pclose(p);
  return out;
}

}  // namespace

TEST_CASE("train bounds OpenMP's spin-waits unless the user chose a policy",
          "[engine][hygiene2][openmp]") {
  const std::string data = minidl::test::cifar10_dir();
  if (data.empty()) {
    WARN("CIFAR-10 not found: test skipped");
    return;
  }
  const std::string train = std::string(MINIDL_BINARY_DIR) + "/train";
  REQUIRE(std::filesystem::exists(train));
  const auto out = minidl::test::scratch_dir("openmp_wait");
  // --max-steps 1 on 64 images: the device line is printed before the one step.
  const std::string cmd = train +
                          " --model plain --subset 64 --test-subset 64 --batch-size 32 "
                          "--device cpu --max-steps 1 --epochs 2 --data " +
                          data + " --out ";
  const std::string plain =
      shell("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT " + cmd + (out / "a").string());
  CHECK_THAT(plain, Catch::Contains("OpenMP waits spin 3000 then sleep)"));
  const std::string active =
      shell("env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active " + cmd + (out / "b").string());
  CHECK_THAT(active, Catch::Contains("OpenMP waits active (OMP_WAIT_POLICY))"));
  const std::string spin =
      shell("env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=7 " + cmd + (out / "c").string());
  CHECK_THAT(spin, Catch::Contains("OpenMP waits GOMP_SPINCOUNT=7)"));
  std::filesystem::remove_all(out);
}

// The op table (kernels/backend.h) and its selection rule, tested directly: which backend each
// setting selects on each device type, the per-op conditions, the refusals of check_backend, and
// that docs/ARCHITECTURE.md lists the table as the code declares it. The backends themselves are
// compared with the float64 reference in tests/ops.
#include "kernels/backend.h"

#include <catch2/catch.hpp>
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "kernels/optimizer.h"
#include "kernels/softmax_xent.h"

using namespace minidl;

namespace {

const Device kCpu = Device::cpu();
const Device kGpu = Device::cuda(0);  // selection only reads settings: no GPU needed

DeviceSettings with_kernels(KernelPath k) {
  DeviceSettings s;
  s.kernels = k;
  return s;
}

}  // namespace

TEST_CASE("op table: every op has a unique name, a CPU reference and backends in device order",
          "[backend]") {
  std::set<std::string> names;
  for (const OpInfo* op : op_table()) {
    INFO(op->name);
    CHECK(names.insert(op->name).second);
    REQUIRE(!op->backends.empty());
    CHECK(op->backends.front().backend == Backend::CpuReference);
    CHECK(op->has(Backend::CudaHandwritten));  // every op has our own CUDA kernel
    for (size_t i = 1; i < op->backends.size(); ++i)
      CHECK(op->backends[i - 1].backend < op->backends[i].backend);
    CHECK(&find_op(op->name) == op);
  }
  CHECK_THROWS_WITH(find_op("conv3d"), Catch::Contains("known: conv2d, gemm"));
}

TEST_CASE("select_backend on the CPU: cpu-fast only for float32 and cpu_kernels onednn",
          "[backend]") {
  const OpInfo& conv = conv2d_op();
  {
    DeviceSettings s;
    s.cpu_kernels = CpuKernels::Handwritten;
    ScopedDeviceSettings guard(s);
    CHECK(select_conv2d_backend(kCpu, DType::F32) == Backend::CpuReference);
    CHECK(select_conv2d_backend(kCpu, DType::F64) == Backend::CpuReference);
  }
  if (onednn_available()) {
    DeviceSettings s;
    s.cpu_kernels = CpuKernels::Onednn;
    ScopedDeviceSettings guard(s);
    CHECK(select_backend(conv, kCpu, DType::F32) == Backend::CpuFast);
    CHECK(select_backend(conv, kCpu, DType::F64) == Backend::CpuReference);
    // An op without a cpu-fast backend stays on the reference.
    CHECK(select_gemm_backend(kCpu, DType::F32) == Backend::CpuReference);
  } else {
    DeviceSettings s;
    s.cpu_kernels = CpuKernels::Onednn;
    CHECK_THROWS_WITH(set_run_settings(s), Catch::Contains("libdnnl-dev"));
  }
}

TEST_CASE("select_backend on a GPU follows the kernels setting, falling back in order",
          "[backend]") {
  const bool vendor = backend_built(Backend::CudaVendor);
  {
    ScopedDeviceSettings guard(with_kernels(KernelPath::Cudnn));
    // conv2d has all three CUDA backends.
    CHECK(select_conv2d_backend(kGpu, DType::F32) ==
          (vendor ? Backend::CudaVendor : Backend::CudaCublas));
    // cuBLAS is the vendor of products: gemm and linear select it under cudnn.
    CHECK(select_gemm_backend(kGpu, DType::F32) == Backend::CudaCublas);
    // An op with our kernel only.
    CHECK(select_softmax_xent_backend(kGpu, DType::F32) == Backend::CudaHandwritten);
  }
  {
    ScopedDeviceSettings guard(with_kernels(KernelPath::Cublas));
    CHECK(select_conv2d_backend(kGpu, DType::F32) == Backend::CudaCublas);
    CHECK(select_gemm_backend(kGpu, DType::F32) == Backend::CudaCublas);
    // No cuBLAS backend (batchnorm): our kernel, never cuDNN.
    CHECK(select_batchnorm_backend(kGpu, DType::F32, BatchNormParams{}) ==
          Backend::CudaHandwritten);
  }
  {
    ScopedDeviceSettings guard(with_kernels(KernelPath::Handwritten));
    for (const OpInfo* op : op_table()) {
      INFO(op->name);
      CHECK(select_backend(*op, kGpu, DType::F32) == Backend::CudaHandwritten);
    }
  }
}

TEST_CASE("per-op conditions: cuDNN is skipped where it lacks the function", "[backend]") {
  ScopedDeviceSettings guard(with_kernels(KernelPath::Cudnn));
  const Backend vendor_or_ours =
      backend_built(Backend::CudaVendor) ? Backend::CudaVendor : Backend::CudaHandwritten;
  CHECK(select_activation_backend(kGpu, DType::F32, Activation::ReLU, 1000) == vendor_or_ours);
  // cuDNN has no LeakyReLU, and its activations take fewer than 2^31 elements.
  CHECK(select_activation_backend(kGpu, DType::F32, Activation::LeakyReLU, 1000) ==
        Backend::CudaHandwritten);
  CHECK(select_activation_backend(kGpu, DType::F32, Activation::ReLU, int64_t(1) << 31) ==
        Backend::CudaHandwritten);
  // One rule for batchnorm forward and backward: both carry eps.
  CHECK(select_batchnorm_backend(kGpu, DType::F32, BatchNormParams{0.1, 1e-5}) == vendor_or_ours);
  CHECK(select_batchnorm_backend(kGpu, DType::F32, BatchNormParams{0.1, -1.0}) ==
        Backend::CudaHandwritten);
  // vendor_ok = false falls through to the next backend, not to the CPU.
  CHECK(select_backend(conv2d_op(), kGpu, DType::F32, false) == Backend::CudaCublas);
}

TEST_CASE("settings are per device: one GPU's choice leaves the others alone", "[backend]") {
  ScopedDeviceSettings guard(with_kernels(KernelPath::Cudnn));
  set_device_settings(Device::cuda(1), with_kernels(KernelPath::Handwritten));
  CHECK(select_conv2d_backend(Device::cuda(1), DType::F32) == Backend::CudaHandwritten);
  CHECK(select_conv2d_backend(kGpu, DType::F32) != Backend::CudaHandwritten);
  CHECK_THROWS_WITH(device_settings(Device::cuda(64)), Catch::Contains("cuda:64 is out of range"));
}

TEST_CASE("ScopedDeviceSettings restores every device's settings", "[backend]") {
  const DeviceSettings before = device_settings(kGpu);
  {
    DeviceSettings s;
    s.kernels = KernelPath::Handwritten;
    s.allow_tf32 = true;
    s.conv_col_budget = 12345;
    ScopedDeviceSettings guard(s);
    CHECK(device_settings(kGpu).allow_tf32);
    CHECK(device_settings(kCpu).conv_col_budget == 12345);
  }
  const DeviceSettings after = device_settings(kGpu);
  CHECK(after.kernels == before.kernels);
  CHECK(after.allow_tf32 == before.allow_tf32);
  CHECK(after.conv_col_budget == before.conv_col_budget);
}

// The names and their parsing are tested with the other choices (tests/engine/choices_test.cpp).
TEST_CASE("DeviceSettings default to the fastest kernels built in", "[backend]") {
  CHECK(DeviceSettings{}.cpu_kernels ==
        (onednn_available() ? CpuKernels::Onednn : CpuKernels::Handwritten));
  CHECK(cpu_kernels_name(DeviceSettings{}.cpu_kernels) == cpu_kernel_paths().names().front());
  CHECK(DeviceSettings{}.kernels == KernelPath::Cudnn);
}

TEST_CASE("check_backend names the op, the backend and the fix", "[backend]") {
  const OpInfo& xent = softmax_xent_op();
  CHECK_THROWS_WITH(
      check_backend(xent, Backend::CudaVendor, kGpu, DType::F32, "softmax_xent_forward"),
      Catch::Contains("softmax_xent has no cuda-vendor backend"));
  CHECK_THROWS_WITH(
      check_backend(conv2d_op(), Backend::CpuReference, kGpu, DType::F32, "conv2d_forward"),
      Catch::Contains("cpu-reference backend cannot run on tensors on cuda:0"));
  if (built_with_cuda()) {
    CHECK_THROWS_WITH(
        check_backend(conv2d_op(), Backend::CudaCublas, kGpu, DType::F64, "conv2d_forward"),
        Catch::Contains("computes in float32, bfloat16, float16, got float64 (float64 runs on the CPU)"));
  } else {
    CHECK_THROWS_WITH(
        check_backend(conv2d_op(), Backend::CudaCublas, kGpu, DType::F32, "conv2d_forward"),
        Catch::Contains("not in this build"));
  }
  CHECK_NOTHROW(
      check_backend(conv2d_op(), Backend::CpuReference, kCpu, DType::F64, "conv2d_forward"));
  // The explicit form of an op refuses a backend that is not its own, before touching memory.
  Tensor a = Tensor::zeros(Shape{2, 2}, DType::F32), c = Tensor::zeros(Shape{2, 2}, DType::F32);
  CHECK_THROWS_WITH(matmul(Backend::CpuFast, c, a, a, false, false),
                    Catch::Contains("gemm has no cpu-fast backend"));
}

TEST_CASE("the op table's dtype column: bfloat16/float16 select by the same rule", "[backend][half]") {
  // Every op's cpu-reference takes float32 and float64; the ops of the mixed-precision policy
  // also bfloat16 and float16 (kernels/backend.h), the others none of them.
  for (const OpInfo* op : op_table()) {
    INFO(op->name);
    const std::vector<DType> ds = op->dtypes(Backend::CpuReference);
    CHECK(std::find(ds.begin(), ds.end(), DType::F32) != ds.end());
    CHECK(std::find(ds.begin(), ds.end(), DType::F64) != ds.end());
  }
  for (const char* name : {"conv2d", "gemm", "linear", "batchnorm", "activation", "maxpool2d",
                           "avgpool2d", "global_avgpool", "dropout", "elementwise", "convert"}) {
    INFO(name);
    CHECK(find_op(name).computes(Backend::CpuReference, DType::BF16));
    CHECK(find_op(name).computes(Backend::CpuReference, DType::F16));
  }
  CHECK_FALSE(optimizer_op().computes(Backend::CpuReference, DType::BF16));
  CHECK_FALSE(conv2d_op().computes(Backend::CpuFast, DType::F16));  // no AVX512-FP16 path
  CHECK(conv2d_op().computes(Backend::CpuFast, DType::BF16) == cpu_has_bf16());

  DeviceSettings s;
  s.cpu_kernels = CpuKernels::Handwritten;
  {
    ScopedDeviceSettings guard(s);
    CHECK(select_conv2d_backend(kCpu, DType::BF16) == Backend::CpuReference);
  }
  if (onednn_available()) {
    s.cpu_kernels = CpuKernels::Onednn;
    ScopedDeviceSettings guard(s);
    // cpu-fast computes bfloat16 where the CPU has AVX512_BF16 (a declared rule of the table),
    // float16 never: both go to cpu-reference otherwise, which computes them.
    CHECK(select_conv2d_backend(kCpu, DType::BF16) ==
          (cpu_has_bf16() ? Backend::CpuFast : Backend::CpuReference));
    CHECK(select_conv2d_backend(kCpu, DType::F16) == Backend::CpuReference);
    CHECK_THROWS_WITH(
        check_backend(conv2d_op(), Backend::CpuFast, kCpu, DType::F16, "conv2d_forward"),
        Catch::Contains("cpu-fast backend of conv2d computes in float32, bfloat16, got float16"));
  }
  // An op outside the policy names the dtype and the flag.
  CHECK_THROWS_WITH(
      check_backend(optimizer_op(), Backend::CpuReference, kCpu, DType::BF16, "sgd_update"),
      Catch::Contains("sgd_update") && Catch::Contains("bfloat16") &&
          Catch::Contains("--precision"));
  // The Markdown table has the column, one line per backend.
  CHECK(op_table_markdown().find("| op | functions | backends | dtypes |") == 0);
  CHECK(op_table_markdown().find("`cpu-fast`: float32, bfloat16") != std::string::npos);
}

TEST_CASE("docs/ARCHITECTURE.md lists the op table as the code declares it", "[backend][docs]") {
  std::ifstream f(std::string(MINIDL_SOURCE_DIR) + "/docs/ARCHITECTURE.md");
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  INFO("the table docs/ARCHITECTURE.md should contain (op_table_markdown()):\n"
       << op_table_markdown());
  CHECK(ss.str().find(op_table_markdown()) != std::string::npos);
}

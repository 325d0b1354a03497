// The backends an op's test body runs on: Caffe's TYPED_TEST over {CPU, GPU} x {float, double} and
// ATen's OpInfo, driven by the op table (kernels/backend.h). One test body per op loops over
// backend_cases(op) and compares each case with the float64 cpu-reference on the same inputs.
//
// Which device types a binary covers is set by its main(): the CPU suite (minidl_tests) runs the
// CPU backends, the CUDA suite (minidl_cuda_tests, on a GPU or on the emulator) the CUDA ones, so
// no case runs twice. A backend of the op that cannot run in this process (cpu-fast without
// oneDNN, cuda-vendor on the emulator) is named in a WARN, never skipped silently.
#pragma once

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "core/device_settings.h"
#include "kernels/backend.h"
#include "layers/module.h"

namespace minidl::test {

struct BackendCase {
  Backend backend;
  DType dtype;
  Device device;  // cpu, or cuda:0
  std::string name() const;  // "cuda-cublas float32"
};

// Set once by the test binary's main(): the device type whose backends this binary tests. For CUDA
// it also lowers the block cap of every grid-stride launch to test_grid_blocks() on every device
// (DeviceSettings::max_grid_blocks), for the whole binary.
void set_tested_device_type(DeviceType t);
DeviceType tested_device_type();

// The CUDA binaries' block cap for grid-stride launches: 4 blocks of 256 threads (kernels with
// another block size scale alike), so every tensor above ~1024 elements makes each thread's loop
// run several passes and a wrong stride or bound shows, while the smaller test tensors keep the
// one-pass case. The kernels' own caps (~2112 blocks) would need 540,000-element tensors for a
// second pass. $MINIDL_TEST_GRID_BLOCKS overrides it (0: the kernels' own caps).
unsigned test_grid_blocks();

// Every runnable backend of `op` on the tested device type, at every full-precision dtype it
// computes in (float32, float64). The float64 cpu-reference (the reference itself) is left out
// unless `with_reference`. The bfloat16/float16 cases are low_precision_cases(op): their bounds
// come from the 16-bit unit roundoff (tests/ops/low_precision_test.cpp), not float32's.
std::vector<BackendCase> backend_cases(const OpInfo& op, bool with_reference = false);
// Every runnable backend of `op` on the tested device type at bfloat16 and float16, where the op
// table lists it (OpInfo::computes: cpu-fast bfloat16 only on CPUs with AVX512_BF16; the case
// left out otherwise is named in a WARN).
std::vector<BackendCase> low_precision_cases(const OpInfo& op);

// The settings under which select_backend picks `b` (kernels = handwritten/cublas/cudnn,
// cpu_kernels = handwritten/onednn), for tests that run a whole layer or model on one backend; the
// binary's grid cap (test_grid_blocks) is kept.
DeviceSettings settings_selecting(Backend b);

// `t` (float32 or float64, any device) converted to the case's dtype, on the case's device. Test
// bodies draw float32 inputs and hand each case this copy and the float64 reference cast(t, F64),
// so both compute from the same values.
Tensor to_case(const BackendCase& c, const Tensor& t);
// An output of shape `s` on the case's device in the case's dtype (or `dtype`), poisoned
// (test::poison): an element the backend leaves unwritten fails every comparison.
Tensor poisoned(const BackendCase& c, const Shape& s);
Tensor poisoned(const BackendCase& c, const Shape& s, DType dtype, Layout layout = Layout::NCHW);

// One training forward and backward of `layer` (built in the case's dtype; moved here to the
// case's device and run under settings_selecting(c.backend), as in a training run) against its
// float64 twin `ref`, which first receives the layer's initial parameters. Checks that the output
// and input gradient live on the case's device and that the output, the input gradient and every
// parameter gradient agree with float64 within |out - ref| <= tol (1 + |ref|). x and dy are
// float32 CPU tensors, handed to both as in to_case.
void check_layer_against_float64(const BackendCase& c, Module& layer, Module& ref, const Tensor& x,
                                 const Tensor& dy, double tol);

}  // namespace minidl::test

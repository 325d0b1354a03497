// Helpers shared by the tests: seeds, random tensors, poisoning, and comparisons that say where
// and by how much two tensors differ.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace minidl::test {

// The run's random seed: $MINIDL_TEST_SEED if set, else drawn once per process. Tests report it
// (Catch INFO) so that a failure can be repeated with MINIDL_TEST_SEED=<seed>.
uint64_t test_seed();

// CPU tensors with values uniform in [lo, hi) or standard normal, in `dtype`.
Tensor uniform_tensor(const Shape& s, Generator& g, double lo = -1.0, double hi = 1.0,
                      DType dtype = DType::F64);
Tensor normal_tensor(const Shape& s, Generator& g, double std = 1.0, DType dtype = DType::F64);
// Uniform values with |x| >= margin (away from the kink of ReLU-like functions).
Tensor away_from_zero_tensor(const Shape& s, Generator& g, double margin = 0.05,
                             DType dtype = DType::F64);
// int32 labels uniform in [0, classes)
Tensor label_tensor(int64_t n, int64_t classes, Generator& g);

// Fill with NaN (floats) or 0x7f7f7f7f / 0x7f (ints), any device: a kernel that forgets an
// element leaves a value no comparison accepts.
void poison(Tensor& t);

// Elements as doubles on the host (any device and dtype), in logical order: a channels-last tensor
// gives its (n, c, h, w) elements in NCHW order, so compare() and expect_close() pair the same
// elements whatever the layouts of the two tensors.
std::vector<double> to_doubles(const Tensor& t);
// CPU copy converted to `dtype` (float32, float64, bfloat16, float16, int32), in t's layout.
Tensor cast(const Tensor& t, DType dtype);

// Root mean square of the values (0 for an empty tensor): the scale of an absolute tolerance for
// outputs that are sums which may cancel to near zero.
double rms(const Tensor& t);

struct Comparison {
  bool ok = true;
  double max_abs_error = 0.0;
  double rel_l2_error = 0.0;  // ||out - ref|| / ||ref||
  std::string report;         // first mismatches and the maxima
};
// Every element must satisfy |out - ref| <= atol + rtol |ref| (NaN never does).
Comparison compare(const Tensor& out, const Tensor& ref, double atol, double rtol);

// CHECKs that every element of `out` is within atol + rtol |ref| of `ref` (the report names `what`
// and the first mismatches) and, when max_rel_l2 > 0, that ||out - ref|| / ||ref|| < max_rel_l2.
void expect_close(const char* what, const Tensor& out, const Tensor& ref, double atol, double rtol,
                  double max_rel_l2 = 0.0);

// CHECKs that `out` equals `ref` element for element, with NaN equal to NaN and, unless
// `signed_zero` is false, +0 different from -0 (the report names `what` and the first mismatches).
// For results that must be exact: a maximum, a NaN that must propagate, the sign of a zero.
void expect_same(const char* what, const Tensor& out, const Tensor& ref, bool signed_zero = true);

// uint8 images (m, 3, h, w) with pixel values uniform in [0, 255].
Tensor random_images(int64_t m, int64_t h, int64_t w, Generator& g);

// A JPEG file's bytes with an APP1 Exif segment inserted after SOI whose IFD0 holds a dummy
// ImageWidth entry and then Orientation = `orientation` (the TIFF header "MM" big-endian, or "II"
// little-endian): a phone photo's rotation tag (data/image.h, exif_orientation).
std::string with_exif_orientation(const std::string& jpeg, int orientation, bool little_endian);

// Where the real CIFAR-10 binaries are: $MINIDL_CIFAR10_DIR, else ../shared/data/cifar-10-batches-bin
// beside the checkout. Empty when not found.
std::string cifar10_dir();

}  // namespace minidl::test

#include "test_util.h"

#include <catch2/catch.hpp>

#include "core/cuda_context.h"
#include "kernels/convert.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <sstream>

namespace minidl::test {

uint64_t test_seed() {
  static const uint64_t seed = [] {
    if (const char* s = std::getenv("MINIDL_TEST_SEED")) return static_cast<uint64_t>(std::strtoull(s, nullptr, 10));
    return (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  }();
  return seed;
}

namespace {
template <typename Draw>
Tensor make(const Shape& s, DType dtype, Draw draw) {
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (double& x : v) x = draw();
  if (dtype == DType::F64) return Tensor::from_vector(v, s);
  MINIDL_CHECK(dtype == DType::F32, "test tensors are float32 or float64");
  return Tensor::from_vector(std::vector<float>(v.begin(), v.end()), s);
}
}  // namespace

Tensor uniform_tensor(const Shape& s, Generator& g, double lo, double hi, DType dtype) {
  return make(s, dtype, [&] { return g.uniform(lo, hi); });
}

Tensor normal_tensor(const Shape& s, Generator& g, double std, DType dtype) {
  return make(s, dtype, [&] { return std * g.normal(); });
}

Tensor away_from_zero_tensor(const Shape& s, Generator& g, double margin, DType dtype) {
  return make(s, dtype, [&] {
    const double m = g.uniform(margin, 1.0);
    return g.uniform() < 0.5 ? -m : m;
  });
}

Tensor label_tensor(int64_t n, int64_t classes, Generator& g) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int32_t>(g.below(static_cast<uint64_t>(classes)));
  return Tensor::from_vector(v, Shape{n});
}

void poison(Tensor& t) {
  std::vector<char> host(t.nbytes());
  switch (t.dtype()) {
    case DType::F32: {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      for (size_t i = 0; i < host.size(); i += 4) std::memcpy(&host[i], &nan, 4);
      break;
    }
    case DType::F64: {
      const double nan = std::numeric_limits<double>::quiet_NaN();
      for (size_t i = 0; i < host.size(); i += 8) std::memcpy(&host[i], &nan, 8);
      break;
    }
    case DType::BF16:
    case DType::F16: {  // a quiet NaN in either format
      const uint16_t nan = t.dtype() == DType::BF16 ? 0x7fc0 : 0x7e00;
      for (size_t i = 0; i < host.size(); i += 2) std::memcpy(&host[i], &nan, 2);
      break;
    }
    default: std::memset(host.data(), 0x7f, host.size());
  }
  memcpy_any(t.raw_data(), t.device(), host.data(), Device::cpu(), host.size());
}

namespace {

// t's values in memory order.
std::vector<double> memory_doubles(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  switch (t.dtype()) {
    case DType::F32: { auto v = t.to_vector<float>(); std::copy(v.begin(), v.end(), out.begin()); break; }
    case DType::F64: return t.to_vector<double>();
    case DType::I32: { auto v = t.to_vector<int32_t>(); std::copy(v.begin(), v.end(), out.begin()); break; }
    case DType::U8: { auto v = t.to_vector<uint8_t>(); std::copy(v.begin(), v.end(), out.begin()); break; }
    case DType::BF16: { auto v = t.to_vector<bf16>(); for (size_t i = 0; i < v.size(); ++i) out[i] = to_float(v[i]); break; }
    case DType::F16: { auto v = t.to_vector<f16>(); for (size_t i = 0; i < v.size(); ++i) out[i] = to_float(v[i]); break; }
    default: throw_error(str("to_doubles: unsupported ", t.describe()));
  }
  return out;
}

}  // namespace

std::vector<double> to_doubles(const Tensor& t) {
  // In logical (n, c, h, w) order whatever the layout, so comparisons pair the same elements. A
  // channels-last tensor is permuted here rather than by convert(), which takes floating dtypes
  // only (a channels-last max pool's argmax is int32).
  std::vector<double> mem = memory_doubles(t);
  if (layouts_coincide(t.shape()) || t.layout() == Layout::NCHW) return mem;
  const int64_t N = t.size(0), C = t.size(1), HW = t.size(2) * t.size(3);
  std::vector<double> out(mem.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < HW; ++p)
      for (int64_t c = 0; c < C; ++c) out[(n * C + c) * HW + p] = mem[(n * HW + p) * C + c];
  return out;
}

namespace {

// The values (logical NCHW order, as to_doubles gives them) as an NCHW CPU tensor of `dtype`.
Tensor cast_nchw(const std::vector<double>& v, const Shape& shape, DType dtype);

}  // namespace

Tensor cast(const Tensor& t, DType dtype) {
  // to_doubles reads either layout in logical order; the NCHW result is moved back into t's
  // layout (from_vector alone would label channels-last memory NCHW).
  return to_layout(cast_nchw(to_doubles(t), t.shape(), dtype), t.layout());
}

namespace {

Tensor cast_nchw(const std::vector<double>& v, const Shape& shape, DType dtype) {
  if (dtype == DType::F64) return Tensor::from_vector(v, shape);
  if (dtype == DType::F32) return Tensor::from_vector(std::vector<float>(v.begin(), v.end()), shape);
  if (dtype == DType::I32)
    return Tensor::from_vector(std::vector<int32_t>(v.begin(), v.end()), shape);
  // 16-bit floats: double -> float -> 16 bits (exact for the float32 values tests draw, then one
  // rounding as core/half.h does it).
  if (dtype == DType::BF16) {
    std::vector<bf16> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = to_bf16(static_cast<float>(v[i]));
    return Tensor::from_vector(h, shape);
  }
  if (dtype == DType::F16) {
    std::vector<f16> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = to_f16(static_cast<float>(v[i]));
    return Tensor::from_vector(h, shape);
  }
  throw_error(str("cast: unsupported target ", dtype));
}

}  // namespace

double rms(const Tensor& t) {
  const std::vector<double> v = to_doubles(t);
  double s = 0;
  for (double x : v) s += x * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

Comparison compare(const Tensor& out, const Tensor& ref, double atol, double rtol) {
  Comparison c;
  std::ostringstream os;
  if (out.shape() != ref.shape()) {
    c.ok = false;
    c.report = str("shape mismatch: out ", out.describe(), " vs ref ", ref.describe());
    return c;
  }
  const auto o = to_doubles(out), r = to_doubles(ref);
  double diff2 = 0, ref2 = 0;
  int shown = 0;
  int64_t bad = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    const double e = std::fabs(o[i] - r[i]);
    diff2 += (o[i] - r[i]) * (o[i] - r[i]);
    ref2 += r[i] * r[i];
    if (!(e <= c.max_abs_error)) c.max_abs_error = std::isnan(e) ? INFINITY : std::max(c.max_abs_error, e);
    if (!(e <= atol + rtol * std::fabs(r[i]))) {
      ++bad;
      if (shown++ < 8) os << "  [" << i << "] out " << o[i] << " ref " << r[i] << " |diff| " << e << "\n";
    }
  }
  c.rel_l2_error = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
  if (std::isnan(c.rel_l2_error)) c.rel_l2_error = INFINITY;
  c.ok = bad == 0;
  c.report = str(bad, " of ", o.size(), " elements outside atol ", atol, " + rtol ", rtol,
                 "; max |diff| ", c.max_abs_error, ", relative L2 error ", c.rel_l2_error, "\n",
                 os.str());
  return c;
}

std::string cifar10_dir() {
  namespace fs = std::filesystem;
  if (const char* d = std::getenv("MINIDL_CIFAR10_DIR")) return fs::exists(d) ? d : "";
#ifdef MINIDL_SOURCE_DIR
  const fs::path p = fs::path(MINIDL_SOURCE_DIR) / ".." / "shared" / "data" / "cifar-10-batches-bin";
  if (fs::exists(p / "test_batch.bin")) return fs::canonical(p).string();
#endif
  return "";
}

void expect_close(const char* what, const Tensor& out, const Tensor& ref, double atol, double rtol,
                  double max_rel_l2) {
  const Comparison c = compare(out, ref, atol, rtol);
  INFO(what << ": " << c.report);
  CHECK(c.ok);
  if (max_rel_l2 > 0) CHECK(c.rel_l2_error < max_rel_l2);
}

void expect_same(const char* what, const Tensor& out, const Tensor& ref, bool signed_zero) {
  REQUIRE(out.shape() == ref.shape());
  const auto o = to_doubles(out), r = to_doubles(ref);
  std::ostringstream os;
  int64_t bad = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    const bool same = std::isnan(o[i]) ? std::isnan(r[i])
                                       : o[i] == r[i] && (!signed_zero || std::signbit(o[i]) ==
                                                                              std::signbit(r[i]));
    if (!same && bad++ < 8) os << "  [" << i << "] out " << o[i] << " ref " << r[i] << "\n";
  }
  INFO(what << ": " << bad << " of " << o.size() << " elements differ\n" << os.str());
  CHECK(bad == 0);
}

Tensor random_images(int64_t m, int64_t h, int64_t w, Generator& g) {
  std::vector<uint8_t> v(static_cast<size_t>(m * 3 * h * w));
  for (auto& x : v) x = static_cast<uint8_t>(g.below(256));
  return Tensor::from_vector(v, Shape{m, 3, h, w});
}

std::string with_exif_orientation(const std::string& jpeg, int orientation, bool little_endian) {
  std::string tiff;
  const auto put = [&](uint32_t v, int bytes) {  // in the header's byte order
    for (int i = 0; i < bytes; ++i) {
      const int shift = 8 * (little_endian ? i : bytes - 1 - i);
      tiff.push_back(static_cast<char>((v >> shift) & 0xFF));
    }
  };
  tiff += little_endian ? "II" : "MM";
  put(42, 2);
  put(8, 4);  // IFD0 right after the header
  put(2, 2);  // two entries: tag, type (3 = SHORT), count, value (inline, left-aligned)
  put(0x0100, 2), put(3, 2), put(1, 4), put(640, 2), put(0, 2);  // ImageWidth
  put(0x0112, 2), put(3, 2), put(1, 4), put(static_cast<uint32_t>(orientation), 2), put(0, 2);
  put(0, 4);  // no next IFD
  const std::string payload = std::string("Exif\0\0", 6) + tiff;
  const size_t len = payload.size() + 2;
  std::string seg = "\xFF\xE1";
  seg.push_back(static_cast<char>(len >> 8));
  seg.push_back(static_cast<char>(len & 0xFF));
  return jpeg.substr(0, 2) + seg + payload + jpeg.substr(2);
}

}  // namespace minidl::test

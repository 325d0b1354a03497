#include "core/tensor.h"

#include <cstring>
#include <type_traits>

#include "core/allocator.h"
#include "core/cuda_context.h"

namespace minidl {

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  data_ = allocate(bytes, device);
}

Storage::~Storage() { deallocate(data_, bytes_, device_); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  require_device(device);
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  MINIDL_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "Tensor::from_vector: ",
               values.size(), " values for shape ", shape, " (", shape.numel(), " elements)");
  Tensor t = empty(shape, dtype_v<T>, device);
  memcpy_any(t.raw_data(), device, values.data(), Device::cpu(), t.nbytes());
  return t;
}

void* Tensor::raw_data() const {
  if (!storage_) return nullptr;
  return static_cast<char*>(storage_->data()) + offset_;
}

Tensor Tensor::view(const Shape& shape) const {
  MINIDL_CHECK(defined(), "Tensor::view: tensor is undefined");
  MINIDL_CHECK(shape.numel() == numel(), "Tensor::view: cannot view ", describe(), " as ", shape,
               " (", numel(), " vs ", shape.numel(), " elements)");
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  MINIDL_CHECK(defined() && dim() >= 1, "Tensor::slice: needs a defined tensor with a dimension");
  MINIDL_CHECK(0 <= begin && begin <= end && end <= size(0), "Tensor::slice: rows [", begin, ", ",
               end, ") out of range for ", describe());
  Tensor t = *this;
  const int64_t row = size(0) ? numel() / size(0) : 0;
  t.offset_ += static_cast<size_t>(begin * row) * dtype_size(dtype_);
  t.shape_ = shape_.with(0, end - begin);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == device_) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_(*this);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device_);
  t.copy_(*this);
  return t;
}

void Tensor::copy_(const Tensor& src) {
  MINIDL_CHECK(defined() && src.defined(), "Tensor::copy_: undefined tensor");
  MINIDL_CHECK(dtype_ == src.dtype_ && numel() == src.numel(), "Tensor::copy_: cannot copy ",
               src.describe(), " into ", describe());
  memcpy_any(raw_data(), device_, src.raw_data(), src.device_, nbytes());
}

void Tensor::zero_() {
  if (numel()) memset_zero(raw_data(), device_, nbytes());
}

namespace {
template <typename T>
void fill_host(void* p, int64_t n, double v) {
  T* q = static_cast<T*>(p);
  T x;
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>)
    x = from_float<T>(static_cast<float>(v));  // double -> float -> 16 bits: see core/half.h
  else
    x = static_cast<T>(v);
  for (int64_t i = 0; i < n; ++i) q[i] = x;
}
}  // namespace

void Tensor::fill_(double value) {
  if (value == 0.0) return zero_();
  // Filling happens at initialisation, never in the training loop, so the CUDA case builds the
  // values on the host and copies them once.
  std::vector<char> host(nbytes());
  switch (dtype_) {
    case DType::F32: fill_host<float>(host.data(), numel(), value); break;
    case DType::F64: fill_host<double>(host.data(), numel(), value); break;
    case DType::I32: fill_host<int32_t>(host.data(), numel(), value); break;
    case DType::U8: fill_host<uint8_t>(host.data(), numel(), value); break;
    case DType::BF16: fill_host<bf16>(host.data(), numel(), value); break;
    case DType::F16: fill_host<f16>(host.data(), numel(), value); break;
    default: throw_error(str("Tensor::fill_: unsupported dtype ", dtype_));
  }
  memcpy_any(raw_data(), device_, host.data(), Device::cpu(), nbytes());
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  check_dtype(*this, dtype_v<T>, "Tensor::to_vector", "tensor");
  std::vector<T> v(static_cast<size_t>(numel()));
  memcpy_any(v.data(), Device::cpu(), raw_data(), device_, nbytes());
  return v;
}

template <typename T>
T Tensor::item() const {
  MINIDL_CHECK(numel() == 1, "Tensor::item: needs one element, got ", describe());
  return to_vector<T>()[0];
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return str(dtype_name(dtype_), " ", device_.str(), " ", shape_.str());
}

#define MINIDL_INSTANTIATE(T)                                                                   \
  template Tensor Tensor::from_vector<T>(const std::vector<T>&, const Shape&, Device);          \
  template std::vector<T> Tensor::to_vector<T>() const;                                          \
  template T Tensor::item<T>() const;
MINIDL_INSTANTIATE(float)
MINIDL_INSTANTIATE(double)
MINIDL_INSTANTIATE(int32_t)
MINIDL_INSTANTIATE(uint8_t)
MINIDL_INSTANTIATE(bf16)
MINIDL_INSTANTIATE(f16)
#undef MINIDL_INSTANTIATE

void check_shape(const Tensor& t, const Shape& expected, const char* who, const char* what) {
  MINIDL_CHECK(t.defined(), who, ": ", what, " is undefined, expected shape ", expected);
  MINIDL_CHECK(t.shape() == expected, who, ": ", what, " has shape ", t.shape(), ", expected ",
               expected);
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* who) {
  MINIDL_CHECK(a.shape() == b.shape(), who, ": shapes differ: ", a.shape(), " vs ", b.shape());
}

void check_same_device(const Tensor& a, const Tensor& b, const char* who) {
  MINIDL_CHECK(a.device() == b.device(), who, ": tensors on different devices: ", a.describe(),
               " and ", b.describe(), " (move one with .to(device))");
}

void check_dtype(const Tensor& t, DType expected, const char* who, const char* what) {
  MINIDL_CHECK(t.dtype() == expected, who, ": ", what, " has dtype ", t.dtype(), ", expected ",
               expected);
}

bool ensure_tensor(Tensor& t, const Shape& shape, DType dtype, Device device) {
  if (t.defined() && t.shape() == shape && t.dtype() == dtype && t.device() == device) return false;
  t = Tensor::empty(shape, dtype, device);
  return true;
}

}  // namespace minidl

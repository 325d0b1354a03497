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

const char* layout_name(Layout l) {
  return l == Layout::NHWC ? "NHWC (channels_last)" : "NCHW";
}

bool layouts_coincide(const Shape& shape) {
  return shape.dim() != 4 || shape[1] == 1 || shape[2] * shape[3] == 1;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device, Layout layout) {
  require_device(device);
  MINIDL_CHECK(layout == Layout::NCHW || shape.dim() == 4, "Tensor::empty: layout ",
               layout_name(layout), " needs a 4-D (N, C, H, W) shape, got ", shape);
  Tensor t;
  t.layout_ = layout;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>(t.nbytes(), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device, Layout layout) {
  Tensor t = empty(shape, dtype, device, layout);
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
  MINIDL_CHECK(layout_ == Layout::NCHW || layouts_coincide(shape_), "Tensor::view: cannot view ",
               describe(), " as ", shape,
               ": its elements are channels-last, so a reshape would mix channels and pixels "
               "(convert it to NCHW first: kernels/convert.h)");
  Tensor t = *this;
  t.shape_ = shape;
  t.layout_ = Layout::NCHW;
  return t;
}

Tensor Tensor::relabel(Layout layout) const {
  MINIDL_CHECK(defined(), "Tensor::relabel: tensor is undefined");
  MINIDL_CHECK(layout == layout_ || (dim() == 4 && layouts_coincide(shape_)),
               "Tensor::relabel: cannot label ", describe(), " ", layout_name(layout),
               ": its memory order differs between the layouts (convert it: kernels/convert.h)");
  Tensor t = *this;
  t.layout_ = layout;
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
  Tensor t = empty(shape_, dtype_, device, layout_);
  t.copy_(*this);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device_, layout_);
  t.copy_(*this);
  return t;
}

void Tensor::copy_(const Tensor& src) {
  MINIDL_CHECK(defined() && src.defined(), "Tensor::copy_: undefined tensor");
  MINIDL_CHECK(dtype_ == src.dtype_ && numel() == src.numel(), "Tensor::copy_: cannot copy ",
               src.describe(), " into ", describe());
  MINIDL_CHECK(layout_ == src.layout_ || layouts_coincide(shape_), "Tensor::copy_: cannot copy ",
               src.describe(), " into ", describe(),
               " (different layouts: convert() changes layouts, kernels/convert.h)");
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
  return str(dtype_name(dtype_), " ", device_.str(), " ", shape_.str(),
             layout_ == Layout::NHWC ? " channels_last" : "");
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
  MINIDL_CHECK(a.layout() == b.layout() || layouts_coincide(a.shape()), who,
               ": layouts differ: ", a.describe(), " vs ", b.describe(),
               " (convert one with convert(), kernels/convert.h)");
}

void check_layout(const Tensor& t, Layout expected, const char* who, const char* what) {
  MINIDL_CHECK(t.layout() == expected || layouts_coincide(t.shape()), who, ": ", what, " is ",
               t.describe(), ", expected layout ", layout_name(expected));
}

void check_same_device(const Tensor& a, const Tensor& b, const char* who) {
  MINIDL_CHECK(a.device() == b.device(), who, ": tensors on different devices: ", a.describe(),
               " and ", b.describe(), " (move one with .to(device))");
}

void check_dtype(const Tensor& t, DType expected, const char* who, const char* what) {
  MINIDL_CHECK(t.dtype() == expected, who, ": ", what, " has dtype ", t.dtype(), ", expected ",
               expected);
}

bool ensure_tensor(Tensor& t, const Shape& shape, DType dtype, Device device, Layout layout) {
  if (t.defined() && t.shape() == shape && t.dtype() == dtype && t.device() == device &&
      t.layout() == layout)
    return false;
  t = Tensor::empty(shape, dtype, device, layout);
  return true;
}

}  // namespace minidl

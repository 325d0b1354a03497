// Tensor: a typed, shaped view of device memory.
//
// A Tensor is a cheap handle (copying it shares the memory, like torch.Tensor); `clone()` copies
// the data. Memory is owned by a reference-counted Storage and returned to the allocator when the
// last view goes. Data is always contiguous in its layout (NCHW today; NHWC is a reserved layout for
// tensor-core kernels later), so a view only needs an element offset and a shape: `view` reshapes and
// `slice` takes a range of the first dimension, both without copying.
//
// Host/device copies are explicit (`to`, `copy_`, `to_vector`); `data<T>()` never copies and
// checks the dtype, so reading a CUDA tensor's data on the host is an error you see immediately.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"

namespace minidl {

enum class Layout : uint8_t { NCHW, NHWC };

class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: holds no storage

  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int dim() const { return shape_.dim(); }
  int64_t size(int d) const { return shape_[d]; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  Layout layout() const { return layout_; }
  bool is_cuda() const { return device_.is_cuda(); }

  // Typed pointer to the first element; checks that T matches the dtype. Never copies.
  template <typename T>
  T* data() const {
    MINIDL_CHECK(defined(), "Tensor::data: tensor is undefined");
    MINIDL_CHECK(dtype_v<T> == dtype_, "Tensor::data: tensor ", describe(), " read as ",
                 dtype_name(dtype_v<T>));
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;

  // Same memory, new shape with the same number of elements.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) of the first dimension, sharing memory.
  Tensor slice(int64_t begin, int64_t end) const;

  // New tensor on `device` holding a copy (returns *this when already there).
  Tensor to(Device device) const;
  Tensor clone() const;
  // Copy src's elements into this tensor (same dtype and element count; any devices).
  void copy_(const Tensor& src);
  // Set every byte to zero (for float/int dtypes that is the value 0).
  void zero_();
  // Set every element to `value` (float and int dtypes).
  void fill_(double value);

  template <typename T>
  std::vector<T> to_vector() const;
  // The single element of a one-element tensor, copied to the host (synchronises a CUDA device).
  template <typename T>
  T item() const;

  // True when both views start at the same address of the same storage.
  bool same_data(const Tensor& o) const { return storage_ == o.storage_ && offset_ == o.offset_; }
  // "float32 cuda:0 (2, 3, 4, 4)"
  std::string describe() const;

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // in bytes
  Shape shape_;
  DType dtype_ = DType::F32;
  Device device_;
  Layout layout_ = Layout::NCHW;
};

inline std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.describe(); }

// Shape checks used by ops and layers: they throw naming `who` and both shapes.
void check_shape(const Tensor& t, const Shape& expected, const char* who, const char* what);
void check_same_shape(const Tensor& a, const Tensor& b, const char* who);
void check_same_device(const Tensor& a, const Tensor& b, const char* who);
void check_dtype(const Tensor& t, DType expected, const char* who, const char* what);

// Allocate `t` as (shape, dtype, device) unless it already is: the "allocate once per input
// shape" rule for layer outputs and caches. Returns true when it (re)allocated.
bool ensure_tensor(Tensor& t, const Shape& shape, DType dtype, Device device);

}  // namespace minidl

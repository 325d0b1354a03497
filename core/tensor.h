// Tensor: a typed, shaped view of device memory.
//
// A Tensor is a cheap handle (copying it shares the memory, like torch.Tensor); `clone()` copies
// the data. Memory is owned by a reference-counted Storage and returned to the allocator when the
// last view goes. Data is always contiguous in its layout, so a view only needs an element offset
// and a shape: `view` reshapes and `slice` takes a range of the first dimension, both without
// copying.
//
// Layout. The shape of a 4-D tensor is always the logical (N, C, H, W), as in PyTorch; `layout()`
// says how its elements lie in memory:
//   NCHW  element (n, c, h, w) at ((n*C + c)*H + h)*W + w     (the default, and every non-4-D tensor)
//   NHWC  element (n, c, h, w) at ((n*H + h)*W + w)*C + c     (channels-last: PyTorch's
//         torch.channels_last; what cuDNN's and the tensor cores' fast convolutions read)
// Ops that index 4-D tensors (conv2d, batchnorm, pooling) take both; elementwise ops take any
// layout but all their operands must share it (check_same_shape checks the layout too); `convert`
// (kernels/convert.h) changes it. `view` of an NHWC tensor is refused unless its memory order is
// also NCHW's (C == 1 or H*W == 1), so no reshape can read channels-last memory as NCHW.
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

// "NCHW", "NHWC (channels_last)".
const char* layout_name(Layout l);
// Whether a tensor of `shape` has the same memory order in both layouts (not 4-D, or C == 1, or
// H*W == 1): then a layout is only a label.
bool layouts_coincide(const Shape& shape);

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

  // `layout` NHWC needs a 4-D shape.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu(),
                      Layout layout = Layout::NCHW);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu(),
                      Layout layout = Layout::NCHW);
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

  // Same memory, new shape with the same number of elements (the view is NCHW; an NHWC tensor
  // only where layouts_coincide(shape()), see the note on layouts above).
  Tensor view(const Shape& shape) const;
  // Same memory and shape, labelled `layout`: only where layouts_coincide(shape()) (a global
  // average pool's (N, C, 1, 1) output, say), since it moves no element.
  Tensor relabel(Layout layout) const;
  // Rows [begin, end) of the first dimension, sharing memory.
  Tensor slice(int64_t begin, int64_t end) const;

  // New tensor on `device` holding a copy (returns *this when already there); same layout.
  Tensor to(Device device) const;
  Tensor clone() const;
  // Copy src's elements into this tensor (same dtype and element count; any devices; the same
  // layout unless the two coincide: convert() changes layouts).
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
  // "float32 cuda:0 (2, 3, 4, 4)", "bfloat16 cpu (2, 3, 4, 4) channels_last"
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
// Same shape and, unless the two coincide, the same layout (elementwise ops pair elements by
// memory offset, so an NCHW operand with an NHWC one would be silently wrong).
void check_same_shape(const Tensor& a, const Tensor& b, const char* who);
// Throws naming `who`, `what` and both layouts unless t has layout `expected` (or they coincide).
void check_layout(const Tensor& t, Layout expected, const char* who, const char* what);
void check_same_device(const Tensor& a, const Tensor& b, const char* who);
void check_dtype(const Tensor& t, DType expected, const char* who, const char* what);

// Allocate `t` as (shape, dtype, device, layout) unless it already is: the "allocate once per
// input shape" rule for layer outputs and caches. Returns true when it (re)allocated.
bool ensure_tensor(Tensor& t, const Shape& shape, DType dtype, Device device,
                   Layout layout = Layout::NCHW);

}  // namespace minidl

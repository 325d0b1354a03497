// A tensor shape of up to four dimensions (NCHW for images, (N, features) for linear layers,
// (N) for labels). Small and by value: no heap allocation.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>

#include "core/error.h"

namespace minidl {

class Shape {
 public:
  static constexpr int kMaxDims = 4;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    MINIDL_CHECK(dims.size() <= kMaxDims, "Shape: at most ", kMaxDims, " dimensions, got ", dims.size());
    for (int64_t d : dims) {
      MINIDL_CHECK(d >= 0, "Shape: negative dimension ", d);
      d_[n_++] = d;
    }
  }

  int dim() const { return n_; }
  int64_t operator[](int i) const {
    MINIDL_CHECK(i >= 0 && i < n_, "Shape", str(), ": dimension ", i, " out of range");
    return d_[i];
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < n_; ++i) n *= d_[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (n_ != o.n_) return false;
    for (int i = 0; i < n_; ++i)
      if (d_[i] != o.d_[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }

  Shape with(int i, int64_t v) const {
    Shape s = *this;
    MINIDL_CHECK(i >= 0 && i < n_, "Shape", str(), ": dimension ", i, " out of range");
    s.d_[i] = v;
    return s;
  }

  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < n_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
    return s + (n_ == 1 ? ",)" : ")");
  }

 private:
  std::array<int64_t, kMaxDims> d_{};
  int n_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

}  // namespace minidl

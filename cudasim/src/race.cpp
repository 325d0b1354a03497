// cudasim's shared-memory race checker.
//
// Kernels built for race checking (the minidl_cuda_race_tests target) are compiled with gcc's
// ThreadSanitizer instrumentation (-fsanitize=thread) but linked without its run-time library:
// every load and store of those translation units calls one of the __tsan_* hooks below instead.
// In race mode (CUDASIM_RACE=1), inside a kernel, a hook looks the address up among the block's
// __shared__ variables and keeps, per 2-byte granule and barrier interval (the code between two
// __syncthreads), which thread wrote it and which thread(s) read it:
//   - a write to a granule another thread wrote or read in the same interval, or
//   - a read of a granule another thread wrote in the same interval
// is a race: on a GPU the outcome depends on warp scheduling. The launch fails naming the kernel,
// both threads, the variable's declaration and the byte offset. Global memory is not checked
// (minidl's kernels write disjoint global elements; the tests compare every element).
//
// Outside race mode and outside kernels the hooks return at once. They never throw: gcc declares
// them nothrow, so a failing check leaves its fiber without unwinding (abandon_fiber).
// Atomics in instrumented code are forwarded to the compiler's builtins.
#include <cstdint>
#include <cstdio>
#include <string>

#include "internal.h"

namespace cudasim::detail {
namespace {

void check_access(const void* addr, size_t size, bool write) {
  if (!race_checking()) return;
  std::vector<SharedRange>* ranges = current_shared();
  if (!ranges) return;
  const auto* p = static_cast<const unsigned char*>(addr);
  for (SharedRange& r : *ranges) {
    if (p + size <= r.begin || p >= r.begin + r.bytes) continue;
    const uint32_t epoch = current_epoch();
    const int32_t me = static_cast<int32_t>(current_linear_thread());
    const size_t first = static_cast<size_t>(p - r.begin) / kShadowGranule;
    const size_t last = (static_cast<size_t>(p - r.begin) + size - 1) / kShadowGranule;
    for (size_t w = first; w <= last && w < r.shadow.size(); ++w) {
      ShadowWord& s = r.shadow[w];
      if (s.epoch != epoch) s = ShadowWord{epoch, -1, -1};
      int32_t other = -1;
      const char* conflict = nullptr;
      if (s.writer >= 0 && s.writer != me) {
        other = s.writer;
        conflict = "wrote";
      } else if (write && s.reader == -2) {
        other = -2;
        conflict = "read";
      } else if (write && s.reader >= 0 && s.reader != me) {
        other = s.reader;
        conflict = "read";
      }
      if (conflict) {
        const std::string who = other >= 0 ? describe_thread(static_cast<unsigned>(other))
                                           : std::string("several threads");
        abandon_fiber(std::string("shared-memory race: ") + (write ? "write to" : "read of") +
                      " byte " + std::to_string(w * kShadowGranule) +
                      " of the __shared__ variable declared at " + r.decl.file + ":" +
                      std::to_string(r.decl.line) + ", which " + who + " " + conflict +
                      " in the same barrier interval (a __syncthreads is missing between "
                      "them)");
      }
      if (write) {
        s.writer = me;
      } else if (s.reader == -1) {
        s.reader = me;
      } else if (s.reader != me) {
        s.reader = -2;
      }
    }
    return;
  }
}

}  // namespace
}  // namespace cudasim::detail

using cudasim::detail::check_access;

extern "C" {

void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}

#define CUDASIM_TSAN_RW(n)                                                            \
  void __tsan_read##n(void* p) { check_access(p, n, false); }                         \
  void __tsan_write##n(void* p) { check_access(p, n, true); }                         \
  void __tsan_unaligned_read##n(void* p) { check_access(p, n, false); }               \
  void __tsan_unaligned_write##n(void* p) { check_access(p, n, true); }               \
  void __tsan_volatile_read##n(void* p) { check_access(p, n, false); }                \
  void __tsan_volatile_write##n(void* p) { check_access(p, n, true); }
CUDASIM_TSAN_RW(1)
CUDASIM_TSAN_RW(2)
CUDASIM_TSAN_RW(4)
CUDASIM_TSAN_RW(8)
CUDASIM_TSAN_RW(16)
#undef CUDASIM_TSAN_RW

void __tsan_read_range(void* p, unsigned long n) { check_access(p, n, false); }
void __tsan_write_range(void* p, unsigned long n) { check_access(p, n, true); }

// Atomics: the operation itself, sequentially consistent (the order argument is advisory here).
#define CUDASIM_TSAN_ATOMIC(bits, T)                                                              \
  T __tsan_atomic##bits##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); } \
  void __tsan_atomic##bits##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); } \
  T __tsan_atomic##bits##_fetch_nand(volatile T* a, T v, int) { return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST); } \
  int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {        \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);       \
  }                                                                                               \
  int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {          \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);        \
  }                                                                                               \
  T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) {              \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);             \
    return c;                                                                                     \
  }
CUDASIM_TSAN_ATOMIC(8, char)
CUDASIM_TSAN_ATOMIC(16, short)
CUDASIM_TSAN_ATOMIC(32, int)
CUDASIM_TSAN_ATOMIC(64, long)
#undef CUDASIM_TSAN_ATOMIC

void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

}  // extern "C"

// cudasim's execution engine: a launch's blocks spread over OpenMP threads, and within a block one
// fiber per CUDA thread, switched by a 20-instruction x86-64 context switch (ucontext elsewhere,
// which is about 45x slower because it saves the signal mask with a system call).
//
// A block runs in passes. In each pass every warp's runnable lanes are resumed until they finish or
// reach a barrier; a warp collective (shuffle, ballot, __syncwarp) completes as soon as every lane of
// its mask has arrived, and the warp goes on. When no lane of the block can move, either all threads
// have finished, or all live threads wait at the same __syncthreads (the barrier completes and a new
// barrier interval begins), or the block is stuck, which is an error in the kernel: a thread exited
// or waits elsewhere while others wait at a barrier, or a warp collective names lanes that will
// never arrive. The error names the kernel, its launch site, the block, the threads and the
// source lines.
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "internal.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace cudasim::detail {

thread_local ThreadState* tl_thread = nullptr;
thread_local BlockState* tl_block = nullptr;

namespace {

// ---------------------------------------------------------------- context switch
#if defined(__x86_64__)
extern "C" void cudasim_switch(void** save_sp, void* new_sp);
extern "C" void cudasim_fiber_start();
// Saves the callee-saved registers and the SSE/x87 control words on the current stack, stores the
// stack pointer in *save_sp, and resumes the stack `new_sp` the same way in reverse.
asm(R"(
  .text
  .globl cudasim_switch
  .type cudasim_switch, @function
cudasim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cudasim_switch, .-cudasim_switch

  .globl cudasim_fiber_start
  .type cudasim_fiber_start, @function
cudasim_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size cudasim_fiber_start, .-cudasim_fiber_start
)");
#endif

constexpr size_t kStackBytes = 256 * 1024;  // per fiber; kernels' frames are small, error paths not
constexpr size_t kGuardBytes = 4096;
constexpr unsigned kMaxThreads = 1024;

struct Fiber;
void fiber_main(Fiber* f);

enum class State : unsigned char { Ready, AtBarrier, AtWarp, Done };

struct Fiber {
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
  char* stack = nullptr;  // lowest usable byte; the guard page sits below it
  ThreadState ts{};
  State state = State::Ready;
  Loc loc{nullptr, 0};
  const char* what = nullptr;
  unsigned mask = 0;
  unsigned gen = 0;  // warp collectives completed by this lane
};

std::string tid_str(const uint3& t);
std::string thread_name(const Fiber& f) { return "thread " + tid_str(f.ts.thread_idx); }

struct Warp {
  alignas(16) unsigned char slot[2][32][16];
  unsigned vote[2][32];
  alignas(16) unsigned char xslot[2][32][kMaxExchangeBytes];  // warp_exchange
};

std::string where(const Loc& l) { return std::string(l.file ? l.file : "?") + ":" + std::to_string(l.line); }
std::string tid_str(const uint3& t) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "(%u,%u,%u)", t.x, t.y, t.z);
  return buf;
}

struct KernelFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

// One per OS thread: runs one block at a time.
struct Runner {
  std::vector<Fiber> fibers;
  char* stacks = nullptr;
  size_t stacks_made = 0;
#if defined(__x86_64__)
  void* sched_sp = nullptr;
#else
  ucontext_t sched_uc;
#endif
  Fiber* current = nullptr;
  unsigned nthreads = 0;
  BlockState block{};
  Warp warps[kMaxThreads / 32];
  uint64_t launch_id = 0;
  const LaunchSite* site = nullptr;
  void (*body)(const void*) = nullptr;
  const void* ctx = nullptr;
  std::string error;
  std::vector<SharedRange> shared;
  size_t shared_bytes = 0;
  std::vector<unsigned char> dynamic_smem;
  uint64_t rng = 0;
  uint32_t epoch = 0;  // barrier interval, for the race checker
  bool race = false;

  Runner() : fibers(kMaxThreads) {}

  void ensure_stacks(unsigned n) {
    if (stacks_made >= n) return;
    if (!stacks) {
      const size_t total = kMaxThreads * (kStackBytes + kGuardBytes);
      void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) {
        std::fprintf(stderr, "cudasim: cannot reserve fiber stacks\n");
        std::abort();
      }
      stacks = static_cast<char*>(p);
    }
    for (size_t i = stacks_made; i < n; ++i) {
      char* base = stacks + i * (kStackBytes + kGuardBytes);
      mprotect(base, kGuardBytes, PROT_NONE);  // a stack overflow faults instead of corrupting
      fibers[i].stack = base + kGuardBytes;
    }
    stacks_made = n;
  }

  uint64_t next_random() {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }

  void start_fiber(Fiber& f) {
    f.state = State::Ready;
    f.gen = 0;
#if defined(__x86_64__)
    // Initial frame as cudasim_switch leaves it: control words, r15..r12, rbx, rbp, return address.
    auto* top = reinterpret_cast<uint64_t*>(f.stack + kStackBytes - 64);
    top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(top) & ~uintptr_t(15));
    uint64_t* frame = top - 8;
    frame[0] = 0x1F80ull | (0x037Full << 32);  // mxcsr default, x87 control word default
    frame[1] = 0;                               // r15
    frame[2] = 0;                               // r14
    frame[3] = reinterpret_cast<uint64_t>(&fiber_main);  // r13: function
    frame[4] = reinterpret_cast<uint64_t>(&f);           // r12: argument
    frame[5] = 0;                                        // rbx
    frame[6] = 0;                                        // rbp
    frame[7] = reinterpret_cast<uint64_t>(&cudasim_fiber_start);
    f.sp = frame;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = f.stack;
    f.uc.uc_stack.ss_size = kStackBytes;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, reinterpret_cast<void (*)()>(&fiber_main), 1, &f);
#endif
  }

  void resume(Fiber& f) {
    current = &f;
    tl_thread = &f.ts;
#if defined(__x86_64__)
    cudasim_switch(&sched_sp, f.sp);
#else
    swapcontext(&sched_uc, &f.uc);
#endif
    current = nullptr;
    tl_thread = nullptr;
  }

  void yield(Fiber& f) {
#if defined(__x86_64__)
    cudasim_switch(&f.sp, sched_sp);
#else
    swapcontext(&f.uc, &sched_uc);
#endif
  }

  Fiber& lane_fiber(unsigned warp, unsigned lane) { return fibers[warp * 32 + lane]; }
  unsigned lanes_in(unsigned warp) const {
    const unsigned first = warp * 32;
    return nthreads - first < 32 ? nthreads - first : 32;
  }


  // Completes the warp collectives whose lanes have all arrived. Returns true if any lane was
  // released; sets `error` for a mask that can never complete.
  bool release_warp(unsigned w) {
    const unsigned n = lanes_in(w);
    bool released = false;
    for (unsigned l = 0; l < n; ++l) {
      Fiber& f = lane_fiber(w, l);
      if (f.state != State::AtWarp) continue;
      bool ready = true;
      for (unsigned b = 0; b < 32 && ready; ++b) {
        if (!(f.mask >> b & 1u)) continue;
        if (b >= n) {
          error = std::string(f.what) + " at " + where(f.loc) + ": mask 0x" + hex(f.mask) +
                  " names lane " + std::to_string(b) + " of warp " + std::to_string(w) +
                  ", which does not exist (the block has " + std::to_string(nthreads) + " threads)";
          return false;
        }
        const Fiber& g = lane_fiber(w, b);
        if (g.state == State::Done) {
          error = std::string(f.what) + " at " + where(f.loc) + ": mask 0x" + hex(f.mask) +
                  " names lane " + std::to_string(b) + " (" + thread_name(g) +
                  "), which has exited";
          return false;
        }
        if (g.state != State::AtWarp) {
          ready = false;
          break;
        }
        if (g.mask != f.mask || g.what != f.what || g.gen != f.gen) {
          error = "warp " + std::to_string(w) + " diverged: lane " + std::to_string(l) + " is at " +
                  f.what + " (" + where(f.loc) + ", mask 0x" + hex(f.mask) + ") while lane " +
                  std::to_string(b) + " is at " + g.what + " (" + where(g.loc) + ", mask 0x" +
                  hex(g.mask) + ")";
          return false;
        }
      }
      if (!ready) continue;
      for (unsigned b = 0; b < n; ++b)
        if (f.mask >> b & 1u) lane_fiber(w, b).state = State::Ready;
      released = true;
    }
    return released;
  }

  static std::string hex(unsigned v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08x", v);
    return buf;
  }

  // Runs one block to completion; false (with `error`) if the kernel failed.
  bool run_block(uint3 block_idx) {
    block.block_idx = block_idx;
    block.dynamic_smem = dynamic_smem.data();
    tl_block = &block;
    shared.clear();
    shared_bytes = 0;
    error.clear();
    ++epoch;
    for (unsigned i = 0; i < nthreads; ++i) start_fiber(fibers[i]);
    const unsigned nwarps = (nthreads + 31) / 32;
    unsigned order[kMaxThreads / 32];
    unsigned lane_order[32];
    for (;;) {
      for (unsigned i = 0; i < nwarps; ++i) order[i] = i;
      if (race)
        for (unsigned i = nwarps; i > 1; --i) std::swap(order[i - 1], order[next_random() % i]);
      for (unsigned oi = 0; oi < nwarps; ++oi) {
        const unsigned w = order[oi], n = lanes_in(w);
        for (unsigned i = 0; i < n; ++i) lane_order[i] = i;
        for (;;) {
          if (race)
            for (unsigned i = n; i > 1; --i) std::swap(lane_order[i - 1], lane_order[next_random() % i]);
          bool ran = false;
          for (unsigned i = 0; i < n; ++i) {
            Fiber& f = lane_fiber(w, lane_order[i]);
            if (f.state != State::Ready) continue;
            resume(f);
            ran = true;
            if (!error.empty()) return false;
          }
          const bool released = release_warp(w);
          if (!error.empty()) return false;
          if (!ran && !released) break;
        }
      }
      // No lane can move: finished, a complete barrier, or stuck.
      unsigned waiting = 0, done = 0;
      const Fiber* first_wait = nullptr;
      const Fiber* first_done = nullptr;
      for (unsigned i = 0; i < nthreads; ++i) {
        const Fiber& f = fibers[i];
        if (f.state == State::AtWarp) {
          // Its warp collective waits for a lane that is at a __syncthreads (or the reverse).
          std::string other;
          const unsigned w = i / 32;
          for (unsigned b = 0; b < lanes_in(w); ++b)
            if ((f.mask >> b & 1u) && lane_fiber(w, b).state == State::AtBarrier)
              other = " for lane " + std::to_string(b) + " (" + thread_name(lane_fiber(w, b)) +
                      "), which waits at __syncthreads at " + where(lane_fiber(w, b).loc);
          error = "deadlock: " + thread_name(f) + " waits at " + f.what + " at " + where(f.loc) +
                  " (mask 0x" + hex(f.mask) + ")" + other;
          return false;
        }
        if (f.state == State::AtBarrier) {
          ++waiting;
          if (!first_wait) first_wait = &f;
          if (f.loc.line != first_wait->loc.line || f.loc.file != first_wait->loc.file) {
            error = "divergent __syncthreads: " + thread_name(*first_wait) + " waits at " +
                    where(first_wait->loc) + " while " + thread_name(f) + " waits at " + where(f.loc);
            return false;
          }
        } else if (f.state == State::Done) {
          ++done;
          if (!first_done) first_done = &f;
        }
      }
      if (waiting == 0) return true;  // every thread has finished
      if (done > 0) {
        error = "divergent __syncthreads at " + where(first_wait->loc) + ": " +
                std::to_string(waiting) + " threads wait there but " + std::to_string(done) +
                " threads of the block have exited (e.g. " + thread_name(*first_done) +
                "); every thread of a block must reach each __syncthreads";
        return false;
      }
      for (unsigned i = 0; i < nthreads; ++i) fibers[i].state = State::Ready;
      ++epoch;
    }
  }
};

thread_local Runner* tl_runner = nullptr;

namespace {

Runner& runner() {
  if (!tl_runner) tl_runner = new Runner();  // lives as long as the OS thread; reused by launches
  return *tl_runner;
}

void fiber_main(Fiber* f) {
  Runner& r = *tl_runner;
  try {
    r.body(r.ctx);
  } catch (const std::exception& e) {
    r.error = e.what();
  } catch (...) {
    r.error = "unknown exception in kernel";
  }
  f->state = State::Done;
  r.yield(*f);
  __builtin_trap();  // a finished fiber is never resumed
}

Fiber& current_fiber(const Loc& loc, const char* what) {
  Runner* r = tl_runner;
  if (!r || !r->current) {
    std::fprintf(stderr, "cudasim: %s called outside a kernel at %s:%d\n", what, loc.file, loc.line);
    std::abort();
  }
  return *r->current;
}

std::mutex g_launch_error_mutex;

}  // namespace

const LaunchSite* current_site() { return tl_runner ? tl_runner->site : nullptr; }
uint32_t current_epoch() { return tl_runner ? tl_runner->epoch : 0; }
unsigned current_linear_thread() { return tl_thread ? tl_thread->linear : 0; }
std::vector<SharedRange>* current_shared() { return tl_runner && tl_runner->current ? &tl_runner->shared : nullptr; }

std::string describe_thread(unsigned linear) {
  Runner* r = tl_runner;
  if (!r || linear >= r->nthreads) return "thread ?";
  return thread_name(r->fibers[linear]);
}


void abandon_fiber(const std::string& message) {
  Runner& r = *tl_runner;
  Fiber& f = *r.current;
  r.error = message + " (" + thread_name(f) + ")";
  f.state = State::Done;
  r.yield(f);
  __builtin_trap();  // never resumed: the block has failed
}

bool race_checking() { return tl_runner && tl_runner->current && tl_runner->race; }

void syncthreads(Loc loc) {
  Fiber& f = current_fiber(loc, "__syncthreads");
  f.state = State::AtBarrier;
  f.loc = loc;
  tl_runner->yield(f);
}

unsigned warp_collective(Loc loc, const char* what, unsigned mask, const void* in, void* out,
                         size_t bytes, int src_lane, bool vote) {
  Fiber& f = current_fiber(loc, what);
  Runner& r = *tl_runner;
  const unsigned lane = f.ts.linear & 31u, w = f.ts.linear / 32;
  if (!(mask >> lane & 1u))
    throw KernelFailure(std::string(what) + " at " + where(loc) + ": mask 0x" + Runner::hex(mask) +
                        " does not include the calling lane " + std::to_string(lane) + " (thread " +
                        tid_str(f.ts.thread_idx) + ")");
  Warp& wp = r.warps[w];
  const unsigned g = f.gen & 1u;
  if (bytes) std::memcpy(wp.slot[g][lane], in, bytes);
  if (vote) wp.vote[g][lane] = *static_cast<const unsigned*>(in);
  f.state = State::AtWarp;
  f.loc = loc;
  f.what = what;
  f.mask = mask;
  r.yield(f);
  // Released: every lane of `mask` has deposited its value for this generation.
  unsigned result = 0;
  if (vote)
    for (unsigned b = 0; b < 32; ++b)
      if ((mask >> b & 1u) && wp.vote[g][b]) result |= 1u << b;
  if (bytes) {
    if (src_lane < 0 || src_lane > 31 || !(mask >> src_lane & 1u))
      throw KernelFailure(std::string(what) + " at " + where(loc) + ": lane " + std::to_string(lane) +
                          " reads lane " + std::to_string(src_lane) + ", which is not in mask 0x" +
                          Runner::hex(mask) + " (the value would be undefined on a GPU)");
    std::memcpy(out, wp.slot[g][src_lane], bytes);
  }
  ++f.gen;
  return result;
}

void warp_exchange(Loc loc, const char* what, const void* in, size_t bytes, void* all_out) {
  Fiber& f = current_fiber(loc, what);
  Runner& r = *tl_runner;
  if (bytes > kMaxExchangeBytes) throw KernelFailure(std::string(what) + ": exchange too large");
  const unsigned lane = f.ts.linear & 31u, w = f.ts.linear / 32;
  Warp& wp = r.warps[w];
  const unsigned g = f.gen & 1u;
  if (bytes) std::memcpy(wp.xslot[g][lane], in, bytes);
  f.state = State::AtWarp;
  f.loc = loc;
  f.what = what;
  f.mask = 0xffffffffu;
  r.yield(f);
  // Released: all 32 lanes have deposited (release_warp fails the launch if the warp has fewer
  // lanes, or a lane exited or waits elsewhere).
  if (bytes)
    for (unsigned b = 0; b < 32; ++b)
      std::memcpy(static_cast<unsigned char*>(all_out) + b * bytes, wp.xslot[g][b], bytes);
  ++f.gen;
}

void kernel_fail(const std::string& message) { throw KernelFailure(message); }

void register_shared(void* p, size_t bytes, Loc loc) {
  Runner* r = tl_runner;
  if (!r || !r->current) return;
  for (const SharedRange& s : r->shared)
    if (s.begin == p) return;
  // First touch in this block: indeterminate contents, as on a GPU.
  std::memset(p, 0xff, bytes);
  r->shared.push_back(SharedRange{static_cast<unsigned char*>(p), bytes, loc, {}});
  if (r->race)
    r->shared.back().shadow.assign((bytes + kShadowGranule - 1) / kShadowGranule, ShadowWord{});
  r->shared_bytes += bytes;
  if (r->shared_bytes + r->dynamic_smem.size() > 48 * 1024)
    throw KernelFailure("kernel uses " + std::to_string(r->shared_bytes) + " bytes of static and " +
                        std::to_string(r->dynamic_smem.size()) +
                        " bytes of dynamic shared memory, more than the 48 KiB a block may have "
                        "without opting in (last declared at " + where(loc) + ")");
}

void report_argument_error(const LaunchSite& site, int index, const void* p) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%p", p);
  set_launch_error(cudaErrorInvalidValue,
                   std::string("cudasim: kernel ") + site.kernel + " launched at " + site.file + ":" +
                       std::to_string(site.line) + ": argument " + std::to_string(index) + " (" +
                       buf + ") is not device memory (a host pointer passed to a kernel?)");
}

cudaError_t launch(const LaunchSite& site, dim3 grid, dim3 block, size_t dynamic_smem,
                   cudaStream_t stream, void (*body)(const void*), const void* ctx) {
  const std::string at = std::string("kernel ") + site.kernel + " launched at " + site.file + ":" +
                         std::to_string(site.line);
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || block.x > 1024 || block.y > 1024 || block.z > 64)
    return set_launch_error(cudaErrorInvalidConfiguration,
                            "cudasim: " + at + ": block (" + std::to_string(block.x) + "," +
                                std::to_string(block.y) + "," + std::to_string(block.z) +
                                ") is not a valid block shape (1..1024 threads, z <= 64)");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
      grid.x > 0x7fffffffu)
    return set_launch_error(cudaErrorInvalidConfiguration,
                            "cudasim: " + at + ": grid (" + std::to_string(grid.x) + "," +
                                std::to_string(grid.y) + "," + std::to_string(grid.z) +
                                ") is not a valid grid (each dimension >= 1; y, z <= 65535)");
  if (dynamic_smem > 48 * 1024)
    return set_launch_error(cudaErrorInvalidValue, "cudasim: " + at + ": " +
                                                       std::to_string(dynamic_smem) +
                                                       " bytes of dynamic shared memory (max 48 KiB)");
  if (!check_stream(stream))
    return set_launch_error(cudaErrorInvalidResourceHandle,
                            "cudasim: " + at + ": the stream was destroyed or never created");

  const long long nblocks = 1ll * grid.x * grid.y * grid.z;
  std::atomic<bool> failed{false};
  std::string first_error;
  const bool race = race_mode();
  const uint64_t launch_id = next_launch_id();
  const uint64_t seed = launch_seed(launch_id);
  const int max_threads = emulation_threads();
  const long long chunk = std::max<long long>(1, nblocks / (static_cast<long long>(max_threads) * 8));

#pragma omp parallel for schedule(dynamic, chunk) num_threads(max_threads) if (nblocks > 1)
  for (long long b = 0; b < nblocks; ++b) {
    if (failed.load(std::memory_order_relaxed)) continue;
    Runner& r = runner();
    if (r.launch_id != launch_id) {  // first block of this launch on this OS thread
      r.launch_id = launch_id;
      r.site = &site;
      r.body = body;
      r.ctx = ctx;
      r.nthreads = static_cast<unsigned>(threads);
      r.block.block_dim = block;
      r.block.grid_dim = grid;
      r.dynamic_smem.assign(dynamic_smem, 0xff);
      r.race = race;
      r.ensure_stacks(r.nthreads);
      for (unsigned i = 0; i < r.nthreads; ++i) {
        ThreadState& ts = r.fibers[i].ts;
        ts.linear = i;
        ts.thread_idx = {i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
      }
    }
    r.rng = seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(b + 1));
    if (r.rng == 0) r.rng = 1;
    const uint3 idx{static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                    static_cast<unsigned>(b / (1ll * grid.x * grid.y))};
    if (!r.run_block(idx)) {
      std::lock_guard<std::mutex> lock(g_launch_error_mutex);
      if (!failed.exchange(true))
        first_error = "cudasim: " + at + ", block " + tid_str(idx) + ": " + r.error;
    }
    tl_block = nullptr;
  }
  if (failed) return set_launch_error(cudaErrorLaunchFailure, first_error);
  if (protect_mode()) {
    // Launches complete before returning, and the previous one left every canary intact.
    const std::string overrun = check_canaries();
    if (!overrun.empty())
      return set_launch_error(cudaErrorLaunchFailure, "cudasim: " + at + ": " + overrun);
  }
  return cudaSuccess;
}

}  // namespace cudasim::detail

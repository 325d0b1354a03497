// The collective layer (dist/comm.h): MPI for host buffers and launch, NCCL (dist/nccl.cpp) or a
// host-staged MPI_Allreduce for GPU buffers; a single-rank identity without mpirun or MPI.
#include "dist/comm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <type_traits>

#if MINIDL_WITH_MPI
#include <mpi.h>
#endif
#if MINIDL_WITH_NCCL
#include "dist/nccl.h"
#endif

namespace minidl::dist {

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return end != v && *end == '\0' && x >= 0 && x <= INT_MAX ? static_cast<int>(x) : fallback;
}

}  // namespace

Launch launch_from_environment() {
  Launch l;
  // Open MPI's mpirun, then the PMI variables that MPICH's and Slurm's launchers set.
  struct Names {
    const char *size, *rank, *local_rank;
  };
  for (const Names& n :
       {Names{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"},
        Names{"PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"}}) {
    const int size = env_int(n.size, 0);
    if (size <= 0) continue;
    l.launched = true;
    l.size = size;
    l.rank = env_int(n.rank, 0);
    l.local_rank = env_int(n.local_rank, l.rank);
    return l;
  }
  return l;
}

namespace {
std::atomic<bool> g_wait_spin{false};
std::atomic<double> g_wait_timeout{WaitConfig{}.timeout_seconds};
}  // namespace

void set_wait(const WaitConfig& w) {
  MINIDL_CHECK(w.timeout_seconds >= 0, "--dist-timeout: ", w.timeout_seconds,
               " seconds; give 0 (wait forever) or more");
  g_wait_spin = w.spin;
  g_wait_timeout = w.timeout_seconds;
}

WaitConfig wait_config() {
  WaitConfig w;
  w.spin = g_wait_spin;
  w.timeout_seconds = g_wait_timeout;
  return w;
}

bool built_with_mpi() { return MINIDL_WITH_MPI != 0; }
bool built_with_nccl() { return MINIDL_WITH_NCCL != 0; }

bool gpu_uses_nccl() {
  const char* v = std::getenv("MINIDL_DIST_GPU");
  const std::string how = v == nullptr ? "" : v;
  MINIDL_CHECK(how.empty() || how == "nccl" || how == "host", "MINIDL_DIST_GPU='", how,
               "': expected nccl or host (or unset)");
  return built_with_nccl() && how != "host";
}

// ------------------------------------------------------------------------------------ MPI

#if MINIDL_WITH_MPI

struct Comm::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  bool owned = false;  // made by MPI_Comm_dup: freed with the Comm
  ~Impl() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned && !finalized) MPI_Comm_free(&comm);
  }
};

namespace {

int g_thread_level = 0;  // what MPI_Init_thread granted

void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(str("MPI: ", call, " failed: ", std::string(msg, static_cast<size_t>(len))));
}
#define MINIDL_MPI_CHECK(call) mpi_check((call), #call)

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::I32:
      return MPI_INT;
    default:
      throw Error(str("all-reduce: takes float32, float64 or int32 tensors, got ", dtype_name(t)));
  }
}

// A collective pending for longer than --dist-timeout: says which, who waits and for whom, and
// ends every rank (dist/comm.h, "Waiting").
[[noreturn]] void timed_out(MPI_Comm c, const char* what, int64_t bytes, double waited) {
  int rank = 0, size = 1;
  MPI_Comm_rank(c, &rank);
  MPI_Comm_size(c, &size);
  // Which peers have not reached the collective is known only with 2 ranks: MPI does not say how
  // far a pending collective has got. With more, every waiting rank prints this message, so the
  // ranks that print none are the ones.
  const std::string peers =
      size == 2 ? str("rank ", 1 - rank, " has not reached it")
                : str("one or more of the other ", size - 1,
                      " ranks have not reached it (the ranks that print no such message)");
  std::fprintf(stderr,
               "dist (rank %d of %d): error: %s (%lld bytes) has waited %.0f s for the other "
               "ranks, more than --dist-timeout %g s: %s. A rank that is alive but stopped, "
               "deadlocked or far slower. Ending every rank (MPI_Abort); if the ranks are only "
               "slow, raise --dist-timeout (0 waits forever).\n",
               rank, size, what, static_cast<long long>(bytes), waited, g_wait_timeout.load(),
               peers.c_str());
  std::fflush(stderr);
  // mpirun forwards the ranks' output asynchronously: give it the message before the kill.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  MPI_Abort(c, 1);
  std::abort();
}

// Waits for a started collective by polling MPI_Test ("Waiting" in dist/comm.h): a spin of 50 us,
// then sleeps doubling from 1 us to 250 us between polls (Linux adds its 50 us timer slack to
// each), so a rank waiting for a slower peer leaves the core to the work of its own threads.
// Each poll also drives Open MPI's progress of the non-blocking collective; 250 us against a
// step of tens of milliseconds or more.
void wait(MPI_Request& req, MPI_Comm c, const char* what, int64_t bytes) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const bool spin = g_wait_spin;
  const double timeout = g_wait_timeout;
  auto pause = std::chrono::microseconds(1);
  for (;;) {
    int done = 0;
    MINIDL_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (timeout > 0 && waited > timeout) timed_out(c, what, bytes, waited);
    if (spin || waited < 50e-6) continue;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(250));
  }
}

// MPI counts are int: a buffer of more than INT_MAX elements goes in pieces.
void allreduce_host(void* data, int64_t n, MPI_Datatype type, size_t elem, MPI_Op op, MPI_Comm c) {
  auto* p = static_cast<char*>(data);
  for (int64_t done = 0; done < n;) {
    const int count = static_cast<int>(std::min<int64_t>(n - done, INT_MAX));
    MPI_Request req = MPI_REQUEST_NULL;
    MINIDL_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p + done * elem, count, type, op, c, &req));
    wait(req, c, "all-reduce", count * static_cast<int64_t>(elem));
    done += count;
  }
}

void bcast(void* data, int count, MPI_Datatype type, MPI_Comm c, const char* what) {
  int elem = 0;
  MINIDL_MPI_CHECK(MPI_Type_size(type, &elem));
  MPI_Request req = MPI_REQUEST_NULL;
  MINIDL_MPI_CHECK(MPI_Ibcast(data, count, type, 0, c, &req));
  wait(req, c, what, int64_t{count} * elem);
}

template <typename T>
void divide(T* p, int64_t n, int size) {
  if constexpr (std::is_floating_point_v<T>) {
    const T inv = T(1) / static_cast<T>(size);  // exact for a power-of-two size
    for (int64_t i = 0; i < n; ++i) p[i] *= inv;
  } else {
    for (int64_t i = 0; i < n; ++i) p[i] /= size;
  }
}

// A host tensor (or a host copy) in place.
void allreduce_host_tensor(Tensor& t, Reduce op, int size, MPI_Comm c) {
  allreduce_host(t.raw_data(), t.numel(), mpi_type(t.dtype()), dtype_size(t.dtype()),
                 op == Reduce::Max ? MPI_MAX : MPI_SUM, c);
  if (op != Reduce::Mean) return;
  switch (t.dtype()) {
    case DType::F32:
      divide(t.data<float>(), t.numel(), size);
      break;
    case DType::F64:
      divide(t.data<double>(), t.numel(), size);
      break;
    default:
      divide(t.data<int32_t>(), t.numel(), size);
      break;
  }
}

}  // namespace

Comm::Comm() = default;
Comm::~Comm() = default;
Comm::Comm(Comm&&) noexcept = default;
Comm& Comm::operator=(Comm&&) noexcept = default;

bool Comm::threads_multiple() const {
  return impl_ != nullptr && g_thread_level >= MPI_THREAD_MULTIPLE;
}

void Comm::allreduce(Tensor& t, Reduce op) { allreduce(t, op, nullptr); }

void Comm::allreduce(Tensor& t, Reduce op, cudaStream stream) {
  if (!distributed() || t.numel() == 0) return;
  if (!t.is_cuda()) return allreduce_host_tensor(t, op, size_, impl_->comm);
#if MINIDL_WITH_NCCL
  if (gpu_uses_nccl()) {
    MPI_Comm c = impl_->comm;
    const auto id_bcast = [c](void* bytes, size_t n) {
      bcast(bytes, static_cast<int>(n), MPI_BYTE, c, "broadcast of the NCCL id");
    };
    return detail::nccl_allreduce(t, op, rank_, size_, id_bcast, stream);
  }
#endif
  // Host-staged (no NCCL, or MINIDL_DIST_GPU=host): on the device's stream (dist/comm.h).
  (void)stream;
  Tensor host = t.to(Device::cpu());
  allreduce_host_tensor(host, op, size_, impl_->comm);
  t.copy_(host);
}

void Comm::allreduce(std::vector<double>& v, Reduce op) {
  if (!distributed() || v.empty()) return;
  allreduce_host(v.data(), static_cast<int64_t>(v.size()), MPI_DOUBLE, sizeof(double),
                 op == Reduce::Max ? MPI_MAX : MPI_SUM, impl_->comm);
  if (op == Reduce::Mean) divide(v.data(), static_cast<int64_t>(v.size()), size_);
}

void Comm::allreduce(std::vector<int64_t>& v, Reduce op) {
  if (!distributed() || v.empty()) return;
  allreduce_host(v.data(), static_cast<int64_t>(v.size()), MPI_INT64_T, sizeof(int64_t),
                 op == Reduce::Max ? MPI_MAX : MPI_SUM, impl_->comm);
  if (op == Reduce::Mean) divide(v.data(), static_cast<int64_t>(v.size()), size_);
}

std::string Comm::broadcast(const std::string& s) {
  if (!distributed()) return s;
  int64_t n = static_cast<int64_t>(s.size());
  bcast(&n, 1, MPI_INT64_T, impl_->comm, "broadcast of a length");
  std::string out = rank_ == 0 ? s : std::string(static_cast<size_t>(n), '\0');
  MINIDL_CHECK(n <= INT_MAX, "broadcast: ", n, " bytes is more than one MPI message takes");
  bcast(out.data(), static_cast<int>(n), MPI_CHAR, impl_->comm, "broadcast");
  return out;
}

void Comm::barrier() {
  if (!distributed()) return;
  MPI_Request req = MPI_REQUEST_NULL;
  MINIDL_MPI_CHECK(MPI_Ibarrier(impl_->comm, &req));
  wait(req, impl_->comm, "barrier", 0);
}

void Comm::abort(int code) {
  if (distributed()) MPI_Abort(impl_->comm, code);
  std::exit(code);
}

Comm Comm::duplicate() const {
  Comm c;
  c.rank_ = rank_, c.size_ = size_, c.local_rank_ = local_rank_;
  if (impl_ == nullptr) return c;
  c.impl_ = std::make_unique<Impl>();
  MINIDL_MPI_CHECK(MPI_Comm_dup(impl_->comm, &c.impl_->comm));
  c.impl_->owned = true;
  return c;
}

void init() {
  static bool done = false;
  if (done) return;
  done = true;
  const Launch l = launch_from_environment();
  if (!l.launched) return;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    MINIDL_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &g_thread_level));
    std::atexit([] {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Finalize();
    });
  } else {
    MPI_Query_thread(&g_thread_level);
  }
  Comm& w = world();
  w.impl_ = std::make_unique<Comm::Impl>();
  w.impl_->comm = MPI_COMM_WORLD;
  MINIDL_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank_));
  MINIDL_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w.size_));
  // The rank among the processes of this machine (each takes cuda:<local rank>).
  MPI_Comm node = MPI_COMM_NULL;
  MINIDL_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  MINIDL_MPI_CHECK(MPI_Comm_rank(node, &w.local_rank_));
  MPI_Comm_free(&node);
}

#else  // ------------------------------------------------------------------ built without MPI

struct Comm::Impl {};

Comm::Comm() = default;
Comm::~Comm() = default;
Comm::Comm(Comm&&) noexcept = default;
Comm& Comm::operator=(Comm&&) noexcept = default;
bool Comm::threads_multiple() const { return false; }
void Comm::allreduce(Tensor&, Reduce) {}
void Comm::allreduce(Tensor&, Reduce, cudaStream) {}
void Comm::allreduce(std::vector<double>&, Reduce) {}
void Comm::allreduce(std::vector<int64_t>&, Reduce) {}
std::string Comm::broadcast(const std::string& s) { return s; }
void Comm::barrier() {}
void Comm::abort(int code) { std::exit(code); }
Comm Comm::duplicate() const { return Comm(); }

void init() {
  const Launch l = launch_from_environment();
  if (l.launched && l.size > 1)
    throw Error(str("this build has no MPI, but the launcher started ", l.size,
                    " processes (this is rank ", l.rank,
                    "): install libopenmpi-dev and reconfigure (cmake -DMINIDL_MPI=ON), or run "
                    "one process without mpirun"));
}

#endif

std::string Comm::describe() const { return str("rank ", rank_, " of ", size_); }

Comm& world() {
  static Comm w;
  return w;
}

}  // namespace minidl::dist

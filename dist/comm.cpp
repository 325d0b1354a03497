// The collective layer (dist/comm.h): MPI for host buffers and launch, NCCL (dist/nccl.cpp) or a
// host-staged MPI_Allreduce for GPU buffers; a single-rank identity without mpirun or MPI.
#include "dist/comm.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <functional>
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

bool built_with_mpi() { return MINIDL_WITH_MPI != 0; }
bool built_with_nccl() { return MINIDL_WITH_NCCL != 0; }

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

// MPI counts are int: a buffer of more than INT_MAX elements goes in pieces.
void allreduce_host(void* data, int64_t n, MPI_Datatype type, size_t elem, MPI_Op op, MPI_Comm c) {
  auto* p = static_cast<char*>(data);
  for (int64_t done = 0; done < n;) {
    const int count = static_cast<int>(std::min<int64_t>(n - done, INT_MAX));
    MINIDL_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + done * elem, count, type, op, c));
    done += count;
  }
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

void Comm::allreduce(Tensor& t, Reduce op) {
  if (!distributed() || t.numel() == 0) return;
  if (!t.is_cuda()) return allreduce_host_tensor(t, op, size_, impl_->comm);
#if MINIDL_WITH_NCCL
  MPI_Comm c = impl_->comm;
  const int root_rank = 0;
  detail::nccl_allreduce(t, op, rank_, size_, [c, root_rank](void* bytes, size_t n) {
    MINIDL_MPI_CHECK(MPI_Bcast(bytes, static_cast<int>(n), MPI_BYTE, root_rank, c));
  });
#else
  // Host-staged: no NCCL in this build.
  Tensor host = t.to(Device::cpu());
  allreduce_host_tensor(host, op, size_, impl_->comm);
  t.copy_(host);
#endif
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
  MINIDL_MPI_CHECK(MPI_Bcast(&n, 1, MPI_INT64_T, 0, impl_->comm));
  std::string out = rank_ == 0 ? s : std::string(static_cast<size_t>(n), '\0');
  MINIDL_CHECK(n <= INT_MAX, "broadcast: ", n, " bytes is more than one MPI message takes");
  MINIDL_MPI_CHECK(MPI_Bcast(out.data(), static_cast<int>(n), MPI_CHAR, 0, impl_->comm));
  return out;
}

void Comm::barrier() {
  if (distributed()) MINIDL_MPI_CHECK(MPI_Barrier(impl_->comm));
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

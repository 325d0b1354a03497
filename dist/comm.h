// The collective layer of data-parallel training (docs/DISTRIBUTED.md): who this process is
// (rank, size, local rank on its machine) and the few collectives the engine needs.
//
// No home-made transport: MPI launches the processes (`mpirun -np N build/train ...`) and does
// the collectives of host buffers; NCCL (from the CUDA toolkit) does those of GPU buffers, on the
// device's stream, with its id handed out by MPI_Bcast (as llm.c does it). Without NCCL (the
// emulator build, a toolkit without it) a GPU buffer is reduced through host memory: copied to
// the host, MPI_Allreduce, copied back ("host-staged").
//
// A process not started by mpirun (no OMPI_COMM_WORLD_SIZE / PMI_SIZE in its environment), and
// every process of a build without MPI, is rank 0 of 1: every collective is the identity and MPI
// is never initialised, so `train` without mpirun is exactly the single process it always was.
//
// Waiting. Every host collective is started non-blocking (MPI_Iallreduce, MPI_Ibcast,
// MPI_Ibarrier) and waited for by polling MPI_Test: a short spin (a collective whose peers are
// already there returns at once), then a sleep between polls that doubles up to 250 us. A blocking
// MPI call would busy-poll instead (Open MPI's progress loop spins): with one core per rank, a
// communication thread spinning in MPI_Allreduce while the peer is still in backward takes half
// of the core from this rank's own backward (docs/DISTRIBUTED.md, "CPU scaling"). The wait also
// has a deadline (--dist-timeout): a collective still pending after it means a peer rank is alive
// but not coming (stopped, deadlocked, far slower), and the rank prints which collective, itself
// and the peers it waits for, then ends the job (MPI_Abort). GPU buffers on NCCL are not covered:
// they are queued on a stream (NCCL has its own NCCL_TIMEOUT for its proxy only).
//
// Every rank must call the same collectives in the same order (MPI's rule). world() is used by one
// thread at a time; a second thread (the gradient buckets of dist/grad_sync.h) uses a communicator
// of its own, duplicate(), which needs MPI_THREAD_MULTIPLE (threads_multiple()).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/cuda_context.h"
#include "core/tensor.h"

namespace minidl::dist {

enum class Reduce { Sum, Mean, Max };

// How every rank of this process waits for a collective (above, "Waiting").
struct WaitConfig {
  bool spin = false;             // poll without sleeping (for comparison: dist_bench *-spin modes)
  double timeout_seconds = 300;  // --dist-timeout; 0 waits forever
};
void set_wait(const WaitConfig& w);
WaitConfig wait_config();

// What the launcher says about this process, read from the environment before MPI starts.
struct Launch {
  bool launched = false;  // started by mpirun (or another PMI launcher)
  int rank = 0, size = 1, local_rank = 0;
};
Launch launch_from_environment();

bool built_with_mpi();
bool built_with_nccl();
// Whether a GPU buffer is all-reduced by NCCL: in a build with NCCL, unless the environment says
// MINIDL_DIST_GPU=host (the host-staged path: several ranks on one GPU, which NCCL refuses, as
// scripts/gpu-check.sh runs them). Throws on another value.
bool gpu_uses_nccl();

void init();

class Comm {
 public:
  Comm();  // rank 0 of 1
  ~Comm();
  Comm(Comm&&) noexcept;
  Comm& operator=(Comm&&) noexcept;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  bool distributed() const { return size_ > 1; }
  // MPI_THREAD_MULTIPLE was granted: a duplicate() may run collectives on another thread while
  // this communicator runs its own.
  bool threads_multiple() const;

  // In place over all ranks: Sum, Mean (sum / size) or Max of each element. Any contiguous
  // float32, float64 or int32 tensor (a slice of a flat buffer too): on the CPU MPI_Allreduce; on
  // a GPU ncclAllReduce on the device's stream (queued, not waited for) when built with NCCL,
  // otherwise host-staged. Max on float tensors only through MPI.
  void allreduce(Tensor& t, Reduce op);
  // The same, with a GPU tensor's ncclAllReduce queued on `stream` (the gradient buckets'
  // communication stream, dist/cuda_streams.h) instead of the device's. A host-staged GPU tensor
  // is copied on the device's stream as above: the caller that wants another stream copies
  // through dist/cuda_streams.h itself (GradientSync does).
  void allreduce(Tensor& t, Reduce op, cudaStream stream);
  void allreduce(std::vector<double>& v, Reduce op);
  void allreduce(std::vector<int64_t>& v, Reduce op);
  // Rank 0's string, on every rank.
  std::string broadcast(const std::string& s);
  void barrier();
  // Ends every rank of the job (MPI_Abort); a single process exits with `code`.
  [[noreturn]] void abort(int code);
  // A new communicator over the same ranks (MPI_Comm_dup; collective).
  Comm duplicate() const;
  // "rank 1 of 2"
  std::string describe() const;

  struct Impl;  // the MPI communicator (dist/comm.cpp)

 private:
  friend void init();
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  std::unique_ptr<Impl> impl_;
};

// The job's communicator: all ranks started by mpirun, or this process alone. init() makes it
// (main() of `train` calls it; tests under mpirun too); before init() it is rank 0 of 1.
Comm& world();
// Starts MPI (MPI_Init_thread, asking for MPI_THREAD_MULTIPLE) when the process was launched by
// mpirun, once; MPI_Finalize runs at exit. Throws, saying how to rebuild, when mpirun started
// several processes of a build without MPI.
void init();

}  // namespace minidl::dist

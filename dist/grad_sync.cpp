// Bucketed gradient averaging (dist/grad_sync.h).
#include "dist/grad_sync.h"

#include <algorithm>
#include <chrono>

#include "dist/cuda_streams.h"

namespace minidl::dist {

std::vector<std::pair<int64_t, int64_t>> bucket_ranges(int64_t numel, size_t elem_size,
                                                       int64_t bucket_bytes) {
  const int64_t per = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(elem_size));
  std::vector<std::pair<int64_t, int64_t>> r;
  for (int64_t end = numel; end > 0; end -= per)
    r.emplace_back(std::max<int64_t>(0, end - per), end);
  return r;
}

GradientSync::GradientSync(Module& model, Comm& comm, const GradSyncConfig& cfg)
    : model_(model), flat_(model.flat_parameters()), comm_(comm), cfg_(cfg) {
  MINIDL_CHECK(cfg.bucket_bytes > 0, "gradient buckets: the bucket size must be > 0 bytes, got ",
               cfg.bucket_bytes);
  ranges_ = bucket_ranges(flat_.numel(), dtype_size(flat_.dtype()), cfg.bucket_bytes);
  const size_t np = flat_.size();
  param_buckets_.resize(np);
  bucket_total_.assign(ranges_.size(), 0);
  for (size_t p = 0; p < np; ++p) {
    param_index_[flat_.parameters()[p].param] = p;
    const int64_t b = flat_.offset(p), e = flat_.offset(p + 1);
    if (b == e) continue;
    for (size_t k = 0; k < ranges_.size(); ++k)
      if (ranges_[k].first < e && b < ranges_[k].second) {
        param_buckets_[p].push_back(k);
        ++bucket_total_[k];
      }
  }
  overlap_ = cfg.overlap && comm.distributed();
  const bool cuda = flat_.device().is_cuda();
  host_staged_ = cuda && !gpu_uses_nccl();
  if (overlap_ && (!cuda || host_staged_)) {
    if (comm.threads_multiple()) {
      threaded_ = true;
      thread_comm_ = comm.duplicate();
      worker_ = std::thread([this] { worker_loop(); });
    } else {
      overlap_ = false;
      why_not_ = "MPI did not grant MPI_THREAD_MULTIPLE, which the communication thread needs";
    }
  }
  if (overlap_ && cuda) {
    gpu_ = std::make_unique<detail::CommStream>(flat_.device().index, ranges_.size());
    if (host_staged_) staging_ = Tensor::empty(Shape{flat_.numel()}, flat_.dtype());
  }
  if (overlap_) model_.set_backward_hook([this](Module& m) { on_backward_done(m); });
  param_ready_.assign(np, 0);
  bucket_pending_ = bucket_total_;
  bucket_launched_.assign(ranges_.size(), 0);
}

GradientSync::~GradientSync() {
  if (overlap_) model_.set_backward_hook({});
  if (worker_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  gpu_.reset();  // waits for the communication stream
}

std::string GradientSync::describe() const {
  const double mb =
      static_cast<double>(flat_.numel()) * static_cast<double>(dtype_size(flat_.dtype())) / 1e6;
  std::string how;
  if (!comm_.distributed())
    how = "one rank: nothing to average";
  else if (overlap_ && gpu_ != nullptr)
    how = host_staged_ ? "overlapped with backward (a communication thread copies each bucket on "
                         "a communication stream, ordered by events)"
                       : "overlapped with backward (queued on a communication stream, ordered "
                         "by events)";
  else if (overlap_)
    how = "overlapped with backward (a communication thread, MPI)";
  else if (!why_not_.empty())
    how = "after backward, not overlapped: " + why_not_;
  else
    how = "after backward, in one all-reduce (--no-overlap)";
  const char* engine = flat_.device().is_cpu() ? "MPI_Allreduce"
                       : gpu_uses_nccl()       ? "ncclAllReduce"
                                               : "host-staged MPI_Allreduce";
  return str("gradients: ", engine, " mean over ", comm_.size(), " ranks of ", mb, " MB in ",
             ranges_.size(), " bucket(s) of <= ", static_cast<double>(cfg_.bucket_bytes) / 1e6,
             " MB, ", how);
}

void GradientSync::start() {
  if (error_) std::rethrow_exception(error_);
  std::fill(param_ready_.begin(), param_ready_.end(), 0);
  bucket_pending_ = bucket_total_;
  std::fill(bucket_launched_.begin(), bucket_launched_.end(), 0);
  launched_ = launched_early_ = 0;
  std::lock_guard<std::mutex> lock(mutex_);
  queue_.clear();
  done_ = 0;
}

void GradientSync::on_backward_done(Module& m) {
  auto it = module_params_.find(&m);
  if (it == module_params_.end()) {
    std::vector<size_t> idx;
    for (const NamedParameter& np : m.named_parameters()) {
      const auto f = param_index_.find(np.param);
      MINIDL_CHECK(f != param_index_.end(), "gradient buckets: parameter '", np.name, "' of ",
                   m.who(), " is not in the model's flat buffer");
      idx.push_back(f->second);
    }
    it = module_params_.emplace(&m, std::move(idx)).first;
  }
  for (size_t p : it->second) {
    if (param_ready_[p]) continue;
    param_ready_[p] = 1;
    for (size_t k : param_buckets_[p])
      if (--bucket_pending_[k] == 0) launch(k);
  }
}

void GradientSync::launch(size_t k) {
  if (bucket_launched_[k]) return;
  bucket_launched_[k] = 1;
  ++launched_;
  if (gpu_ != nullptr) gpu_->bucket_ready(k);
  if (threaded_) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(k);
    }
    cv_.notify_all();
  } else {
    reduce(k, comm_);
  }
}

void GradientSync::reduce(size_t k, Comm& comm) {
  Tensor slice = flat_.grads().slice(ranges_[k].first, ranges_[k].second);
  if (gpu_ == nullptr) return comm.allreduce(slice, Reduce::Mean);
  if (!host_staged_) return comm.allreduce(slice, Reduce::Mean, gpu_->stream());
  Tensor host = staging_.slice(ranges_[k].first, ranges_[k].second);
  const size_t bytes = static_cast<size_t>(slice.numel()) * dtype_size(slice.dtype());
  gpu_->copy_to_host(host.raw_data(), slice.raw_data(), bytes);
  comm.allreduce(host, Reduce::Mean);
  gpu_->copy_to_device(slice.raw_data(), host.raw_data(), bytes);
}

void GradientSync::worker_loop() {
  for (;;) {
    size_t k = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      k = queue_.front();
      queue_.pop_front();
    }
    try {
      reduce(k, thread_comm_);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++done_;
    }
    cv_.notify_all();
  }
}

void GradientSync::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  if (!overlap_) {
    Tensor all = flat_.grads();
    comm_.allreduce(all, Reduce::Mean);
  } else {
    launched_early_ = launched_;
    // Bucket order, the same on every rank.
    for (size_t k = 0; k < ranges_.size(); ++k) launch(k);
    if (threaded_) {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return done_ == ranges_.size(); });
    }
    // The optimizer's kernels (the compute stream) after every bucket's all-reduce.
    if (gpu_ != nullptr && !error_) gpu_->join();
  }
  exposed_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (error_) std::rethrow_exception(error_);
}

#if !MINIDL_WITH_CUDA
// No GPU buffer exists in a build without CUDA, so no CommStream is ever made; these let the code
// above link.
namespace detail {
CommStream::CommStream(int, size_t) {
  throw Error("gradient buckets: a GPU buffer in a build without CUDA");
}
CommStream::~CommStream() = default;
void CommStream::bucket_ready(size_t) {}
void CommStream::copy_to_host(void*, const void*, size_t) {}
void CommStream::copy_to_device(void*, const void*, size_t) {}
void CommStream::join() {}
}  // namespace detail
#endif

}  // namespace minidl::dist

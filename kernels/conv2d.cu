// CUDA convolution: the primitives of the im2col + GEMM algorithm (conv2d.cpp calls them for the
// cuda-handwritten and cuda-cublas backends) and the cuDNN backend (cuda-vendor).
//
// Primitives (all memory-bound; the goal is coalesced access and no atomics):
//   im2col     one thread per (c, n, p, q): it reads the R*S input pixels of its window and writes
//              them down the R*S rows of col. Consecutive threads have consecutive q, so both the
//              writes (one col row at a time) and, for stride 1, the reads are contiguous.
//   col2im     a gather: one thread per input pixel (n, c, h, w) sums every col entry that was
//              copied from it (the output positions whose window covers the pixel) and writes the
//              pixel once. Scattering from col instead would need atomicAdd (overlapping windows
//              hit the same pixel) and would make the result depend on the order of the additions.
//   NHWC (channels-last, conv2d.h: col (nb*P*Q, C*R*S), one row per output pixel):
//   im2col_nhwc   one thread per (output pixel, c), c fastest: consecutive threads read the
//              consecutive channels of one input pixel (coalesced) and write R*S apart in their
//              row.
//   col2im_nhwc   a gather as above, one thread per dx element (n, h, w, c), c fastest, so the
//              writes are contiguous.
// (the (n,k,l) <-> (k,n,l) rearrangements and the channel sum are in layout.cu).
// conv2d.cpp keeps every per-chunk buffer below 2^31 elements, so the index arithmetic is 32-bit
// (64-bit divisions would dominate these kernels); only the grid-stride counter is 64-bit, so that
// stepping past the end cannot overflow.
//
// cuDNN path: descriptors and algorithms are built once per (device, geometry, layout, TF32
// setting) and cached. The algorithm of each direction is chosen by cudnnFind*AlgorithmEx, which
// times the candidates on the real inputs (writing into a scratch output, so dw's accumulated value
// is never touched), keeping only full-fp32 (FMA) algorithms unless the device's settings allow
// TF32. Workspaces come from the caching allocator at every call. Backward filter runs with
// beta = 1 to accumulate into dw.
//
// NHWC (channels-last; never run on a GPU yet, compiled only, docs/GPU.md): x, y, dx, dy are
// described as CUDNN_TENSOR_NHWC, and so is the filter (KRSC), as PyTorch and NVIDIA's own NHWC
// benchmark configurations pair them (cuDNN's NHWC tensor-core kernels want KRSC filters). minidl's
// w stays KCRS (conv2d.h), so each call transposes it into a KRSC copy (convert_transpose, tested
// on the emulator), and backward filter writes a KRSC scratch (beta 0) that is transposed back and
// added into dw (add_scaled), keeping the gradient rule.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/cuda_check.h"
#include "kernels/conv2d.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace minidl::cuda {

namespace {

constexpr int kThreads = 256;

// 32-bit copy of the geometry for the kernels.
struct Geo {
  int C, H, W, K, R, S, P, Q, stride, pad;
};

Geo geo32(const ConvGeometry& g) {
  return {as_int(g.C, "C"), as_int(g.H, "H"), as_int(g.W, "W"), as_int(g.K, "K"), as_int(g.R, "R"),
          as_int(g.S, "S"), as_int(g.P, "P"), as_int(g.Q, "Q"), g.stride,         g.pad};
}

// The R*S taps of one channel's window at output position (p, q), in (r, s) order, to dst,
// dst + step, dst + 2 step, ...: x[h, w] with h = p*stride - pad + r, w = q*stride - pad + s, or 0
// outside the image. `xc` is the channel's pixel (0, 0) and `pixel` the distance between two
// pixels (1 in NCHW, C in NHWC). Both im2col kernels copy with it; only the addresses differ.
// T: float, or uint16_t for bfloat16/float16 (a copy of the bits; the padding's 0 bits are +0 in
// both formats).
template <typename T>
__device__ void copy_window(T* dst, int64_t step, const T* xc, int pixel, int p, int q,
                            const Geo& g) {
  const int h0 = p * g.stride - g.pad, w0 = q * g.stride - g.pad;
  for (int r = 0; r < g.R; ++r) {
    const int h = h0 + r;
    const bool h_in = h >= 0 && h < g.H;
    for (int s = 0; s < g.S; ++s) {
      const int w = w0 + s;
      *dst = (h_in && w >= 0 && w < g.W) ? xc[(h * g.W + w) * pixel] : T(0);
      dst += step;
    }
  }
}

// col (C*R*S, nb*P*Q): col[(c, r, s), n*L + p*Q + q] = x[n, c, p*stride - pad + r, q*stride - pad +
// s]; one thread per (c, column), the taps R*S rows apart.
template <typename T>
__global__ void im2col_kernel(T* __restrict__ col, const T* __restrict__ x, int nb, Geo g) {
  const int L = g.P * g.Q, ld = nb * L;
  const int total = g.C * ld;
  for (int64_t it = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; it < total;
       it += int64_t(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(it);
    const int c = i / ld, j = i % ld;  // j = n*L + p*Q + q: the column
    const int n = j / L, pq = j % L, p = pq / g.Q, q = pq % g.Q;
    const T* xc = x + (static_cast<int64_t>(n) * g.C + c) * g.H * g.W;
    copy_window(col + static_cast<int64_t>(c) * g.R * g.S * ld + j, ld, xc, 1, p, q, g);
  }
}

// The sum, over the col entries copied from input pixel (h, w), of at(p, q, r, s): the output
// positions (p, q) whose window covers the pixel, at tap r = h + pad - p*stride, s = w + pad -
// q*stride. For a given h the valid p are those with 0 <= r < R, i.e. p in
// [ceil((h + pad - R + 1) / stride), (h + pad) / stride]; likewise q. Both col2im kernels gather
// with it; only where col keeps the entry differs.
template <typename At>
__device__ float sum_covering_windows(int h, int w, const Geo& g, At at) {
  const int hp = h + g.pad, wp = w + g.pad;
  const int p_begin = hp < g.R ? 0 : (hp - g.R) / g.stride + 1;
  const int p_end = min(hp / g.stride + 1, g.P);
  const int q_begin = wp < g.S ? 0 : (wp - g.S) / g.stride + 1;
  const int q_end = min(wp / g.stride + 1, g.Q);
  float sum = 0.f;
  for (int p = p_begin; p < p_end; ++p)
    for (int q = q_begin; q < q_end; ++q) sum += at(p, q, hp - p * g.stride, wp - q * g.stride);
  return sum;
}

// dx[n, c, h, w] = sum of col[(c, r, s), n*L + p*Q + q] over the windows covering (h, w).
__global__ void col2im_kernel(float* __restrict__ dx, const float* __restrict__ col, int nb,
                              Geo g) {
  const int L = g.P * g.Q, ld = nb * L;
  const int total = nb * g.C * g.H * g.W;
  for (int64_t it = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; it < total;
       it += int64_t(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(it);
    const int w = i % g.W, h = (i / g.W) % g.H, c = (i / (g.W * g.H)) % g.C,
              n = i / (g.W * g.H * g.C);
    dx[i] = sum_covering_windows(h, w, g, [&](int p, int q, int r, int s) {
      return col[static_cast<int64_t>((c * g.R + r) * g.S + s) * ld + n * L + p * g.Q + q];
    });
  }
}

// NHWC: col[(n*P + p)*Q + q, (c*R + r)*S + s] = x[n, h, w, c] with h = p*stride - pad + r,
// w = q*stride - pad + s (0 outside). Thread i = j*C + c: output pixel j, channel c.
template <typename T>
__global__ void im2col_nhwc_kernel(T* __restrict__ col, const T* __restrict__ x, int nb, Geo g) {
  const int L = g.P * g.Q, RS = g.R * g.S;
  const int total = nb * L * g.C;
  for (int64_t it = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; it < total;
       it += int64_t(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(it);
    const int c = i % g.C, j = i / g.C;
    const int n = j / L, pq = j % L, p = pq / g.Q, q = pq % g.Q;
    const T* xc = x + static_cast<int64_t>(n) * g.H * g.W * g.C + c;
    copy_window(col + static_cast<int64_t>(j) * g.C * RS + c * RS, 1, xc, g.C, p, q, g);
  }
}

// NHWC: dx[n, h, w, c] = sum of col[(n*P + p)*Q + q, (c*R + r)*S + s] over the windows covering
// (h, w). Thread i = ((n*H + h)*W + w)*C + c.
__global__ void col2im_nhwc_kernel(float* __restrict__ dx, const float* __restrict__ col, int nb,
                                   Geo g) {
  const int RS = g.R * g.S, CRS = g.C * RS;
  const int total = nb * g.H * g.W * g.C;
  for (int64_t it = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; it < total;
       it += int64_t(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(it);
    const int c = i % g.C, pix = i / g.C;
    const int w = pix % g.W, h = (pix / g.W) % g.H, n = pix / (g.W * g.H);
    dx[i] = sum_covering_windows(h, w, g, [&](int p, int q, int r, int s) {
      return col[static_cast<int64_t>((n * g.P + p) * g.Q + q) * CRS + c * RS + r * g.S + s];
    });
  }
}

}  // namespace

namespace {
template <typename T>
void launch_im2col(T* col, const T* x, int64_t nb, const ConvGeometry& g, CudaContext& ctx) {
  const int64_t total = g.C * nb * g.P * g.Q;
  if (total == 0) return;
  as_int(g.C * g.R * g.S * nb * g.P * g.Q, "im2col column buffer size");
  as_int(nb * g.C * g.H * g.W, "im2col input chunk size");
  // The same number of threads in both arrangements: one per (image, channel, output pixel).
  if (g.layout == Layout::NHWC)
    im2col_nhwc_kernel<T><<<grid_stride_blocks(ctx, total, kThreads), kThreads, 0, ctx.stream>>>(
        col, x, as_int(nb, "nb"), geo32(g));
  else
    im2col_kernel<T><<<grid_stride_blocks(ctx, total, kThreads), kThreads, 0, ctx.stream>>>(
        col, x, as_int(nb, "nb"), geo32(g));
  MINIDL_CHECK_LAUNCH(ctx.stream);
}
}  // namespace

void im2col(float* col, const float* x, int64_t nb, const ConvGeometry& g, CudaContext& ctx) {
  launch_im2col<float>(col, x, nb, g, ctx);
}

void im2col16(uint16_t* col, const uint16_t* x, int64_t nb, const ConvGeometry& g,
              CudaContext& ctx) {
  launch_im2col<uint16_t>(col, x, nb, g, ctx);
}

void col2im(float* dx, const float* col, int64_t nb, const ConvGeometry& g, CudaContext& ctx) {
  const int64_t total = nb * g.C * g.H * g.W;
  if (total == 0) return;
  as_int(total, "col2im input chunk size");
  as_int(g.C * g.R * g.S * nb * g.P * g.Q, "col2im column buffer size");
  if (g.layout == Layout::NHWC)
    col2im_nhwc_kernel<<<grid_stride_blocks(ctx, total, kThreads), kThreads, 0, ctx.stream>>>(
        dx, col, as_int(nb, "nb"), geo32(g));
  else
    col2im_kernel<<<grid_stride_blocks(ctx, total, kThreads), kThreads, 0, ctx.stream>>>(
        dx, col, as_int(nb, "nb"), geo32(g));
  MINIDL_CHECK_LAUNCH(ctx.stream);
}

// ---------------------------------------------------------------- cuDNN

namespace {

// cuDNN keeps its workspace requests within this, like the im2col column buffer (conv2d.cpp).
constexpr size_t kMaxWorkspace = size_t(512) << 20;

struct AlgoChoice {
  int algo = -1;  // a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_FMA_MATH;
};

// Descriptors of one geometry plus the algorithm chosen for each direction (on first use; a
// once_flag per direction, so a failed search is retried and concurrent first calls search once).
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool tf32 = false;
  DType dtype = DType::F32;    // x, y and the filter: float32, or bfloat16/float16 (forward and
                               // backward data only; the accumulation is float32 in every case)
  bool nhwc = false;           // x, y and the filter described channels-last (the filter as KRSC)
  bool deterministic = false;  // choose by algorithm id, not by time (core/device_settings.h)
  std::once_flag fwd_once, bwd_data_once, bwd_filter_once;
  AlgoChoice fwd, bwd_data, bwd_filter;

  ConvPlan() = default;
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;
  ~ConvPlan() {  // destructors do not throw: statuses are ignored here
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }

  // Tensor-op math allowed in the search: with --tf32 for float32, always for 16-bit data (it is
  // what 16-bit convolutions are for; the products still accumulate in float32).
  bool tensor_ops() const { return tf32 || dtype != DType::F32; }

  void init(const ConvGeometry& g, bool allow_tf32_math, DType t) {
    for (int64_t v : {g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q, g.N * g.C * g.H * g.W,
                      g.N * g.K * g.P * g.Q})
      MINIDL_CHECK(v <= INT32_MAX, "conv2d (cuDNN path): sizes must fit in 32 bits, got input (",
                   g.N, ", ", g.C, ", ", g.H, ", ", g.W, "); use a smaller batch or another path");
    tf32 = allow_tf32_math;
    dtype = t;
    const cudnnDataType_t dt = t == DType::BF16  ? CUDNN_DATA_BFLOAT16
                               : t == DType::F16 ? CUDNN_DATA_HALF
                                                 : CUDNN_DATA_FLOAT;
    nhwc = g.layout == Layout::NHWC;
    const cudnnTensorFormat_t format = nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    const auto i = [](int64_t v) { return static_cast<int>(v); };
    // cudnnSetTensor4dDescriptor takes the logical (N, C, H, W) sizes in both formats.
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(x, format, dt, i(g.N), i(g.C), i(g.H), i(g.W)));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(y, format, dt, i(g.N), i(g.K), i(g.P), i(g.Q)));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&bias));
    CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, i(g.K), 1, 1));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    // The filter's sizes are (K, C, R, S) in both formats; NHWC means KRSC memory.
    CUDNN_CHECK(
        cudnnSetFilter4dDescriptor(w, dt, format, i(g.K), i(g.C), i(g.R), i(g.S)));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    // CROSS_CORRELATION is what deep-learning frameworks call convolution (no kernel flip). The
    // compute type is float32 at every data type (cuDNN's PSEUDO_HALF/PSEUDO_BFLOAT16 configs).
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, g.pad, g.pad, g.stride, g.stride, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    search_math();
  }

  // FMA_MATH restricts cuDNN to plain fp32 kernels; DEFAULT_MATH would allow TF32 on Ampere and
  // later, which changes results by ~1e-3 relative. Set before each algorithm search, since use()
  // may have narrowed it to the math of another direction's algorithm.
  void search_math() const {
    CUDNN_CHECK(
        cudnnSetConvolutionMathType(conv, tensor_ops() ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  }

  // Before each call: the math type the chosen algorithm was measured with.
  void use(const AlgoChoice& c) const { CUDNN_CHECK(cudnnSetConvolutionMathType(conv, c.math)); }
};

using PlanKey = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int,
                           int, bool, bool, Layout, DType>;

std::mutex g_plans_mutex;
std::map<PlanKey, std::unique_ptr<ConvPlan>> g_plans;

// The plan for this device, geometry, TF32 and deterministic setting and data type, built on first
// use. Plans are never removed, so the reference stays valid.
ConvPlan& plan_for(const ConvGeometry& g, DType t, CudaContext& ctx) {
  const DeviceSettings s = device_settings(Device::cuda(ctx.device));
  const PlanKey key{ctx.device, g.N, g.C,      g.H,   g.W,          g.K,
                    g.R,        g.S, g.stride, g.pad, s.allow_tf32, s.deterministic,
                    g.layout,   t};
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  auto it = g_plans.find(key);
  if (it != g_plans.end()) return *it->second;
  auto plan = std::make_unique<ConvPlan>();
  plan->init(g, s.allow_tf32, t);
  plan->deterministic = s.deterministic;
  return *g_plans.emplace(key, std::move(plan)).first->second;
}

// The fastest measured result that succeeded and fits the workspace we gave. Without tensor-op
// math (float32 without TF32) the descriptor stays in FMA_MATH (results using tensor-op math are
// skipped as well); with it (TF32, or 16-bit data: ConvPlan::tensor_ops) the descriptor takes the
// math type the algorithm was measured with. A result in
// TENSOR_OP_MATH_ALLOW_CONVERSION is never taken, TF32 or not: it may convert float32 operands
// to fp16/bf16 (~1e-3 relative or worse, far below what --tf32 promises), and a later call in that
// math type could pick such a kernel. `results` is sorted by time.
// In deterministic mode (core/device_settings.h) the choice is the deterministic algorithm with
// the lowest id instead, so that timing noise cannot change it between runs, and falling back from
// a faster non-deterministic algorithm is noted for the log.
template <typename Perf>
AlgoChoice pick(const std::vector<Perf>& results, int count, bool tensor_ops, bool det,
                size_t workspace,
                const char* direction, const ConvGeometry& g) {
  int fastest = -1, chosen = -1;
  for (int i = 0; i < count; ++i) {
    const Perf& r = results[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > workspace) continue;
    if (r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (!tensor_ops && r.mathType == CUDNN_TENSOR_OP_MATH) continue;
    if (fastest < 0) fastest = i;
    if (!det) {
      chosen = i;
      break;
    }
    if (r.determinism == CUDNN_DETERMINISTIC &&
        (chosen < 0 || static_cast<int>(r.algo) < static_cast<int>(results[chosen].algo)))
      chosen = i;
  }
  if (chosen >= 0) {
    const Perf& r = results[chosen];
    if (det && results[fastest].determinism != CUDNN_DETERMINISTIC)
      add_determinism_note(str("conv2d ", direction, " (input ", g.N, "x", g.C, "x", g.H, "x", g.W,
                               ", weight ", g.K, "x", g.C, "x", g.R, "x", g.S, "): cuDNN algorithm ",
                               static_cast<int>(r.algo), " instead of the faster non-deterministic ",
                               static_cast<int>(results[fastest].algo)));
    return {static_cast<int>(r.algo), r.memory, tensor_ops ? r.mathType : CUDNN_FMA_MATH};
  }
  throw_error(str("conv2d (cuDNN path): no usable ", det ? "deterministic " : "", direction,
                  " algorithm for input (", g.N, ", ", g.C, ", ", g.H, ", ", g.W, "), weight (",
                  g.K, ", ", g.C, ", ", g.R, ", ", g.S, "), stride ", g.stride, ", pad ", g.pad,
                  "; use the cublas kernel path"));
}

// The workspace to offer cudnnFind*: the largest that the heuristic candidates ask for, capped.
template <typename Perf>
size_t find_workspace(const std::vector<Perf>& candidates, int count) {
  size_t ws = 0;
  for (int i = 0; i < count; ++i)
    if (candidates[i].status == CUDNN_STATUS_SUCCESS && candidates[i].memory <= kMaxWorkspace)
      ws = std::max(ws, candidates[i].memory);
  return ws;
}

Tensor workspace_tensor(size_t bytes, CudaContext& ctx) {
  return Tensor::empty(Shape{static_cast<int64_t>(std::max<size_t>(bytes, 1))}, DType::U8,
                       Device::cuda(ctx.device));
}

// The filter as the plan describes it: w itself (KCRS) for NCHW; for NHWC a KRSC copy in `hold`,
// w (K, C, R*S) transposed per filter to (K, R*S, C); in the plan's data type.
const void* plan_filter(const ConvPlan& plan, const void* w, const ConvGeometry& g, Tensor& hold,
                        CudaContext& ctx) {
  if (!plan.nhwc) return w;
  hold = Tensor::empty(Shape{g.K * g.C * g.R * g.S}, plan.dtype, Device::cuda(ctx.device));
  convert_transpose(hold.raw_data(), plan.dtype, w, plan.dtype, g.K, g.C, g.R * g.S, ctx);
  return hold.raw_data();
}

// y = conv(x, w) (+ bias, float32 only) in data type t.
void forward_cudnn(void* y, const void* x, const void* w_kcrs, const float* bias, DType t,
                   const ConvGeometry& g, CudaContext& ctx) {
  ConvPlan& plan = plan_for(g, t, ctx);
  Tensor w_hold;
  const void* w = plan_filter(plan, w_kcrs, g, w_hold, ctx);
  std::call_once(plan.fwd_once, [&] {
    plan.search_math();
    int max_count = 0, count = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(ctx.cudnn, &max_count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> results(static_cast<size_t>(max_count));
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(ctx.cudnn, plan.x, plan.w, plan.conv, plan.y,
                                                       max_count, &count, results.data()));
    const size_t ws = find_workspace(results, count);
    Tensor scratch_y = Tensor::empty(Shape{g.N * g.K * g.P * g.Q}, t, Device::cuda(ctx.device));
    Tensor find_ws = workspace_tensor(ws, ctx);
    CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
        ctx.cudnn, plan.x, x, plan.w, w, plan.conv, plan.y, scratch_y.raw_data(), max_count,
        &count, results.data(), find_ws.raw_data(), ws));
    plan.fwd = pick(results, count, plan.tensor_ops(), plan.deterministic, ws, "forward", g);
  });
  plan.use(plan.fwd);
  Tensor ws = workspace_tensor(plan.fwd.workspace, ctx);
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnConvolutionForward(ctx.cudnn, &one, plan.x, x, plan.w, w, plan.conv,
                                      static_cast<cudnnConvolutionFwdAlgo_t>(plan.fwd.algo),
                                      ws.raw_data(), plan.fwd.workspace, &zero, plan.y, y));
  if (bias) CUDNN_CHECK(cudnnAddTensor(ctx.cudnn, &one, plan.bias, bias, &one, plan.y, y));
}

// dx = conv^T(dy, w) in data type t.
void backward_data_cudnn(void* dx, const void* dy, const void* w_kcrs, DType t,
                         const ConvGeometry& g, CudaContext& ctx) {
  ConvPlan& plan = plan_for(g, t, ctx);
  Tensor w_hold;
  const void* w = plan_filter(plan, w_kcrs, g, w_hold, ctx);
  std::call_once(plan.bwd_data_once, [&] {
    plan.search_math();
    int max_count = 0, count = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(ctx.cudnn, &max_count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> results(static_cast<size_t>(max_count));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
        ctx.cudnn, plan.w, plan.y, plan.conv, plan.x, max_count, &count, results.data()));
    const size_t ws = find_workspace(results, count);
    Tensor scratch_dx = Tensor::empty(Shape{g.N * g.C * g.H * g.W}, t, Device::cuda(ctx.device));
    Tensor find_ws = workspace_tensor(ws, ctx);
    CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
        ctx.cudnn, plan.w, w, plan.y, dy, plan.conv, plan.x, scratch_dx.raw_data(), max_count,
        &count, results.data(), find_ws.raw_data(), ws));
    plan.bwd_data =
        pick(results, count, plan.tensor_ops(), plan.deterministic, ws, "backward-data", g);
  });
  plan.use(plan.bwd_data);
  Tensor ws = workspace_tensor(plan.bwd_data.workspace, ctx);
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(
      cudnnConvolutionBackwardData(ctx.cudnn, &one, plan.w, w, plan.y, dy, plan.conv,
                                   static_cast<cudnnConvolutionBwdDataAlgo_t>(plan.bwd_data.algo),
                                   ws.raw_data(), plan.bwd_data.workspace, &zero, plan.x, dx));
}

}  // namespace

void conv2d_forward_cudnn(float* y, const float* x, const float* w_kcrs, const float* bias,
                          const ConvGeometry& g, CudaContext& ctx) {
  forward_cudnn(y, x, w_kcrs, bias, DType::F32, g, ctx);
}

void conv2d_forward_cudnn16(void* y, const void* x, const void* w_kcrs, DType t,
                            const ConvGeometry& g, CudaContext& ctx) {
  forward_cudnn(y, x, w_kcrs, nullptr, t, g, ctx);
}

void conv2d_backward_data_cudnn(float* dx, const float* dy, const float* w_kcrs,
                                const ConvGeometry& g, CudaContext& ctx) {
  backward_data_cudnn(dx, dy, w_kcrs, DType::F32, g, ctx);
}

void conv2d_backward_data_cudnn16(void* dx, const void* dy, const void* w_kcrs, DType t,
                                  const ConvGeometry& g, CudaContext& ctx) {
  backward_data_cudnn(dx, dy, w_kcrs, t, g, ctx);
}

void conv2d_backward_weight_cudnn(float* dw, const float* dy, const float* x, const ConvGeometry& g,
                                  CudaContext& ctx) {
  ConvPlan& plan = plan_for(g, DType::F32, ctx);
  std::call_once(plan.bwd_filter_once, [&] {
    plan.search_math();
    int max_count = 0, count = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(ctx.cudnn, &max_count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> results(static_cast<size_t>(max_count));
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        ctx.cudnn, plan.x, plan.y, plan.conv, plan.w, max_count, &count, results.data()));
    const size_t ws = find_workspace(results, count);
    // Find writes its trial results; they go to a scratch filter so dw keeps its accumulated sum.
    Tensor scratch_dw =
        Tensor::empty(Shape{g.K * g.C * g.R * g.S}, DType::F32, Device::cuda(ctx.device));
    Tensor find_ws = workspace_tensor(ws, ctx);
    CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
        ctx.cudnn, plan.x, x, plan.y, dy, plan.conv, plan.w, scratch_dw.data<float>(), max_count,
        &count, results.data(), find_ws.raw_data(), ws));
    plan.bwd_filter =
        pick(results, count, plan.tensor_ops(), plan.deterministic, ws, "backward-filter", g);
  });
  plan.use(plan.bwd_filter);
  Tensor ws = workspace_tensor(plan.bwd_filter.workspace, ctx);
  const float one = 1.f, zero = 0.f;
  if (!plan.nhwc) {
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(
        ctx.cudnn, &one, plan.x, x, plan.y, dy, plan.conv,
        static_cast<cudnnConvolutionBwdFilterAlgo_t>(plan.bwd_filter.algo), ws.raw_data(),
        plan.bwd_filter.workspace, &one, plan.w, dw));
    return;
  }
  // NHWC: the KRSC gradient into scratch (beta 0), then transposed to KCRS and added into dw.
  const int64_t n = g.K * g.C * g.R * g.S;
  const Device dev = Device::cuda(ctx.device);
  Tensor dw_krsc = Tensor::empty(Shape{n}, DType::F32, dev);
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(
      ctx.cudnn, &one, plan.x, x, plan.y, dy, plan.conv,
      static_cast<cudnnConvolutionBwdFilterAlgo_t>(plan.bwd_filter.algo), ws.raw_data(),
      plan.bwd_filter.workspace, &zero, plan.w, dw_krsc.data<float>()));
  Tensor dw_kcrs = Tensor::empty(Shape{n}, DType::F32, dev);
  convert_transpose(dw_kcrs.raw_data(), DType::F32, dw_krsc.raw_data(), DType::F32, g.K, g.R * g.S,
                    g.C, ctx);
  add_scaled(dw, dw, dw_kcrs.data<float>(), 1.f, n, ctx);
}

}  // namespace minidl::cuda

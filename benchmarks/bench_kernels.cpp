// bench_kernels: every minidl op, on every backend the device has, at the layer shapes of
// ResNet-18, ResNet-50 and AlexNet (CIFAR inputs, 32x32), checked and then timed.
//
// Each case names its op in the op table (kernels/backend.h: conv2d_op(), ...) and runs the op's
// explicit form, op_fn(backend, ...), on every backend runnable_backends(op, device type) gives:
// cpu-reference and cpu-fast on the CPU, cuda-handwritten, cuda-cublas and cuda-vendor on a GPU,
// whichever the op has and this build and machine can run. Adding a backend to an op's table
// entry adds its rows here.
//
// For each case (op function and shape) and backend:
//   1. correctness: the op on a small case (batch 3, or odd matrix sizes) on the device in float32
//      against the CPU reference in float64 computed from the same float32 inputs (on the CPU
//      itself: the float32 CPU code against the float64 CPU code). Outputs are poisoned with NaN
//      first, so an element a kernel forgets fails the check.
//   2. timing: fresh random inputs (never zeros), warm-up, then many repeats, each preceded by a
//      write of twice the last-level cache (flush_device_cache) so that no repeat finds its inputs
//      in a cache the previous one filled. Each repeat is timed alone with device events (CUDA) or
//      the steady clock (CPU); the table gives the median, min, 10th and 90th percentiles.
//   3. rates against ceilings measured in the same run, timed the same way: the copy bandwidth of
//      a large device-to-device copy (bytes read + written) and the SGEMM rate (cuBLAS at 8192^3
//      on a GPU, OpenBLAS at 2048^3 on the CPU). roof% = the time the roofline allows,
//      max(flops / sgemm rate, bytes / copy bandwidth), over the measured median. vs_ref = median
//      over the median of the op's reference backend on the same shape in the same run: its
//      vendor backend, cuda-vendor (cuDNN) where the op has one, else cuda-cublas (products); on
//      the CPU cpu-fast (oneDNN). Above 1 is slower than the vendor.
//
// Settings (core/device_settings.h) are set once for the run: TF32 off (the check compares with
// float64, and minidl trains in float32); the TF32 ceiling turns it on in a ScopedDeviceSettings.
//
// FLOPs count 2 per multiply-add; bytes count each tensor the op must read or write once (the
// minimum traffic; a kernel that reads its input twice shows it as a lower roof%). Each op's
// formula sits next to its factory below.
//
//   bench_kernels --device cuda --shapes all --csv kernels.csv
//   bench_kernels --device cuda --ops conv2d --backends cuda-handwritten,cuda-vendor
//   bench_kernels --device cpu --batch 8 --shapes resnet18 --ops conv2d,batchnorm
//   bench_kernels --list
//   bench_kernels --device cuda --tc-gemm        (only the tensor-core GEMM against cublasGemmEx)
//   bench_kernels --device cuda --ops batchnorm,relu,pool,add,dropout --dtypes fp32,bf16,fp16
//                 (the memory-bound ops at 16 bits beside float32: roof% = share of the copy
//                 bandwidth, the 16-bit rows named op_bf16 / op_fp16)
#include <fmt/core.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "benchmarks/bench_common.h"
#include "core/cuda_context.h"
#include "core/device_settings.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/timer.h"
#include "kernels/activation.h"
#include "kernels/augment.h"
#include "kernels/backend.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/cpu_kernels.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "kernels/optimizer.h"
#include "kernels/pooling.h"
#include "kernels/softmax_xent.h"
#if MINIDL_WITH_CUDA && !MINIDL_CUDA_SIM
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/cuda_check.h"
#include "kernels/gemm_tc.h"
#endif

namespace {

using namespace minidl;
using bench::Args;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------- random inputs

// Makes the tensors of one op instance on one device and dtype. Every draw takes the next seed of
// a sequence, so two Inputs built with the same seed (one on the device in float32, one on the CPU
// in float64) draw the same values in the same order; values are drawn as float32 and widened, so
// the float64 reference starts from exactly the device's inputs.
class Inputs {
 public:
  // `backend`: the one the instance's op (and any setup call, such as the forward in front of a
  // backward) runs on.
  // `values`: the 16-bit dtype whose values the activations take (bfloat16/float16 rows: the
  // float64 reference draws the device's 16-bit values, exactly), float32 otherwise.
  Inputs(Device device, DType dtype, Backend backend, uint64_t seed, DType values = DType::F32)
      : device_(device), dtype_(dtype), backend_(backend), seed_(seed), values_(values) {}

  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  Backend backend() const { return backend_; }
  // The dtype of parameters and statistics (batchnorm's gamma, beta, running and saved
  // statistics, their gradients): float32 when the activations are 16-bit.
  DType param_dtype() const { return is_low_precision(dtype_) ? DType::F32 : dtype_; }

  // Uniform in [lo, hi) (counter-based, so the host fills it in parallel), in the activation dtype.
  Tensor uniform(const Shape& s, double lo = -1.0, double hi = 1.0) {
    return draw(s, lo, hi, dtype_, values_);
  }
  // The same in param_dtype() (no 16-bit rounding).
  Tensor uniform_param(const Shape& s, double lo = -1.0, double hi = 1.0) {
    return draw(s, lo, hi, param_dtype(), DType::F32);
  }
  // Integers uniform in [lo, hi), int32.
  Tensor ints(const Shape& s, int32_t lo, int32_t hi) {
    const uint64_t seed = next_seed();
    std::vector<int32_t> v(static_cast<size_t>(s.numel()));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = lo + static_cast<int32_t>(philox_word(seed, i) % static_cast<uint32_t>(hi - lo));
    return Tensor::from_vector<int32_t>(v, s).to(device_);
  }
  // Random bytes (uint8 images).
  Tensor bytes(const Shape& s) {
    const uint64_t seed = next_seed();
    std::vector<uint8_t> v(static_cast<size_t>(s.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(philox_word(seed, i));
    return Tensor::from_vector<uint8_t>(v, s).to(device_);
  }
  // An output the op must overwrite: NaN everywhere, so a forgotten element fails the check.
  Tensor poisoned(const Shape& s, DType t) { return Tensor::full(s, kNaN, t, device_); }
  Tensor poisoned(const Shape& s) { return poisoned(s, dtype_); }
  Tensor poisoned_param(const Shape& s) { return poisoned(s, param_dtype()); }
  Tensor poisoned_ints(const Shape& s) { return Tensor::full(s, -7, DType::I32, device_); }
  // A uint8 output (dropout's 0/1 mask): 7 is neither value.
  Tensor poisoned_bytes(const Shape& s) { return Tensor::full(s, 7, DType::U8, device_); }

 private:
  uint64_t next_seed() { return seed_ * 1000003u + (++draws_); }

  Tensor draw(const Shape& s, double lo, double hi, DType t, DType values) {
    const uint64_t seed = next_seed();
    const int64_t n = s.numel();
    Tensor host = Tensor::empty(s, t);
    const float flo = static_cast<float>(lo), fspan = static_cast<float>(hi - lo);
    dispatch_storage(t, "bench uniform", [&]<typename T>() {
      T* p = host.data<T>();
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        float v = flo + fspan * uniform_from_word(philox_word(seed, uint64_t(i)));
        if (values == DType::BF16) v = to_float(to_bf16(v));
        if (values == DType::F16) v = to_float(to_f16(v));
        p[i] = narrow<T>(static_cast<compute_t<T>>(v));
      }
    });
    return host.to(device_);
  }

  Device device_;
  DType dtype_;
  Backend backend_;
  uint64_t seed_;
  DType values_;
  uint64_t draws_ = 0;
};

// One op ready to run: `run` launches it once on the instance's tensors (captured by value: a
// Tensor is a shared handle), `outputs` are what the check compares.
struct Instance {
  std::function<void()> run;
  std::vector<Tensor> outputs;
};
// Builds the instance for a full-size (timed) or small (checked) case.
using Factory = std::function<Instance(Inputs&, bool small)>;

// One function of one op at one shape. The backends it runs on are its op's (op_table()); the
// rows of a case are one per backend.
struct Case {
  std::string name;            // the function: "conv2d_fwd" (the table's and the CSV's `op` column)
  const OpInfo* op = nullptr;  // its entry in the op table: &conv2d_op() (a pointer: cases sort)
  std::string shape;   // human-readable
  std::string params;  // "N=128;C=64;..." for scripts (benchmarks/pytorch_ops_cpu.py)
  std::string models;  // "resnet18,resnet50"
  double flops = 0.0;  // of the full-size case
  std::function<double(Backend)> bytes;  // of the full-size case, per backend
  Factory make;
  // Set by with_16bit_rows (the memory-bound ops): the case also runs at bfloat16/float16 under
  // --dtypes (16-bit activations, float32 parameters), where it moves bytes16(backend) bytes.
  std::function<double(Backend)> bytes16 = nullptr;
};

// Gives the case just added 16-bit rows (--dtypes) that move `bytes16` bytes.
void with_16bit_rows(std::vector<Case>& out, std::function<double(Backend)> bytes16) {
  out.back().bytes16 = std::move(bytes16);
}

double h16(double elements) { return 2.0 * elements; }  // bytes of bfloat16/float16 elements

// ---------------------------------------------------------------- layer shapes of the models

struct ConvSpec {
  int64_t C, H, W, K, R;
  int stride, pad;
  bool bias;
  int64_t P() const { return (H + 2 * pad - R) / stride + 1; }
  int64_t Q() const { return (W + 2 * pad - R) / stride + 1; }
};
struct MapSpec {  // one activation map per image: C x H x W
  int64_t C, H, W;
};
struct PoolSpec {
  int64_t C, H, W;
  int k, s, p;
};
struct LinearSpec {
  int64_t in, out;
};

struct ModelShapes {
  std::string name;
  std::vector<ConvSpec> convs;
  std::vector<MapSpec> bn, relu, add, gpool;
  std::vector<PoolSpec> pools;
  std::vector<LinearSpec> linears;
  std::vector<int64_t> dropouts;  // features per image of each dropout's input
  int64_t params = 0;  // parameter count (for the optimizer updates)
  int64_t classes = 10;
};

// ResNet with the CIFAR stem (conv 3x3 s1, no max-pool), as models/models.h builds it:
// BasicBlock (two 3x3 convs) or Bottleneck (1x1, 3x3 with the stride, 1x1 x4), projection
// shortcut (1x1 conv + BN) where the shape changes.
ModelShapes resnet_shapes(const std::string& name, const std::vector<int>& blocks, bool bottleneck) {
  ModelShapes m;
  m.name = name;
  auto conv = [&](int64_t C, int64_t H, int64_t K, int64_t R, int stride) {
    const ConvSpec c{C, H, H, K, R, stride, static_cast<int>(R / 2), false};
    m.convs.push_back(c);
    m.bn.push_back({K, c.P(), c.Q()});
    m.params += K * C * R * R + 2 * K;  // weight, BN gamma and beta
    return c.P();
  };
  int64_t H = conv(3, 32, 64, 3, 1);
  m.relu.push_back({64, H, H});
  int64_t in = 64;
  const int64_t widths[4] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t w = widths[stage];
    for (int b = 0; b < blocks[static_cast<size_t>(stage)]; ++b) {
      const int stride = (stage > 0 && b == 0) ? 2 : 1;
      const int64_t out = bottleneck ? 4 * w : w;
      int64_t Ho;
      if (bottleneck) {
        conv(in, H, w, 1, 1);
        m.relu.push_back({w, H, H});
        Ho = conv(w, H, w, 3, stride);
        m.relu.push_back({w, Ho, Ho});
        conv(w, Ho, out, 1, 1);
      } else {
        Ho = conv(in, H, w, 3, stride);
        m.relu.push_back({w, Ho, Ho});
        conv(w, Ho, w, 3, 1);
      }
      if (stride != 1 || in != out) conv(in, H, out, 1, stride);
      m.add.push_back({out, Ho, Ho});
      m.relu.push_back({out, Ho, Ho});
      in = out;
      H = Ho;
    }
  }
  m.gpool.push_back({in, H, H});
  m.linears.push_back({in, m.classes});
  m.params += in * m.classes + m.classes;
  return m;
}

// AlexNet for 32x32 inputs (models/models.h): Conv(3,64,3,s2,p1)-ReLU-MaxPool2,
// Conv(64,192,3,p1)-ReLU-MaxPool2, Conv(192,384,3,p1)-ReLU, Conv(384,256,3,p1)-ReLU,
// Conv(256,256,3,p1)-ReLU-MaxPool2, then Linear(1024,4096)-ReLU-Linear(4096,4096)-ReLU-Linear(4096,10)
// with dropout in front of the first two.
ModelShapes alexnet_shapes() {
  ModelShapes m;
  m.name = "alexnet";
  auto conv = [&](int64_t C, int64_t H, int64_t K, int stride) {
    const ConvSpec c{C, H, H, K, 3, stride, 1, true};
    m.convs.push_back(c);
    m.relu.push_back({K, c.P(), c.Q()});
    m.params += K * C * 9 + K;
    return c.P();
  };
  auto pool = [&](int64_t C, int64_t H) {
    m.pools.push_back({C, H, H, 2, 2, 0});
    return H / 2;
  };
  int64_t H = conv(3, 32, 64, 2);
  H = pool(64, H);
  H = conv(64, H, 192, 1);
  H = pool(192, H);
  H = conv(192, H, 384, 1);
  H = conv(384, H, 256, 1);
  H = conv(256, H, 256, 1);
  H = pool(256, H);
  const LinearSpec fcs[3] = {{256 * H * H, 4096}, {4096, 4096}, {4096, m.classes}};
  for (const auto& l : fcs) {
    m.linears.push_back(l);
    m.params += l.in * l.out + l.out;
  }
  m.dropouts = {fcs[0].in, fcs[1].in};
  m.relu.push_back({4096, 1, 1});
  return m;
}

std::vector<ModelShapes> model_shapes(const std::string& which) {
  std::vector<ModelShapes> all{resnet_shapes("resnet18", {2, 2, 2, 2}, false),
                               resnet_shapes("resnet50", {3, 4, 6, 3}, true), alexnet_shapes()};
  if (which == "all") return all;
  for (auto& m : all)
    if (m.name == which) return {m};
  throw_error(str("--shapes '", which, "': expected resnet18, resnet50, alexnet or all"));
}

// ---------------------------------------------------------------- the ops

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t v : d) {
    if (!s.empty()) s += 'x';
    s += std::to_string(v);
  }
  return s;
}

double f32(double elements) { return 4.0 * elements; }  // bytes of float32 elements

std::function<double(Backend)> same_bytes(double b) {
  return [b](Backend) { return b; };
}

void add_conv_cases(std::vector<Case>& out, const ConvSpec& c, int64_t N) {
  const int64_t P = c.P(), Q = c.Q();
  const Conv2dParams cp{c.stride, c.pad};
  const std::string shape =
      fmt::format("N{} C{} {}x{} K{} {}x{} s{} p{}{}", N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride,
                  c.pad, c.bias ? " +b" : "");
  const std::string params = fmt::format("N={};C={};H={};W={};K={};R={};S={};stride={};pad={};bias={}",
                                         N, c.C, c.H, c.W, c.K, c.R, c.R, c.stride, c.pad, int(c.bias));
  const double x = double(N) * c.C * c.H * c.W, w = double(c.K) * c.C * c.R * c.R,
               y = double(N) * c.K * P * Q;
  // 2 * MACs: every output element is a dot product of length C*R*S; the same for both backwards.
  const double flops = 2.0 * y * double(c.C * c.R * c.R);
  auto nb = [N](bool small) { return small ? int64_t(3) : N; };

  // forward: read x, w (and bias), write y
  out.push_back(
      {"conv2d_fwd", &conv2d_op(), shape, params, "", flops,
       same_bytes(f32(x + w + y + (c.bias ? c.K : 0))), [=](Inputs& in, bool small) {
         const int64_t n = nb(small);
         Tensor xt = in.uniform({n, c.C, c.H, c.W}), wt = in.uniform({c.K, c.C, c.R, c.R});
         Tensor bt = c.bias ? in.uniform({c.K}) : Tensor();
         Tensor yt = in.poisoned({n, c.K, P, Q});
         const Backend be = in.backend();
         return Instance{
             [=]() mutable { conv2d_forward(be, yt, xt, wt, bt.defined() ? &bt : nullptr, cp); },
             {yt}};
       }});
  // backward data: read dy, w, write dx
  out.push_back(
      {"conv2d_bwd_data", &conv2d_op(), shape, params, "", flops, same_bytes(f32(y + w + x)),
       [=](Inputs& in, bool small) {
         const int64_t n = nb(small);
         Tensor dy = in.uniform({n, c.K, P, Q}), wt = in.uniform({c.K, c.C, c.R, c.R});
         Tensor dx = in.poisoned({n, c.C, c.H, c.W});
         const Backend be = in.backend();
         return Instance{[=]() mutable { conv2d_backward_data(be, dx, dy, wt, cp); }, {dx}};
       }});
  // backward weight: read dy, x, read and write dw (accumulated)
  out.push_back(
      {"conv2d_bwd_weight", &conv2d_op(), shape, params, "", flops, same_bytes(f32(y + x + 2 * w)),
       [=](Inputs& in, bool small) {
         const int64_t n = nb(small);
         Tensor dy = in.uniform({n, c.K, P, Q}), xt = in.uniform({n, c.C, c.H, c.W});
         Tensor dw = in.uniform({c.K, c.C, c.R, c.R});
         const Backend be = in.backend();
         return Instance{[=]() mutable { conv2d_backward_weight(be, dw, dy, xt, cp); }, {dw}};
       }});
}

void add_linear_cases(std::vector<Case>& out, const LinearSpec& l, int64_t N) {
  const std::string shape = fmt::format("{}x{} -> {}", N, l.in, l.out);
  const std::string params = fmt::format("N={};in={};out={}", N, l.in, l.out);
  const double x = double(N) * l.in, w = double(l.in) * l.out, y = double(N) * l.out;
  auto nb = [N](bool small) { return small ? int64_t(3) : N; };
  // forward y = x w^T + b: 2 N in out; read x, w, b, write y
  out.push_back({"linear_fwd", &linear_op(), shape, params, "", 2.0 * N * l.in * l.out,
                 same_bytes(f32(x + w + l.out + y)), [=](Inputs& in, bool small) {
                   const int64_t n = nb(small);
                   Tensor xt = in.uniform({n, l.in}), wt = in.uniform({l.out, l.in}),
                          bt = in.uniform({l.out}), yt = in.poisoned({n, l.out});
                   const Backend be = in.backend();
                   return Instance{[=]() mutable { linear_forward(be, yt, xt, wt, &bt); }, {yt}};
                 }});
  // backward dx = dy w, dw += dy^T x, db += sum dy: 4 N in out; read dy, x, w, dw, db, write dx,
  // dw, db
  out.push_back({"linear_bwd", &linear_op(), shape, params, "", 4.0 * N * l.in * l.out,
                 same_bytes(f32(y + x + w + 2 * w + 2 * l.out + x)), [=](Inputs& in, bool small) {
                   const int64_t n = nb(small);
                   Tensor dy = in.uniform({n, l.out}), xt = in.uniform({n, l.in}),
                          wt = in.uniform({l.out, l.in}), dw = in.uniform({l.out, l.in}),
                          db = in.uniform({l.out}), dx = in.poisoned({n, l.in});
                   const Backend be = in.backend();
                   return Instance{[=]() mutable { linear_backward(be, &dx, dw, &db, dy, xt, wt); },
                                   {dx, dw, db}};
                 }});
}

void add_gemm_case(std::vector<Case>& out, int64_t M) {
  const std::string shape = fmt::format("{}x{}x{}", M, M, M);
  // C = A B: 2 M N K; read A, B, write C (beta = 0)
  const double m = double(M);
  out.push_back(
      {"gemm", &gemm_op(), shape, fmt::format("M={};N={};K={}", M, M, M), "", 2.0 * m * m * m,
       same_bytes(f32(3 * m * m)), [=](Inputs& in, bool small) {
         // The small case has sizes that are no multiple of any tile.
         const int64_t mm = small ? 97 : M, nn = small ? 83 : M, kk = small ? 111 : M;
         Tensor a = in.uniform({mm, kk}), b = in.uniform({kk, nn}), c = in.poisoned({mm, nn});
         const Backend be = in.backend();
         return Instance{[=]() mutable { matmul(be, c, a, b, false, false, 1.0, 0.0); }, {c}};
       }});
}

void add_batchnorm_cases(std::vector<Case>& out, const MapSpec& m, int64_t N) {
  const std::string shape = dims({N, m.C, m.H, m.W});
  const std::string params = fmt::format("N={};C={};H={};W={}", N, m.C, m.H, m.W);
  const double x = double(N) * m.C * m.H * m.W, c = double(m.C);
  auto nb = [N](bool small) { return small ? int64_t(3) : N; };
  const BatchNormParams bp{};
  struct State {
    Tensor x, gamma, beta, rmean, rvar;
  };
  auto state = [=](Inputs& in, int64_t n) {
    return State{in.uniform({n, m.C, m.H, m.W}), in.uniform_param({m.C}, 0.5, 1.5),
                 in.uniform_param({m.C}), in.uniform_param({m.C}, -0.5, 0.5),
                 in.uniform_param({m.C}, 0.5, 1.5)};
  };
  // train forward: read x, write y (per-channel statistics are negligible)
  out.push_back({"batchnorm_train_fwd", &batchnorm_op(), shape, params, "", 0.0,
                 same_bytes(f32(2 * x + 6 * c)), [=](Inputs& in, bool small) {
                   State s = state(in, nb(small));
                   Tensor y = in.poisoned(s.x.shape()), sm = in.poisoned_param({m.C}),
                          si = in.poisoned_param({m.C});
                   const Backend be = in.backend();
                   return Instance{[=]() mutable {
                                     batchnorm_forward_train(be, y, sm, si, s.rmean, s.rvar, s.x,
                                                             s.gamma, s.beta, bp);
                                   },
                                   {y, sm, si, s.rmean, s.rvar}};
                 }});
  with_16bit_rows(out, same_bytes(h16(2 * x) + f32(6 * c)));
  // train backward: read dy, x, write dx
  out.push_back(
      {"batchnorm_train_bwd", &batchnorm_op(), shape, params, "", 0.0,
       same_bytes(f32(3 * x + 6 * c)), [=](Inputs& in, bool small) {
         State s = state(in, nb(small));
         const Backend be = in.backend();
         Tensor y = in.poisoned(s.x.shape()), sm = in.poisoned_param({m.C}),
                si = in.poisoned_param({m.C});
         batchnorm_forward_train(be, y, sm, si, s.rmean, s.rvar, s.x, s.gamma, s.beta, bp);
         Tensor dy = in.uniform(s.x.shape()), dx = in.poisoned(s.x.shape());
         Tensor dg = in.uniform_param({m.C}), db = in.uniform_param({m.C});
         return Instance{[=]() mutable {
                           batchnorm_backward_train(be, dx, dg, db, dy, s.x, s.gamma, sm, si, bp);
                         },
                         {dx, dg, db}};
       }});
  with_16bit_rows(out, same_bytes(h16(3 * x) + f32(6 * c)));
  // eval forward: read x, write y
  out.push_back({"batchnorm_eval_fwd", &batchnorm_op(), shape, params, "", 0.0,
                 same_bytes(f32(2 * x + 4 * c)), [=](Inputs& in, bool small) {
                   State s = state(in, nb(small));
                   Tensor y = in.poisoned(s.x.shape());
                   const Backend be = in.backend();
                   return Instance{[=]() mutable {
                                     batchnorm_forward_eval(be, y, s.x, s.gamma, s.beta, s.rmean,
                                                            s.rvar, bp);
                                   },
                                   {y}};
                 }});
  with_16bit_rows(out, same_bytes(h16(2 * x) + f32(4 * c)));
}

void add_relu_cases(std::vector<Case>& out, const MapSpec& m, int64_t N) {
  const std::string shape = dims({N, m.C, m.H, m.W});
  const std::string params = fmt::format("N={};C={};H={};W={}", N, m.C, m.H, m.W);
  const double x = double(N) * m.C * m.H * m.W;
  auto nb = [N](bool small) { return small ? int64_t(3) : N; };
  // forward: read x, write y
  out.push_back({"relu_fwd", &activation_op(), shape, params, "", 0.0, same_bytes(f32(2 * x)),
                 [=](Inputs& in, bool small) {
                   Tensor xt = in.uniform({nb(small), m.C, m.H, m.W}), y = in.poisoned(xt.shape());
                   const Backend be = in.backend();
                   return Instance{
                       [=]() mutable { activation_forward(be, y, xt, Activation::ReLU, 0.01); },
                       {y}};
                 }});
  with_16bit_rows(out, same_bytes(h16(2 * x)));
  // backward: read dy and x (or y), write dx
  out.push_back({"relu_bwd", &activation_op(), shape, params, "", 0.0, same_bytes(f32(3 * x)),
                 [=](Inputs& in, bool small) {
                   Tensor xt = in.uniform({nb(small), m.C, m.H, m.W}), y = in.poisoned(xt.shape());
                   const Backend be = in.backend();
                   activation_forward(be, y, xt, Activation::ReLU, 0.01);
                   Tensor dy = in.uniform(xt.shape()), dx = in.poisoned(xt.shape());
                   return Instance{[=]() mutable {
                                     activation_backward(be, dx, dy, xt, y, Activation::ReLU, 0.01);
                                   },
                                   {dx}};
                 }});
  with_16bit_rows(out, same_bytes(h16(3 * x)));
}

void add_pool_cases(std::vector<Case>& out, const PoolSpec& p, int64_t N) {
  const Pool2dParams pp{p.k, p.s, p.p};
  const int64_t P = (p.H + 2 * p.p - p.k) / p.s + 1, Q = (p.W + 2 * p.p - p.k) / p.s + 1;
  const std::string shape = fmt::format("{} k{} s{} p{}", dims({N, p.C, p.H, p.W}), p.k, p.s, p.p);
  const std::string params =
      fmt::format("N={};C={};H={};W={};k={};s={};p={}", N, p.C, p.H, p.W, p.k, p.s, p.p);
  const double x = double(N) * p.C * p.H * p.W, y = double(N) * p.C * P * Q;
  auto nb = [N](bool small) { return small ? int64_t(3) : N; };
  // max forward: read x, write y and (our kernels) the int32 argmax; cuDNN keeps no argmax
  out.push_back({"maxpool_fwd", &maxpool2d_op(), shape, params, "", 0.0,
                 [=](Backend b) { return f32(x + y + (b == Backend::CudaVendor ? 0 : y)); },
                 [=](Inputs& in, bool small) {
                   const int64_t n = nb(small);
                   Tensor xt = in.uniform({n, p.C, p.H, p.W}), y = in.poisoned({n, p.C, P, Q});
                   Tensor am = in.poisoned_ints({n, p.C, P, Q});
                   const Backend be = in.backend();
                   // cuDNN writes no argmax, so only ours is compared.
                   std::vector<Tensor> outs{y};
                   if (be != Backend::CudaVendor) outs.push_back(am);
                   return Instance{[=]() mutable { maxpool2d_forward(be, y, am, xt, pp); }, outs};
                 }});
  with_16bit_rows(out, [=](Backend b) {
    return h16(x + y) + (b == Backend::CudaVendor ? 0 : f32(y));  // the argmax is int32
  });
  // max backward: ours reads dy and argmax, cuDNN reads dy, x and y; both write dx
  out.push_back(
      {"maxpool_bwd", &maxpool2d_op(), shape, params, "", 0.0,
       [=](Backend b) { return f32(2 * y + x + (b == Backend::CudaVendor ? x : 0)); },
       [=](Inputs& in, bool small) {
         const int64_t n = nb(small);
         Tensor xt = in.uniform({n, p.C, p.H, p.W}), y = in.poisoned({n, p.C, P, Q});
         Tensor am = in.poisoned_ints({n, p.C, P, Q});
         const Backend be = in.backend();
         maxpool2d_forward(be, y, am, xt, pp);
         Tensor dy = in.uniform(y.shape()), dx = in.poisoned(xt.shape());
         return Instance{[=]() mutable { maxpool2d_backward(be, dx, dy, xt, y, am, pp); }, {dx}};
       }});
  // 16-bit: ours reads dy and the int32 argmax, writes dx; cuDNN reads dy, y, x, writes dx
  with_16bit_rows(out, [=](Backend b) {
    return b == Backend::CudaVendor ? h16(2 * y + 2 * x) : h16(y + x) + f32(y);
  });
  // average forward: read x, write y; backward: read dy, write dx
  out.push_back({"avgpool_fwd", &avgpool2d_op(), shape, params, "", 0.0, same_bytes(f32(x + y)),
                 [=](Inputs& in, bool small) {
                   const int64_t n = nb(small);
                   Tensor xt = in.uniform({n, p.C, p.H, p.W}), y = in.poisoned({n, p.C, P, Q});
                   const Backend be = in.backend();
                   return Instance{[=]() mutable { avgpool2d_forward(be, y, xt, pp); }, {y}};
                 }});
  with_16bit_rows(out, same_bytes(h16(x + y)));
  out.push_back({"avgpool_bwd", &avgpool2d_op(), shape, params, "", 0.0, same_bytes(f32(x + y)),
                 [=](Inputs& in, bool small) {
                   const int64_t n = nb(small);
                   Tensor dy = in.uniform({n, p.C, P, Q}), dx = in.poisoned({n, p.C, p.H, p.W});
                   const Backend be = in.backend();
                   return Instance{[=]() mutable { avgpool2d_backward(be, dx, dy, pp); }, {dx}};
                 }});
  with_16bit_rows(out, same_bytes(h16(x + y)));
}

void add_global_pool_cases(std::vector<Case>& out, const MapSpec& m, int64_t N) {
  const std::string shape = dims({N, m.C, m.H, m.W});
  const std::string params = fmt::format("N={};C={};H={};W={}", N, m.C, m.H, m.W);
  const double x = double(N) * m.C * m.H * m.W, y = double(N) * m.C;
  auto nb = [N](bool small) { return small ? int64_t(3) : N; };
  // forward: read x, write y (N, C); backward: read dy, write dx
  out.push_back({"global_avgpool_fwd", &global_avgpool_op(), shape, params, "", 0.0,
                 same_bytes(f32(x + y)), [=](Inputs& in, bool small) {
                   const int64_t n = nb(small);
                   Tensor xt = in.uniform({n, m.C, m.H, m.W}), yt = in.poisoned({n, m.C, 1, 1});
                   const Backend be = in.backend();
                   return Instance{[=]() mutable { global_avgpool_forward(be, yt, xt); }, {yt}};
                 }});
  with_16bit_rows(out, same_bytes(h16(x + y)));
  out.push_back({"global_avgpool_bwd", &global_avgpool_op(), shape, params, "", 0.0,
                 same_bytes(f32(x + y)), [=](Inputs& in, bool small) {
                   const int64_t n = nb(small);
                   Tensor dy = in.uniform({n, m.C, 1, 1}), dx = in.poisoned({n, m.C, m.H, m.W});
                   const Backend be = in.backend();
                   return Instance{[=]() mutable { global_avgpool_backward(be, dx, dy); }, {dx}};
                 }});
  with_16bit_rows(out, same_bytes(h16(x + y)));
}

void add_softmax_cases(std::vector<Case>& out, int64_t N, int64_t K) {
  const std::string shape = dims({N, K});
  const std::string params = fmt::format("N={};K={}", N, K);
  const double z = double(N) * K;
  auto nb = [N](bool small) { return small ? int64_t(3) : N; };
  // forward: read logits and labels, write probs (loss and count are negligible)
  out.push_back({"softmax_xent_fwd", &softmax_xent_op(), shape, params, "", 0.0,
                 same_bytes(f32(2 * z + N)), [=](Inputs& in, bool small) {
                   const int64_t n = nb(small);
                   Tensor logits = in.uniform({n, K}, -3.0, 3.0), labels = in.ints({n}, 0, int32_t(K));
                   Tensor loss = in.poisoned({1}), probs = in.poisoned({n, K}), correct = in.poisoned_ints({1});
                   const Backend be = in.backend();
                   return Instance{[=]() mutable {
                                     softmax_xent_forward(be, loss, probs, correct, logits, labels,
                                                          0.0);
                                   },
                                   {loss, probs, correct}};
                 }});
  // backward: read probs and labels, write dlogits
  out.push_back({"softmax_xent_bwd", &softmax_xent_op(), shape, params, "", 0.0,
                 same_bytes(f32(2 * z + N)), [=](Inputs& in, bool small) {
                   const int64_t n = nb(small);
                   Tensor logits = in.uniform({n, K}, -3.0, 3.0), labels = in.ints({n}, 0, int32_t(K));
                   Tensor loss = in.poisoned({1}), probs = in.poisoned({n, K}), correct = in.poisoned_ints({1});
                   const Backend be = in.backend();
                   softmax_xent_forward(be, loss, probs, correct, logits, labels, 0.0);
                   Tensor dz = in.poisoned({n, K});
                   return Instance{
                       [=]() mutable { softmax_xent_backward(be, dz, probs, labels, 0.0, 1.0); },
                       {dz}};
                 }});
}

void add_optimizer_cases(std::vector<Case>& out, const std::string& model, int64_t n_params) {
  const std::string shape = fmt::format("{} params", n_params);
  const std::string params = fmt::format("n={}", n_params);
  const double n = double(n_params);
  auto size = [n_params](bool small) { return small ? int64_t(1001) : n_params; };
  // SGD with momentum and weight decay: read p, g, buf, write p, buf
  out.push_back({"sgd_update", &optimizer_op(), shape, params, model, 0.0, same_bytes(f32(5 * n)),
                 [=](Inputs& in, bool small) {
                   const int64_t k = size(small);
                   Tensor p = in.uniform({k}), g = in.uniform({k}), buf = in.uniform({k});
                   SgdParams sp;
                   sp.lr = 0.1;
                   sp.momentum = 0.9;
                   sp.weight_decay = 5e-4;
                   const Backend be = in.backend();
                   // step 2: the momentum buffer is used (step 1 only copies the gradient into it)
                   return Instance{[=]() mutable { sgd_update(be, p, g, buf, sp, 2); }, {p, buf}};
                 }});
  // Adam: read p, g, m, v, write p, m, v
  out.push_back(
      {"adam_update", &optimizer_op(), shape, params, model, 0.0, same_bytes(f32(7 * n)),
       [=](Inputs& in, bool small) {
         const int64_t k = size(small);
         Tensor p = in.uniform({k}), g = in.uniform({k}), m = in.uniform({k}),
                v = in.uniform({k}, 0.0, 1.0);
         AdamParams ap;
         ap.weight_decay = 5e-4;
         const Backend be = in.backend();
         return Instance{[=]() mutable { adam_update(be, p, g, m, v, ap, 3); }, {p, m, v}};
       }});
}

void add_dropout_cases(std::vector<Case>& out, int64_t features, int64_t N) {
  const std::string shape = dims({N, features});
  const std::string params = fmt::format("N={};F={}", N, features);  // p = 0.5, below
  const double x = double(N) * features;
  auto nb = [N](bool small) { return small ? int64_t(3) : N; };
  // p = 0.5 as models/models.h's AlexNet. The mask is a function of (seed, offset, index), so the
  // device and the float64 reference draw the same one (kernels/dropout.h).
  constexpr double p = 0.5;
  constexpr uint64_t seed = 1234, offset = 0;
  // forward: read x, write y and the uint8 mask
  out.push_back({"dropout_fwd", &dropout_op(), shape, params, "", 0.0, same_bytes(f32(2 * x) + x),
                 [=](Inputs& in, bool small) {
                   Tensor xt = in.uniform({nb(small), features}), y = in.poisoned(xt.shape());
                   Tensor mask = in.poisoned_bytes(xt.shape());
                   const Backend be = in.backend();
                   return Instance{
                       [=]() mutable { dropout_forward(be, y, mask, xt, p, seed, offset); },
                       {y, mask}};
                 }});
  with_16bit_rows(out, same_bytes(h16(2 * x) + x));
  // backward: read dy and the mask, write dx
  out.push_back({"dropout_bwd", &dropout_op(), shape, params, "", 0.0, same_bytes(f32(2 * x) + x),
                 [=](Inputs& in, bool small) {
                   Tensor xt = in.uniform({nb(small), features}), y = in.poisoned(xt.shape());
                   Tensor mask = in.poisoned_bytes(xt.shape());
                   const Backend be = in.backend();
                   dropout_forward(be, y, mask, xt, p, seed, offset);
                   Tensor dy = in.uniform(xt.shape()), dx = in.poisoned(xt.shape());
                   return Instance{[=]() mutable { dropout_backward(be, dx, dy, mask, p); }, {dx}};
                 }});
  with_16bit_rows(out, same_bytes(h16(2 * x) + x));
}

void add_augment_case(std::vector<Case>& out, int64_t N) {
  const std::string shape = fmt::format("{} u8 -> f32", dims({N, 3, 32, 32}));
  const std::string params = fmt::format("N={};C=3;H=32;W=32;pad=4", N);
  const double px = double(N) * 3 * 32 * 32;
  // read the batch's uint8 pixels, write float32 pixels (indices and params are negligible)
  out.push_back({"augment", &augment_op(), shape, params, "", 0.0, same_bytes(px + f32(px)),
                 [=](Inputs& in, bool small) {
                   const int64_t n = small ? 3 : N, M = 2 * n;
                   Tensor images = in.bytes({M, 3, 32, 32});
                   Tensor indices = in.ints({n}, 0, int32_t(M));
                   // per image: crop offsets dy, dx in [0, 8], flip, no cutout
                   Tensor offs = in.ints({n, 2}, 0, 9).to(Device::cpu()),
                          flips = in.ints({n}, 0, 2).to(Device::cpu());
                   std::vector<int32_t> pv;
                   for (int64_t i = 0; i < n; ++i)
                     pv.insert(pv.end(), {offs.data<int32_t>()[2 * i], offs.data<int32_t>()[2 * i + 1],
                                          flips.data<int32_t>()[i], -1, -1});
                   Tensor prm = Tensor::from_vector<int32_t>(pv, {n, 5}).to(in.device());
                   Tensor o = in.poisoned({n, 3, 32, 32}, DType::F32);
                   AugmentConfig cfg;
                   cfg.mean = {0.4914f, 0.4822f, 0.4465f};
                   cfg.std = {0.2470f, 0.2435f, 0.2616f};
                   const Backend be = in.backend();
                   return Instance{
                       [=]() mutable { augment_batch(be, o, images, indices, prm, cfg); }, {o}};
                 }});
}

void add_add_case(std::vector<Case>& out, const MapSpec& m, int64_t N) {
  const std::string shape = dims({N, m.C, m.H, m.W});
  const std::string params = fmt::format("N={};C={};H={};W={}", N, m.C, m.H, m.W);
  // out = a + b: read a, b, write out. add() has no explicit form; it is add_scaled with alpha 1
  // (kernels/elementwise.cpp), which has.
  out.push_back({"add", &elementwise_op(), shape, params, "", 0.0,
                 same_bytes(f32(3.0 * N * m.C * m.H * m.W)), [=](Inputs& in, bool small) {
                   const Shape s{small ? 3 : N, m.C, m.H, m.W};
                   Tensor a = in.uniform(s), b = in.uniform(s), o = in.poisoned(s);
                   const Backend be = in.backend();
                   return Instance{[=]() mutable { add_scaled(be, o, a, b, 1.0); }, {o}};
                 }});
  with_16bit_rows(out, same_bytes(h16(3.0 * N * m.C * m.H * m.W)));
}

// Every case for the chosen models, each distinct (op, shape) once with the models that use it.
std::vector<Case> build_cases(const std::vector<ModelShapes>& models, int64_t N, int64_t gemm_size) {
  std::vector<Case> all;
  for (const auto& m : models) {
    std::vector<Case> mine;
    for (const auto& c : m.convs) add_conv_cases(mine, c, N);
    for (const auto& l : m.linears) add_linear_cases(mine, l, N);
    for (const auto& b : m.bn) add_batchnorm_cases(mine, b, N);
    for (const auto& r : m.relu) add_relu_cases(mine, r, N);
    for (const auto& p : m.pools) add_pool_cases(mine, p, N);
    for (const auto& g : m.gpool) add_global_pool_cases(mine, g, N);
    for (int64_t f : m.dropouts) add_dropout_cases(mine, f, N);
    add_softmax_cases(mine, N, m.classes);
    add_optimizer_cases(mine, m.name, m.params);
    for (const auto& a : m.add) add_add_case(mine, a, N);
    add_augment_case(mine, N);
    for (auto& c : mine) {
      auto same = std::find_if(all.begin(), all.end(), [&](const Case& o) {
        return o.name == c.name && o.params == c.params;
      });
      if (same == all.end()) {
        c.models = m.name;
        all.push_back(std::move(c));
      } else if (same->models.find(m.name) == std::string::npos) {
        same->models += "," + m.name;
      }
    }
  }
  add_gemm_case(all, gemm_size);
  all.back().models = "ceiling";
  // Group by op in a fixed order, shapes in model order within each op.
  const std::vector<std::string> order{"gemm",
                                       "conv2d_fwd",
                                       "conv2d_bwd_data",
                                       "conv2d_bwd_weight",
                                       "linear_fwd",
                                       "linear_bwd",
                                       "batchnorm_train_fwd",
                                       "batchnorm_train_bwd",
                                       "batchnorm_eval_fwd",
                                       "relu_fwd",
                                       "relu_bwd",
                                       "maxpool_fwd",
                                       "maxpool_bwd",
                                       "avgpool_fwd",
                                       "avgpool_bwd",
                                       "global_avgpool_fwd",
                                       "global_avgpool_bwd",
                                       "dropout_fwd",
                                       "dropout_bwd",
                                       "softmax_xent_fwd",
                                       "softmax_xent_bwd",
                                       "sgd_update",
                                       "adam_update",
                                       "augment",
                                       "add"};
  auto rank = [&](const std::string& op) {
    return std::find(order.begin(), order.end(), op) - order.begin();
  };
  std::stable_sort(all.begin(), all.end(),
                   [&](const Case& a, const Case& b) { return rank(a.name) < rank(b.name); });
  return all;
}

// ---------------------------------------------------------------- checking

std::vector<double> host_doubles(const Tensor& t) {
  const Tensor h = t.to(Device::cpu());
  std::vector<double> v(static_cast<size_t>(h.numel()));
  switch (h.dtype()) {
    case DType::F32: std::copy_n(h.data<float>(), v.size(), v.begin()); break;
    case DType::F64: std::copy_n(h.data<double>(), v.size(), v.begin()); break;
    case DType::I32: std::copy_n(h.data<int32_t>(), v.size(), v.begin()); break;
    case DType::U8: std::copy_n(h.data<uint8_t>(), v.size(), v.begin()); break;
    case DType::BF16:
      for (size_t i = 0; i < v.size(); ++i) v[i] = to_float(h.data<bf16>()[i]);
      break;
    case DType::F16:
      for (size_t i = 0; i < v.size(); ++i) v[i] = to_float(h.data<f16>()[i]);
      break;
    default: throw_error(str("bench_kernels: cannot compare ", h.describe()));
  }
  return v;
}

struct CheckResult {
  bool ok = true;
  double rel_err = 0.0;  // worst over the outputs of ||out - ref|| / ||ref||
  std::string what;      // the first failing output, when any
};

// float32 against float64 from the same inputs. Over sums of up to ~10^4 terms, float32 rounding
// gives a relative L2 error around 1e-7..1e-6; 1e-5 leaves margin for that, while an indexing
// mistake (errors of order 1) or TF32 arithmetic (10-bit mantissa, ~1e-3) fails. The element-wise
// bound catches a few wrong elements that the L2 norm of a large tensor would dilute.
//
// bfloat16/float16 rows (u = the unit roundoff, 2^-8 or 2^-11; 0 for float32): the reference
// starts from the same 16-bit inputs, so an output differs by its one rounding to 16 bits (u |ref|
// per element, at most u in relative L2) plus float32's error: bounds 2u, relative and elementwise.
//
// The device instance's outputs are compared with the first outputs of the reference: a vendor
// backend may produce fewer (cuDNN's max-pool keeps no argmax), never different ones.
CheckResult compare_outputs(const std::vector<Tensor>& out, const std::vector<Tensor>& ref,
                            double u = 0.0) {
  CheckResult r;
  MINIDL_ASSERT(out.size() <= ref.size());
  for (size_t k = 0; k < out.size(); ++k) {
    const std::vector<double> a = host_doubles(out[k]), b = host_doubles(ref[k]);
    MINIDL_ASSERT(a.size() == b.size());
    double d2 = 0.0, r2 = 0.0, max_err = 0.0, max_ref = 0.0;
    bool finite = true;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!std::isfinite(a[i])) finite = false;
      const double d = a[i] - b[i];
      d2 += d * d;
      r2 += b[i] * b[i];
      max_err = std::max(max_err, std::abs(d));
      max_ref = std::max(max_ref, std::abs(b[i]));
    }
    const double rel = finite ? std::sqrt(d2) / std::max(std::sqrt(r2), 1e-30) : kNaN;
    if (!(rel <= r.rel_err)) r.rel_err = rel;  // NaN sticks
    const double rel_bound = u > 0 ? 2 * u : 1e-5, elem_bound = u > 0 ? 2 * u : 1e-3;
    const bool ok = finite && rel <= rel_bound && max_err <= elem_bound * std::max(1.0, max_ref);
    if (!ok && r.ok) {
      r.ok = false;
      r.what = finite ? fmt::format("output {}: max abs error {:.3g}", k, max_err)
                      : fmt::format("output {}: non-finite values (unwritten?)", k);
    }
  }
  return r;
}

// ---------------------------------------------------------------- timing

struct Options {
  Device device;
  int64_t batch = 0;
  std::vector<std::string> ops;  // substrings; empty: all
  std::string shapes = "all";
  int64_t repeats = 0;           // 0: as many as fit in the time budget
  std::string csv;
  uint64_t seed = 0;
  int64_t gemm_size = 0;
  std::vector<Backend> only;  // --backends: run only these; empty: every runnable one
  // --dtypes: float32, and bfloat16/float16 for the cases with 16-bit rows (with_16bit_rows)
  std::vector<DType> dtypes{DType::F32};
};

// The dtypes case c runs at on backend b: float32, and each 16-bit one of --dtypes where the case
// has 16-bit rows and the op table says b computes it.
std::vector<DType> row_dtypes(const Case& c, Backend b, const Options& o) {
  std::vector<DType> out;
  for (DType t : o.dtypes)
    if (t == DType::F32 || (c.bytes16 && c.op->computes(b, t))) out.push_back(t);
  return out;
}

// Timers are kept and reused (on a GPU each holds two CUDA events).
std::vector<Timer>& timer_pool(Device d, size_t n) {
  static std::vector<Timer> pool;
  while (pool.size() < n) pool.emplace_back(d);
  return pool;
}

TimingStats time_op(const std::function<void()>& run, const Options& o) {
  const Device d = o.device;
  const bool gpu = d.is_cuda();
  // Warm-up: at least 3 runs and 20 ms on a GPU, 50 ms on the CPU (cuDNN picks algorithms, the
  // caching allocator fills, clocks ramp up), at most 50 runs.
  Timer w(d);
  int warm = 0;
  double spent = 0.0, last = 0.0;
  const double warm_ms = gpu ? 20.0 : 50.0;
  while (warm < 3 || (spent < warm_ms && warm < 50)) {
    flush_device_cache(d);
    w.start();
    run();
    w.stop();
    last = w.elapsed_ms();
    spent += last;
    ++warm;
  }
  int64_t reps = o.repeats;
  if (reps <= 0) {
    // Enough repeats to fill a budget (GPU 200 ms, CPU 1 s), between 10 and 200 (GPU) or 5 and 50.
    const double budget = gpu ? 200.0 : 1000.0;
    reps = static_cast<int64_t>(budget / std::max(last, 1e-3));
    reps = std::clamp<int64_t>(reps, gpu ? 10 : 5, gpu ? 200 : 50);
  }
  std::vector<Timer>& timers = timer_pool(d, static_cast<size_t>(reps));
  // On a GPU the host queues every repeat (flush, start event, op, stop event) without waiting;
  // the flush also keeps the device busy while the host prepares the next launch, so host-side
  // launch cost does not show up as idle time between the events.
  for (int64_t r = 0; r < reps; ++r) {
    flush_device_cache(d);
    timers[r].start();
    run();
    timers[r].stop();
  }
  std::vector<double> ms;
  for (int64_t r = 0; r < reps; ++r) ms.push_back(timers[r].elapsed_ms());
  return summarize_timings(ms);
}

struct Ceilings {
  double copy_gbps = 0.0;      // device-to-device copy, bytes read + written
  double sgemm_gflops = 0.0;   // float32 product
  double tf32_gflops = 0.0;    // cuBLAS with TF32 tensor cores (GPU only)
  std::string copy_how, sgemm_how;
  TimingStats copy_t, sgemm_t, tf32_t;
};

Ceilings measure_ceilings(const Options& o) {
  Ceilings c;
  const Device d = o.device;
  // The vendor's product: cuBLAS on a GPU, OpenBLAS (cpu-reference's gemm) on the CPU.
  const Backend gemm_backend = d.is_cuda() ? Backend::CudaCublas : Backend::CpuReference;
  Inputs in(d, DType::F32, gemm_backend, o.seed);
  {
    // 256 MiB each way: far larger than any cache, long enough that launch cost is noise.
    const int64_t n = int64_t(64) << 20;
    Tensor src = in.uniform({n}), dst = Tensor::empty({n}, DType::F32, d);
    const size_t bytes = src.nbytes();
    std::function<void()> run;
    if (d.is_cuda()) {
      run = [=] { memcpy_any(dst.raw_data(), d, src.raw_data(), d, bytes); };
      c.copy_how = "cudaMemcpyAsync device to device, 256 MiB";
    } else {
      // One thread's memcpy cannot saturate the memory system; every thread copies a part.
      run = [=] {
        const char* s = static_cast<const char*>(src.raw_data());
        char* t = static_cast<char*>(dst.raw_data());
        const int64_t chunk = int64_t(1) << 20, chunks = static_cast<int64_t>(bytes) / chunk;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < chunks; ++i) std::memcpy(t + i * chunk, s + i * chunk, size_t(chunk));
      };
      c.copy_how = fmt::format("memcpy on {} threads, 256 MiB", omp_get_max_threads());
    }
    c.copy_t = time_op(run, o);
    c.copy_gbps = 2.0 * double(bytes) / (c.copy_t.median * 1e6);
  }
  {
    const int64_t M = o.gemm_size;
    Tensor a = in.uniform({M, M}), b = in.uniform({M, M}), out = Tensor::empty({M, M}, DType::F32, d);
    auto run = [=]() mutable { matmul(gemm_backend, out, a, b, false, false, 1.0, 0.0); };
    const double flops = 2.0 * double(M) * M * M;
    c.sgemm_t = time_op(run, o);
    c.sgemm_gflops = flops / (c.sgemm_t.median * 1e6);
    c.sgemm_how = fmt::format("{} SGEMM {}^3", d.is_cuda() ? "cuBLAS" : "OpenBLAS", M);
    if (d.is_cuda()) {
      // TF32 for this measurement only; the run's settings come back at the end of the scope.
      DeviceSettings tf32 = device_settings(d);
      tf32.allow_tf32 = true;
      const ScopedDeviceSettings scope(tf32);
      c.tf32_t = time_op(run, o);
      c.tf32_gflops = flops / (c.tf32_t.median * 1e6);
    }
  }
  return c;
}

// ---------------------------------------------------------------- backends

constexpr Backend kAllBackends[] = {Backend::CpuReference, Backend::CpuFast,
                                    Backend::CudaHandwritten, Backend::CudaCublas,
                                    Backend::CudaVendor};

// The backend a case's vs_ref compares with: its op's vendor backend on devices of `type`,
// cuda-vendor (cuDNN) where the op has one, else cuda-cublas (products); cpu-fast (oneDNN) on the
// CPU. None when the op has only minidl's own kernels there. The ratio needs that backend's row
// in the same run: when it cannot run here or --backends leaves it out, vs_ref stays empty.
std::optional<Backend> reference_backend(const OpInfo& op, DeviceType type) {
  const std::vector<Backend> prefs =
      type == DeviceType::CPU ? std::vector<Backend>{Backend::CpuFast}
                              : std::vector<Backend>{Backend::CudaVendor, Backend::CudaCublas};
  for (Backend b : prefs)
    if (op.has(b)) return b;
  return std::nullopt;
}

// --backends (and its old names --kernels, --cpu-kernels): backend names, or the kernel-path
// names earlier versions took: handwritten (cpu-reference and cuda-handwritten), cublas
// (cuda-cublas), cudnn (cuda-vendor), onednn (cpu-fast).
void parse_backends(std::vector<Backend>& out, const std::string& flag, const std::string& list) {
  auto add = [&](Backend b) {
    if (std::find(out.begin(), out.end(), b) == out.end()) out.push_back(b);
  };
  for (const std::string& name : bench::split_commas(list)) {
    if (name == "handwritten") {
      add(Backend::CpuReference);
      add(Backend::CudaHandwritten);
    } else if (name == "cublas") {
      add(Backend::CudaCublas);
    } else if (name == "cudnn") {
      add(Backend::CudaVendor);
    } else if (name == "onednn") {
      add(Backend::CpuFast);
    } else {
      const auto* b = std::find_if(std::begin(kAllBackends), std::end(kAllBackends),
                                   [&](Backend k) { return name == backend_name(k); });
      MINIDL_CHECK(b != std::end(kAllBackends), "--", flag, " '", name,
                   "': expected backend names (cpu-reference, cpu-fast, cuda-handwritten, "
                   "cuda-cublas, cuda-vendor; kernels/backend.h) or the old path names "
                   "handwritten, cublas, cudnn, onednn");
      add(*b);
    }
  }
}

bool wanted(const Options& o, Backend b) {
  return o.only.empty() || std::find(o.only.begin(), o.only.end(), b) != o.only.end();
}

// The backends a case's rows run on: its op's that can run on the device here, less those
// --backends leaves out.
std::vector<Backend> case_backends(const Case& c, const Options& o) {
  std::vector<Backend> out;
  for (Backend b : runnable_backends(*c.op, o.device.type))
    if (wanted(o, b)) out.push_back(b);
  return out;
}

// Why `b` cannot run on devices of `type` here (for the header), "" when it can.
std::string why_not_runnable(Backend b, DeviceType type) {
  if (backend_device_type(b) != type)
    return str("not a ", type == DeviceType::CPU ? "CPU" : "CUDA", " backend");
  if (!backend_built(b))
    return b == Backend::CpuFast ? "not in this build (no oneDNN)" : "not in this build";
  if (!backend_runnable(b)) return "no GPU here";
  return "";
}

std::string join_backends(const std::vector<Backend>& bs,
                          std::optional<Backend> mark = std::nullopt) {
  std::string s;
  for (Backend b : bs) s += str(s.empty() ? "" : ", ", backend_name(b), mark == b ? "*" : "");
  return s.empty() ? "-" : s;
}

// ---------------------------------------------------------------- the table

struct Row {
  const Case* c = nullptr;
  Backend backend = Backend::CpuReference;
  DType dtype = DType::F32;
  bool checked = false;
  CheckResult check;
  TimingStats t;
  std::string error;  // the op threw: a failure, or a shape this backend does not take
  double vs_ref = kNaN;
  double gflops = kNaN, gbps = kNaN, roof = kNaN;
};

// The row's function name: the case's, with _bf16 / _fp16 for 16-bit rows (the table's and the
// CSV's `op` column, so compare.py keys them apart).
std::string row_name(const Row& r) {
  if (r.dtype == DType::BF16) return r.c->name + "_bf16";
  if (r.dtype == DType::F16) return r.c->name + "_fp16";
  return r.c->name;
}

std::string fmt_num(double v, const char* spec = "{:.4g}") {
  return std::isfinite(v) ? fmt::format(fmt::runtime(spec), v) : "-";
}

std::string check_text(const Row& r) {
  if (!r.error.empty()) return "ERROR";
  if (!r.checked) return "-";
  return fmt::format("{} {}", r.check.ok ? "ok" : "FAIL", fmt_num(r.check.rel_err, "{:.0e}"));
}

constexpr const char* kTableFmt =
    "{:<24} {:<30} {:<16} {:<11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>7}\n";

void print_table_header() {
  fmt::print(fmt::runtime(kTableFmt), "op", "shape", "backend", "check", "median_ms", "min_ms",
             "p10_ms", "p90_ms", "GFLOP/s", "GB/s", "roof%", "vs_ref");
}

void print_row(const Row& r) {
  fmt::print(fmt::runtime(kTableFmt), row_name(r), r.c->shape, backend_name(r.backend),
             check_text(r), fmt_num(r.error.empty() ? r.t.median : kNaN),
             fmt_num(r.error.empty() ? r.t.min : kNaN), fmt_num(r.error.empty() ? r.t.p10 : kNaN),
             fmt_num(r.error.empty() ? r.t.p90 : kNaN), fmt_num(r.gflops, "{:.1f}"),
             fmt_num(r.gbps, "{:.1f}"), fmt_num(r.roof, "{:.1f}"), fmt_num(r.vs_ref, "{:.2f}"));
  if (!r.error.empty()) fmt::print("    error: {}\n", r.error);
  if (r.checked && !r.check.ok) fmt::print("    check failed: {}\n", r.check.what);
}

// `op` is the case's function (conv2d_fwd), `table_op` its entry in the op table (conv2d).
const char* kCsvHeader =
    "op,table_op,shape,params,models,backend,device,batch,check,check_rel_err,repeats,median_ms,"
    "min_ms,p10_ms,p90_ms,flops,bytes,gflops,gbps,roofline_pct,ref_backend,vs_ref,error\n";

double row_bytes(const Row& r) {
  return r.dtype == DType::F32 ? r.c->bytes(r.backend) : r.c->bytes16(r.backend);
}

std::string csv_row(const Row& r, const Options& o) {
  using bench::csv_field;
  const Case& c = *r.c;
  const bool ok = r.error.empty();
  auto num = [](double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string(); };
  const std::optional<Backend> ref = reference_backend(*c.op, o.device.type);
  return fmt::format(
      "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", row_name(r),
      c.op->name, csv_field(c.shape), c.params, csv_field(c.models), backend_name(r.backend),
      o.device.str(), o.batch, !ok ? "error" : (r.checked ? (r.check.ok ? "ok" : "fail") : ""),
      r.checked ? num(r.check.rel_err) : "", ok ? std::to_string(r.t.count) : "",
      ok ? num(r.t.median) : "", ok ? num(r.t.min) : "", ok ? num(r.t.p10) : "",
      ok ? num(r.t.p90) : "", num(c.flops), num(row_bytes(r)), num(r.gflops), num(r.gbps),
      num(r.roof), ref ? backend_name(*ref) : "", num(r.vs_ref), csv_field(r.error));
}

std::string ceiling_csv(const std::string& what, const std::string& how, const TimingStats& t,
                        double flops, double bytes, const Options& o) {
  auto num = [](double v) { return std::isfinite(v) && v > 0 ? fmt::format("{:.6g}", v) : std::string(); };
  return fmt::format("ceiling_{},,{},,ceiling,{},{},{},,,{},{},{},{},{},{},{},{},{},,,,\n", what,
                     bench::csv_field(how), o.device.is_cuda() ? "cuda-cublas" : "cpu-reference",
                     o.device.str(), o.batch, t.count, num(t.median), num(t.min), num(t.p10),
                     num(t.p90), num(flops), num(bytes), num(flops / (t.median * 1e6)),
                     num(bytes / (t.median * 1e6)));
}

// --list: the op table, then the cases of each op with the backends they would run on.
void print_list(const std::vector<Case>& cases, const Options& o) {
  fmt::print("# the op table (kernels/backend.h): each op's backends\n\n{}\n", op_table_markdown());
  fmt::print(
      "# cases per op at batch {}, shapes {}; backends: built in, on each device type, "
      "after --backends; * = the reference of vs_ref\n",
      o.batch, o.shapes);
  size_t rows[2] = {0, 0};
  const DeviceType types[2] = {DeviceType::CPU, DeviceType::CUDA};
  for (const OpInfo* op : op_table()) {
    std::vector<Backend> on[2];
    for (int t = 0; t < 2; ++t)
      for (const OpBackend& ob : op->backends)
        if (backend_device_type(ob.backend) == types[t] && backend_built(ob.backend) &&
            wanted(o, ob.backend))
          on[t].push_back(ob.backend);
    size_t n = 0;
    for (const Case& c : cases) n += c.op == op;
    fmt::print("\n{}: {} case{}; cpu: {}; cuda: {}\n", op->name, n, n == 1 ? "" : "s",
               join_backends(on[0], reference_backend(*op, DeviceType::CPU)),
               join_backends(on[1], reference_backend(*op, DeviceType::CUDA)));
    for (const Case& c : cases) {
      if (c.op != op) continue;
      fmt::print("  {:<20} {:<30} {}\n", c.name, c.shape, c.models);
      for (int t = 0; t < 2; ++t) rows[t] += on[t].size();
    }
  }
  fmt::print("\n# {} cases: {} rows on the CPU, {} on a GPU (this build)\n", cases.size(), rows[0],
             rows[1]);
}

// ---------------------------------------------------------------- main

const char* kHelp = R"(bench_kernels: check and time every minidl op at model layer shapes

Each case (an op's function at one shape) runs on every backend of its op (kernels/backend.h)
that can run on the device: cpu-reference and cpu-fast (oneDNN) on the CPU; cuda-handwritten,
cuda-cublas and cuda-vendor (cuDNN) on a GPU. vs_ref compares with the op's vendor backend
(cuda-vendor, else cuda-cublas; cpu-fast on the CPU) measured in the same run.

  --device cpu|cuda|cuda:N   where to run (default cuda when available, else cpu)
  --batch N                  batch size of the shapes (default 128 on a GPU, 8 on the CPU)
  --ops a,b                  only cases whose name contains one of these (e.g. conv2d,relu_fwd)
  --shapes NAME              resnet18 | resnet50 | alexnet | all (default all)
  --backends a,b             only these backends (default: every one the device can run), e.g.
                             cuda-handwritten,cuda-vendor. The old path names are accepted too:
                             handwritten (= cpu-reference, cuda-handwritten), cublas (cuda-cublas),
                             cudnn (cuda-vendor), onednn (cpu-fast). A ratio needs the reference
                             backend's row: leave it out and vs_ref is empty.
  --kernels a,b, --cpu-kernels a,b
                             old names of --backends (the lists are merged)
  --repeats N                timed repeats per row (default: as many as fit in 0.2 s GPU / 1 s CPU)
  --gemm-size N              size of the SGEMM ceiling and gemm rows (default 8192 GPU, 2048 CPU)
  --csv PATH                 also write the rows as CSV
  --seed N                   seed of the random inputs (default: drawn, and printed)
  --threads N                OpenMP threads on the CPU (default: all)
  --dtypes a,b               float32 (default), bfloat16, float16 (fp32, bf16, fp16): the
                             memory-bound ops (batchnorm, relu, pooling, add, dropout) also run
                             with 16-bit activations where the op table lists the dtype, as rows
                             named op_bf16 / op_fp16; roof% is then their share of the copy
                             bandwidth (issue 20's target: >= 80%)
  --list                     print the op table and each op's cases with their backends, and exit
  --tc-gemm                  only the tensor-core GEMM (bf16, fp16) against cublasGemmEx at 1024,
                             2048, 4096 and --gemm-size, checked against float64 first, and exit
)";

// --tc-gemm: minidl's tensor-core GEMM (kernels/gemm_tc.h) against cublasGemmEx with the same
// 16-bit inputs, float32 output and CUBLAS_COMPUTE_32F, square sizes, no transposes, beta = 0.
// Each is first checked on a 97 x 83 x 111 product against float64 (the bound of
// tests/cuda/gemm_tc_test.cpp: K float32 additions of exact products, u = 2^-23); then timed like
// every row (median of repeats, caches flushed). speed = cuBLAS median / gemm_tc median (1 = as
// fast as cuBLAS; issue 20's target is >= 0.6 for bf16).
#if MINIDL_WITH_CUDA && !MINIDL_CUDA_SIM
int run_tc_gemm(const Options& o) {
  const Device d = o.device;
  MINIDL_CHECK(d.is_cuda(), "--tc-gemm: needs --device cuda");
  CudaContext& ctx = cuda_context(d);
  std::mt19937_64 rng(o.seed);
  auto bits = [&](DType t, size_t n) {
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<uint16_t> v(n);
    for (auto& e : v)
      e = t == DType::BF16 ? __bfloat16_as_ushort(__float2bfloat16_rn(u(rng)))
                           : __half_as_ushort(__float2half_rn(u(rng)));
    return v;
  };
  auto to_double = [](DType t, uint16_t b) {
    return t == DType::BF16 ? double(__bfloat162float(__ushort_as_bfloat16(b)))
                            : double(__half2float(__ushort_as_half(b)));
  };
  auto upload = [&](const std::vector<uint16_t>& v) {
    Tensor t = Tensor::empty({int64_t(v.size()) * 2}, DType::U8, d);
    memcpy_any(t.raw_data(), d, v.data(), Device::cpu(), v.size() * 2);
    return t;
  };
  // Row-major C (M x N) = A (M x K) B (K x N) is column-major C^T = B^T A^T.
  auto cublas = [&](DType t, int64_t M, int64_t N, int64_t K, const void* A, const void* B,
                    float* C) {
    const float one = 1.f, zero = 0.f;
    const cudaDataType_t ty = t == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
    cublasMath_t mode;
    CUBLAS_CHECK(cublasGetMathMode(ctx.cublas, &mode));
    CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, CUBLAS_DEFAULT_MATH));  // the handle is pedantic
    const cublasStatus_t st = cublasGemmEx(
        ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_N, int(N), int(M), int(K), &one, B, ty, int(N), A, ty,
        int(K), &zero, C, CUDA_R_32F, int(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, mode));
    CUBLAS_CHECK(st);
  };
  auto tc = [&](int64_t M, int64_t N, int64_t K) {
    GemmShape s;
    s.M = M;
    s.N = N;
    s.K = K;
    s.lda = K;
    s.ldb = N;
    s.ldc = N;
    return s;
  };
  fmt::print(
      "# tensor-core GEMM: minidl gemm_tc vs cublasGemmEx (CUBLAS_COMPUTE_32F), C = A B,\n"
      "# A, B 16-bit, C float32; speed = cuBLAS median / gemm_tc median\n");
  fmt::print("# device: {}\n# commit: {}   date: {}   seed: {}\n", bench::device_summary(d),
             bench::git_commit(), bench::utc_now(), o.seed);
  fmt::print("{:<6} {:>6} {:>10} {:>10} {:>11} {:>11} {:>7}  {}\n", "dtype", "size", "tc ms",
             "cublas ms", "tc TFLOP/s", "cub TFLOP/s", "speed", "check (max err / bound)");
  int failures = 0;
  for (DType t : {DType::BF16, DType::F16}) {
    // The check: odd sizes against float64.
    const int64_t m = 97, n = 83, k = 111;
    const std::vector<uint16_t> ha = bits(t, size_t(m * k)), hb = bits(t, size_t(k * n));
    Tensor a = upload(ha), b = upload(hb);
    Tensor c1 = Tensor::empty({m, n}, DType::F32, d), c2 = Tensor::empty({m, n}, DType::F32, d);
    c1.fill_(std::nan(""));
    c2.fill_(std::nan(""));
    cuda::gemm_tc(tc(m, n, k), t, 1.f, a.raw_data(), b.raw_data(), 0.f, c1.data<float>(), ctx);
    cublas(t, m, n, k, a.raw_data(), b.raw_data(), c2.data<float>());
    const std::vector<float> r1 = c1.to(Device::cpu()).to_vector<float>(),
                             r2 = c2.to(Device::cpu()).to_vector<float>();
    const double u = std::ldexp(1.0, -23), gamma = double(k) * u / (1 - double(k) * u);
    double worst1 = 0, worst2 = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double ref = 0, S = 0;
        for (int64_t l = 0; l < k; ++l) {
          const double p =
              to_double(t, ha[size_t(i * k + l)]) * to_double(t, hb[size_t(l * n + j)]);
          ref += p;
          S += std::fabs(p);
        }
        const double bound = gamma * S + 1e-30;
        const double e1 = std::fabs(r1[size_t(i * n + j)] - ref) / bound,
                     e2 = std::fabs(r2[size_t(i * n + j)] - ref) / bound;
        worst1 = std::isnan(e1) ? HUGE_VAL : std::max(worst1, e1);
        worst2 = std::isnan(e2) ? HUGE_VAL : std::max(worst2, e2);
      }
    const bool ok = worst1 <= 1.0 && worst2 <= 1.0;
    failures += !ok;
    for (int64_t size : {int64_t(1024), int64_t(2048), int64_t(4096), o.gemm_size}) {
      if (size == o.gemm_size && (size == 1024 || size == 2048 || size == 4096)) continue;
      const size_t nn = size_t(size * size);
      Tensor A = upload(bits(t, nn)), B = upload(bits(t, nn));
      Tensor C = Tensor::empty({size, size}, DType::F32, d);
      const GemmShape s = tc(size, size, size);
      const TimingStats tt = time_op(
          [&] { cuda::gemm_tc(s, t, 1.f, A.raw_data(), B.raw_data(), 0.f, C.data<float>(), ctx); },
          o);
      const TimingStats tb = time_op(
          [&] { cublas(t, size, size, size, A.raw_data(), B.raw_data(), C.data<float>()); }, o);
      const double flops = 2.0 * double(size) * double(size) * double(size);
      fmt::print(
          "{:<6} {:>6} {:>10.3f} {:>10.3f} {:>11.1f} {:>11.1f} {:>7.2f}  {} (gemm_tc {:.2f}, "
          "cuBLAS {:.2f})\n",
          t == DType::BF16 ? "bf16" : "fp16", size, tt.median, tb.median, flops / (tt.median * 1e9),
          flops / (tb.median * 1e9), tb.median / tt.median, ok ? "ok" : "FAILED", worst1, worst2);
      std::fflush(stdout);
    }
  }
  return failures == 0 ? 0 : 1;
}
#else
int run_tc_gemm(const Options&) {
  throw_error("--tc-gemm: this build has no CUDA backend (configure with nvcc on PATH)");
}
#endif

int run(int argc, char** argv) {
  const Args args(argc, argv,
                  {"device", "batch", "ops", "shapes", "repeats", "csv", "seed", "threads",
                   "gemm-size", "list", "backends", "kernels", "cpu-kernels", "tc-gemm", "dtypes"},
                  "bench_kernels");
  if (args.has("help")) {
    fmt::print("{}", kHelp);
    return 0;
  }
  Options o;
  o.device = Device::parse(args.get("device", cuda_available() ? "cuda" : "cpu"));
  if (args.has("threads")) omp_set_num_threads(static_cast<int>(args.get_int("threads", 1)));
  o.batch = args.get_int("batch", o.device.is_cuda() ? 128 : 8);
  MINIDL_CHECK(o.batch >= 1, "--batch: expected a positive batch size, got ", o.batch);
  o.ops = bench::split_commas(args.get("ops", ""));
  o.shapes = args.get("shapes", "all");
  o.repeats = args.get_int("repeats", 0);
  o.csv = args.get("csv", "");
  o.seed = static_cast<uint64_t>(args.get_int("seed", static_cast<int64_t>(std::random_device{}() & 0x7fffffff)));
  o.gemm_size = args.get_int("gemm-size", o.device.is_cuda() ? 8192 : 2048);
  for (const char* flag : {"backends", "kernels", "cpu-kernels"})
    if (args.has(flag)) parse_backends(o.only, flag, args.get(flag, ""));
  if (args.has("dtypes")) {
    o.dtypes.clear();
    for (const std::string& name : bench::split_commas(args.get("dtypes", ""))) {
      const DType t = name == "float32" || name == "fp32"    ? DType::F32
                      : name == "bfloat16" || name == "bf16" ? DType::BF16
                      : name == "float16" || name == "fp16"  ? DType::F16
                                                             : DType::F64;
      MINIDL_CHECK(t != DType::F64, "--dtypes: '", name,
                   "' is not one of float32 (fp32), bfloat16 (bf16), float16 (fp16)");
      o.dtypes.push_back(t);
    }
    MINIDL_CHECK(!o.dtypes.empty(), "--dtypes: expected a list such as float32,bfloat16,float16");
  }

  if (args.has("tc-gemm")) {
    require_device(o.device);
    return run_tc_gemm(o);
  }
  std::vector<Case> cases = build_cases(model_shapes(o.shapes), o.batch, o.gemm_size);
  if (!o.ops.empty()) {
    std::erase_if(cases, [&](const Case& c) {
      for (const auto& f : o.ops)
        if (c.name.find(f) != std::string::npos) return false;
      return true;
    });
    MINIDL_CHECK(!cases.empty(), "--ops '", args.get("ops", ""),
                 "': matches no case (--list shows them)");
  }

  if (args.has("list")) {
    print_list(cases, o);
    return 0;
  }

  require_device(o.device);
  // The run's settings (core/device_settings.h): TF32 off, since every row is checked against
  // float64 and minidl trains in float32. The explicit forms below name their backend, so the
  // kernel-family settings (kernels, cpu_kernels) choose nothing here.
  DeviceSettings settings;
  settings.allow_tf32 = false;
  set_run_settings(settings);

  // The backends that run here, and those --backends asked for that cannot.
  std::vector<Backend> here, missing;
  for (Backend b : kAllBackends) {
    if (!wanted(o, b)) continue;
    if (backend_device_type(b) == o.device.type && backend_runnable(b))
      here.push_back(b);
    else if (!o.only.empty() && backend_device_type(b) == o.device.type)
      missing.push_back(b);
  }
  size_t n_rows = 0;
  for (const Case& c : cases)
    for (Backend b : case_backends(c, o)) n_rows += row_dtypes(c, b, o).size();
  MINIDL_CHECK(n_rows > 0, "--backends '", join_backends(o.only), "': none of these runs on ",
               o.device, " here (this device can run: ", join_backends([&] {
                 std::vector<Backend> v;
                 for (Backend b : kAllBackends)
                   if (backend_device_type(b) == o.device.type && backend_runnable(b))
                     v.push_back(b);
                 return v;
               }()),
               ")");

  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    MINIDL_CHECK(csv.good(), "--csv: cannot write '", o.csv, "'");
    csv << kCsvHeader;
  }

  fmt::print("# bench_kernels: correctness against the float64 CPU reference, then the median of "
             "many repeats (caches flushed before each)\n");
  fmt::print("# device: {}\n", bench::device_summary(o.device));
  if (o.device.is_cpu()) fmt::print("# {}\n", cpu_kernels_summary());
  fmt::print("# commit: {}   date: {}   seed: {}\n", bench::git_commit(), bench::utc_now(), o.seed);
  fmt::print("# command: {}\n", bench::command_line(argc, argv));
  fmt::print("# batch {}, shapes {}, {} cases, {} rows; TF32 off\n", o.batch, o.shapes,
             cases.size(), n_rows);
  fmt::print(
      "# backends: each case on every backend of its op (kernels/backend.h, --list) that runs "
      "here: {}\n",
      join_backends(here));
  for (Backend b : missing)
    fmt::print("# --backends: {} skipped, {}\n", backend_name(b),
               why_not_runnable(b, o.device.type));
  std::fflush(stdout);

  const Ceilings ceil = measure_ceilings(o);
  fmt::print("# ceiling copy:  {:.1f} GB/s ({}; bytes read + written; median of {})\n", ceil.copy_gbps,
             ceil.copy_how, ceil.copy_t.count);
  fmt::print("# ceiling sgemm: {:.1f} GFLOP/s ({}, fp32)", ceil.sgemm_gflops, ceil.sgemm_how);
  if (o.device.is_cuda()) fmt::print(", TF32 {:.1f} GFLOP/s", ceil.tf32_gflops);
  fmt::print(
      "\n# roof% = max(flops / sgemm fp32, bytes / copy) / median; vs_ref = median / median "
      "of the op's vendor backend, same shape ({})\n\n",
      o.device.is_cuda() ? "cuda-vendor, else cuda-cublas" : "cpu-fast");
  if (csv.is_open()) {
    const double m = double(o.gemm_size), copy_bytes = 2.0 * double(int64_t(256) << 20);
    csv << ceiling_csv("copy", ceil.copy_how, ceil.copy_t, 0, copy_bytes, o);
    csv << ceiling_csv("sgemm", ceil.sgemm_how, ceil.sgemm_t, 2 * m * m * m, 3 * 4 * m * m, o);
    if (o.device.is_cuda())
      csv << ceiling_csv("tf32", ceil.sgemm_how + " TF32", ceil.tf32_t, 2 * m * m * m, 3 * 4 * m * m, o);
    csv.flush();
  }

  print_table_header();
  std::vector<Row> all_rows;
  int failures = 0;
  uint64_t case_seed = o.seed;
  for (const Case& c : cases) {
    ++case_seed;
    std::vector<Row> rows;
    for (Backend b : case_backends(c, o))
      for (DType dt : row_dtypes(c, b, o)) {
        Row r;
        r.c = &c;
        r.backend = b;
        r.dtype = dt;
        try {
          // The small case, on the device in `dt` on backend b and on the CPU in float64 on
          // cpu-reference, same inputs (16-bit rows: the reference draws the same 16-bit values).
          Inputs ref_in(Device::cpu(), DType::F64, Backend::CpuReference, case_seed, dt),
              dev_in(o.device, dt, b, case_seed);
          Instance ref = c.make(ref_in, true), dev = c.make(dev_in, true);
          ref.run();
          dev.run();
          const double u = dt == DType::BF16 ? 0x1p-8 : dt == DType::F16 ? 0x1p-11 : 0.0;
          r.check = compare_outputs(dev.outputs, ref.outputs, u);
          r.checked = true;
          // The full-size case, fresh inputs.
          Inputs big_in(o.device, dt, b, case_seed * 7919u + 1);
          Instance big = c.make(big_in, false);
          r.t = time_op(big.run, o);
          const double s = r.t.median * 1e-3;
          const double bytes = row_bytes(r);
          if (c.flops > 0) r.gflops = c.flops / s * 1e-9;
          r.gbps = bytes / s * 1e-9;
          const double roof_s =
              std::max(c.flops / (ceil.sgemm_gflops * 1e9), bytes / (ceil.copy_gbps * 1e9));
          r.roof = 100.0 * roof_s / s;
        } catch (const std::exception& e) {
          r.error = e.what();
        }
        if (!r.error.empty() || (r.checked && !r.check.ok)) ++failures;
        rows.push_back(r);
      }
    if (const std::optional<Backend> ref_b = reference_backend(*c.op, o.device.type)) {
      // Each row against the reference backend's row of the same dtype.
      for (Row& r : rows) {
        const auto ref = std::find_if(rows.begin(), rows.end(), [&](const Row& x) {
          return x.backend == *ref_b && x.dtype == r.dtype && x.error.empty();
        });
        if (ref != rows.end() && r.error.empty()) r.vs_ref = r.t.median / ref->t.median;
      }
    }
    for (const Row& r : rows) {
      print_row(r);
      if (csv.is_open()) csv << csv_row(r, o);
      all_rows.push_back(r);
    }
    std::fflush(stdout);
    if (csv.is_open()) csv.flush();
  }

  // Per op and backend: the geometric mean of vs_ref and the median roof% over the shapes.
  fmt::print("\n# summary per op and backend: shapes, geometric mean of vs_ref, median roof%\n");
  std::map<std::pair<std::string, Backend>, std::vector<const Row*>> groups;
  std::vector<std::pair<std::string, Backend>> order;
  for (const Row& r : all_rows) {
    auto key = std::make_pair(row_name(r), r.backend);
    if (!groups.count(key)) order.push_back(key);
    groups[key].push_back(&r);
  }
  fmt::print("{:<24} {:<16} {:>6} {:>11} {:>10}\n", "op", "backend", "shapes", "geo vs_ref",
             "med roof%");
  for (const auto& key : order) {
    double log_sum = 0.0;
    int n_ref = 0;
    std::vector<double> roofs;
    for (const Row* r : groups[key]) {
      if (std::isfinite(r->vs_ref)) {
        log_sum += std::log(r->vs_ref);
        ++n_ref;
      }
      if (std::isfinite(r->roof)) roofs.push_back(r->roof);
    }
    const double geo = n_ref ? std::exp(log_sum / n_ref) : kNaN;
    const double roof = roofs.empty() ? kNaN : summarize_timings(roofs).median;
    fmt::print("{:<24} {:<16} {:>6} {:>11} {:>10}\n", key.first, backend_name(key.second),
               groups[key].size(), fmt_num(geo, "{:.2f}"), fmt_num(roof, "{:.1f}"));
  }
  fmt::print("\n# {} rows, {} failed checks or errors\n", all_rows.size(), failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_kernels: " << e.what() << "\n";
    return 2;
  }
}

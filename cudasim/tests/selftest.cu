// cudasim's own tests: the emulator must run correct kernels correctly and flag broken ones,
// each with the message a developer needs (kind of error, file:line, thread). Every broken kernel
// here is a bug that a real GPU would turn into a wrong result, a hang or undefined behaviour.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

namespace {

template <class T>
T* to_device(const std::vector<T>& v) {
  T* p = nullptr;
  REQUIRE(cudaMalloc(&p, v.size() * sizeof(T)) == cudaSuccess);
  REQUIRE(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  return p;
}
template <class T>
std::vector<T> to_host(const T* p, size_t n) {
  std::vector<T> v(n);
  REQUIRE(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return v;
}
// The launch's error message ("" when it succeeded); clears the sticky error.
std::string launch_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

// Tree reduction of 256 values in shared memory; `barriers` false drops every __syncthreads.
__global__ void block_sum(const float* x, float* out, bool barriers) {
  __shared__ float s[256];
  s[threadIdx.x] = x[threadIdx.x];
  if (barriers) __syncthreads();
  for (int stride = 128; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
    if (barriers) __syncthreads();
  }
  if (threadIdx.x == 0) *out = s[0];
}

__global__ void warp_ops(const float* x, float* sum, unsigned* ballot, float* up, float* bcast) {
  const float v = x[threadIdx.x];
  float s = v;
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  sum[threadIdx.x] = s;
  ballot[threadIdx.x] = __ballot_sync(0xffffffffu, v > 0.f);
  up[threadIdx.x] = __shfl_up_sync(0xffffffffu, v, 1);
  bcast[threadIdx.x] = __shfl_sync(0xffffffffu, v, 5);
}

__global__ void shuffle_after_exit(float* out) {
  if (threadIdx.x >= 16) return;  // half the warp leaves, the mask still names it
  float v = static_cast<float>(threadIdx.x);
  v += __shfl_down_sync(0xffffffffu, v, 8);
  out[threadIdx.x] = v;
}

__global__ void shuffle_partial_warp(float* out) {
  float v = static_cast<float>(threadIdx.x);
  v += __shfl_down_sync(0xffffffffu, v, 1);  // the block has 20 threads: lanes 20..31 do not exist
  out[threadIdx.x] = v;
}

__global__ void barrier_after_exit(float* out) {
  if (threadIdx.x < 5) return;
  __syncthreads();
  out[threadIdx.x] = 1.f;
}

__global__ void barrier_vs_shuffle(float* out) {
  float v = static_cast<float>(threadIdx.x);
  if (threadIdx.x == 0)
    __syncthreads();
  else
    v = __shfl_sync(0xffffffffu, v, 1);  // waits for lane 0, which waits at the barrier
  out[threadIdx.x] = v;
}

__global__ void too_much_shared(float* out) {
  __shared__ float big[16 * 1024];  // 64 KiB
  big[threadIdx.x] = 1.f;
  out[threadIdx.x] = big[threadIdx.x];
}

__global__ void scale(float* y, const float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = 2.f * x[i];
}

// ---------------------------------------------------------------- WMMA
using namespace nvcuda;

// D (16 x 16, row-major) = A (16 x K) B (K x 16) + C (16 x 16, column-major), K a multiple of 16.
// A is row-major (ldm K) or column-major (ldm 16); B row-major (ldm 16) or column-major (ldm K).
template <class T, class LA, class LB>
__global__ void wmma_tile(const T* A, const T* B, const float* C, float* D, int K) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LA> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LB> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(acc, C, 16, wmma::mem_col_major);
  constexpr bool a_row = std::is_same_v<LA, wmma::row_major>;
  constexpr bool b_row = std::is_same_v<LB, wmma::row_major>;
  for (int k0 = 0; k0 < K; k0 += 16) {
    wmma::load_matrix_sync(a, a_row ? A + k0 : A + k0 * 16, a_row ? K : 16);
    wmma::load_matrix_sync(b, b_row ? B + k0 * 16 : B + k0, b_row ? 16 : K);
    wmma::mma_sync(acc, a, b, acc);
  }
  wmma::store_matrix_sync(D, acc, 16, wmma::mem_row_major);
}

// Stages a 16 x 16 tile in shared memory with a row pitch of `pitch` elements and loads it with
// ldm = pitch; `offset` shifts the tile's start (misalignment). One warp.
__global__ void wmma_load_from_shared(const __nv_bfloat16* A, float* D, int pitch, int offset) {
  __shared__ __align__(32) __nv_bfloat16 s[16 * 40];
  for (int i = threadIdx.x; i < 256; i += 32) s[offset + (i / 16) * pitch + i % 16] = A[i];
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.f);
  wmma::load_matrix_sync(a, s + offset, pitch);
  wmma::load_matrix_sync(b, s + offset, pitch);
  wmma::mma_sync(acc, a, b, acc);
  wmma::store_matrix_sync(D, acc, 16, wmma::mem_row_major);
}

// Two warps stage the tile (each thread 4 elements); warp 0 multiplies it by itself. Without the
// barrier, warp 0 may read elements warp 1 has not written yet.
__global__ void wmma_staging(const __nv_bfloat16* A, float* D, bool barrier) {
  __shared__ __align__(32) __nv_bfloat16 s[256];
  for (int i = threadIdx.x; i < 256; i += 64) s[i] = A[i];
  if (barrier) __syncthreads();
  if (threadIdx.x < 32) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
    wmma::load_matrix_sync(a, s, 16);
    wmma::load_matrix_sync(b, s, 16);
    wmma::mma_sync(acc, a, b, acc);
    wmma::store_matrix_sync(D, acc, 16, wmma::mem_row_major);
  }
}

// mode 0: half the warp leaves before the load; 1: the two halves load from different lines;
// 2: the lanes pass different pointers.
__global__ void wmma_diverged(const __nv_bfloat16* A, float* D, int mode) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
  const int lane = threadIdx.x % 32;
  if (mode == 0 && lane >= 16) return;
  if (mode == 1 && lane < 16)
    wmma::load_matrix_sync(a, A, 16);
  else if (mode == 1)
    wmma::load_matrix_sync(a, A, 16);
  if (mode == 0) wmma::load_matrix_sync(a, A, 16);
  if (mode == 2) wmma::load_matrix_sync(a, lane < 8 ? A : A + 256, 16);
  D[threadIdx.x] = static_cast<float>(a.x[0]);
}

std::vector<float> iota_values(int n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>((i * 7) % 13) - 6.f;
  return v;
}

}  // namespace

TEST_CASE("cudasim runs a correct block reduction in every fiber order", "[cudasim]") {
  const std::vector<float> x = iota_values(256);
  double expect = 0;
  for (float v : x) expect += v;
  float* dx = to_device(x);
  float* dout = to_device(std::vector<float>{0.f});
  block_sum<<<1, 256>>>(dx, dout, true);
  REQUIRE(launch_error().empty());
  CHECK(to_host(dout, 1)[0] == static_cast<float>(expect));
  cudaFree(dx);
  cudaFree(dout);
}

TEST_CASE("cudasim: a reduction without barriers reads indeterminate shared memory", "[cudasim]") {
  // Without race instrumentation the emulator runs the threads of a barrier interval one after the
  // other, so thread 0 reads s[128] before thread 128 wrote it: shared memory starts as NaN, and
  // the result cannot come out right. (In race mode the race itself is reported: next test.)
  if (cudasim::race_mode()) return;
  float* dx = to_device(iota_values(256));
  float* dout = to_device(std::vector<float>{0.f});
  block_sum<<<1, 256>>>(dx, dout, false);
  REQUIRE(launch_error().empty());
  CHECK(std::isnan(to_host(dout, 1)[0]));
  cudaFree(dx);
  cudaFree(dout);
}

TEST_CASE("cudasim race mode reports the missing barrier", "[cudasim][race]") {
  if (!cudasim::race_mode()) {
    WARN("not in race mode (CUDASIM_RACE=1 with the race-instrumented test binary)");
    return;
  }
  float* dx = to_device(iota_values(256));
  float* dout = to_device(std::vector<float>{0.f});
  block_sum<<<1, 256>>>(dx, dout, false);
  const std::string e = launch_error();
  INFO(e);
  CHECK(e.find("shared-memory race") != std::string::npos);
  CHECK(e.find("selftest.cu:") != std::string::npos);
  // The correct kernel passes in race mode (random fiber order) for many launches.
  for (int i = 0; i < 20; ++i) {
    block_sum<<<1, 256>>>(dx, dout, true);
    REQUIRE(launch_error().empty());
  }
  cudaFree(dx);
  cudaFree(dout);
}

TEST_CASE("cudasim warp shuffles and ballots exchange lanes as on a GPU", "[cudasim]") {
  const std::vector<float> x = iota_values(64);
  float* dx = to_device(x);
  float *sum = nullptr, *up = nullptr, *bcast = nullptr;
  unsigned* ballot = nullptr;
  cudaMalloc(&sum, 64 * sizeof(float));
  cudaMalloc(&up, 64 * sizeof(float));
  cudaMalloc(&bcast, 64 * sizeof(float));
  cudaMalloc(&ballot, 64 * sizeof(unsigned));
  warp_ops<<<1, 64>>>(dx, sum, ballot, up, bcast);
  REQUIRE(launch_error().empty());
  const auto s = to_host(sum, 64), u = to_host(up, 64), b = to_host(bcast, 64);
  const auto bl = to_host(ballot, 64);
  for (int w = 0; w < 2; ++w) {
    float expect = 0;
    unsigned mask = 0;
    for (int l = 0; l < 32; ++l) {
      expect += x[static_cast<size_t>(w * 32 + l)];
      if (x[static_cast<size_t>(w * 32 + l)] > 0.f) mask |= 1u << l;
    }
    for (int l = 0; l < 32; ++l) {
      const size_t i = static_cast<size_t>(w * 32 + l);
      CHECK(s[i] == expect);
      CHECK(bl[i] == mask);
      CHECK(u[i] == x[l == 0 ? i : i - 1]);  // lane 0 keeps its own value
      CHECK(b[i] == x[static_cast<size_t>(w * 32 + 5)]);
    }
  }
  cudaFree(dx);
  cudaFree(sum);
  cudaFree(up);
  cudaFree(bcast);
  cudaFree(ballot);
}

TEST_CASE("cudasim flags broken warp collectives and barriers with file:line", "[cudasim]") {
  float* out = nullptr;
  cudaMalloc(&out, 64 * sizeof(float));
  SECTION("a shuffle mask naming lanes that exited") {
    shuffle_after_exit<<<1, 32>>>(out);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("has exited") != std::string::npos);
    CHECK(e.find("__shfl_down_sync at") != std::string::npos);
    CHECK(e.find("selftest.cu:") != std::string::npos);
  }
  SECTION("a shuffle mask naming lanes that do not exist") {
    shuffle_partial_warp<<<1, 20>>>(out);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("does not exist") != std::string::npos);
  }
  SECTION("a __syncthreads that some threads never reach") {
    barrier_after_exit<<<2, 32>>>(out);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("divergent __syncthreads") != std::string::npos);
    CHECK(e.find("barrier_after_exit") != std::string::npos);  // the kernel's name
  }
  SECTION("a barrier and a shuffle waiting for each other") {
    barrier_vs_shuffle<<<1, 32>>>(out);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("deadlock") != std::string::npos);
  }
  SECTION("more static shared memory than a block may have") {
    too_much_shared<<<1, 32>>>(out);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("48 KiB") != std::string::npos);
  }
  cudaFree(out);
}

TEST_CASE("cudasim checks launch configurations, pointers and copies", "[cudasim]") {
  std::vector<float> host(100, 1.f);
  float* d = to_device(host);
  float* y = nullptr;
  cudaMalloc(&y, 100 * sizeof(float));
  scale<<<0, 128>>>(y, d, 100);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  scale<<<1, 2048>>>(y, d, 100);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  scale<<<1, 128>>>(y, host.data(), 100);  // a host pointer passed to a kernel
  const std::string e = launch_error();
  CHECK(e.find("not device memory") != std::string::npos);
  CHECK(cudaMemcpy(host.data(), d, 200 * sizeof(float), cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  cudaGetLastError();
  scale<<<1, 128>>>(y, d, 100);
  REQUIRE(launch_error().empty());
  for (float v : to_host(y, 100)) CHECK(v == 2.f);
  cudaFree(d);
  cudaFree(y);
}

TEST_CASE("cudasim cuBLAS SGEMM is column-major, like cuBLAS", "[cudasim]") {
  // A (2x3) and B (3x2), column-major; C = A B.
  const std::vector<float> A{1, 4, 2, 5, 3, 6}, B{7, 9, 11, 8, 10, 12};
  float* dA = to_device(A);
  float* dB = to_device(B);
  float* dC = to_device(std::vector<float>(4, 0.f));
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const float one = 1.f, zero = 0.f;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA, 2, dB, 3, &zero, dC, 2) ==
          CUBLAS_STATUS_SUCCESS);
  CHECK(to_host(dC, 4) == std::vector<float>{58, 139, 64, 154});
  CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA, 1, dB, 3, &zero, dC, 2) ==
        CUBLAS_STATUS_INVALID_VALUE);  // lda < rows of A
  cublasDestroy(h);
  cudaFree(dA);
  cudaFree(dB);
  cudaFree(dC);
}

namespace {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t x = seed;
  for (float& e : v) {
    x = x * 1664525u + 1013904223u;
    e = static_cast<float>(x >> 8) / 16777216.f * 4.f - 2.f;
  }
  return v;
}
template <class T>
std::vector<T> to_lowp(const std::vector<float>& v) {
  std::vector<T> r;
  for (float f : v) r.push_back(static_cast<T>(f));
  return r;
}

// Runs wmma_tile<T, LA, LB> on K = 48 and compares with float64. A and B are 16-bit values, so each
// product is exact in float; the K additions (fmaf, one rounding each) to C are bounded by
// gamma_K (|C| + sum |a b|), gamma_K = K u / (1 - K u), u = 2^-23 (covering a truncating
// accumulator as well as round-to-nearest's 2^-24).
template <class T, class LA, class LB>
void check_wmma_tile() {
  constexpr int K = 48;
  const bool a_row = std::is_same_v<LA, wmma::row_major>,
             b_row = std::is_same_v<LB, wmma::row_major>;
  const std::vector<T> A = to_lowp<T>(random_values(16 * K, 1)),
                       B = to_lowp<T>(random_values(K * 16, 2));
  const std::vector<float> C = random_values(256, 3);
  T* dA = to_device(A);
  T* dB = to_device(B);
  float* dC = to_device(C);
  float* dD = to_device(std::vector<float>(256, NAN));
  wmma_tile<T, LA, LB><<<1, 32>>>(dA, dB, dC, dD, K);
  REQUIRE(launch_error().empty());
  const std::vector<float> D = to_host(dD, 256);
  const double u = std::ldexp(1.0, -23), gamma = K * u / (1 - K * u);
  int bad = 0;
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      double ref = C[static_cast<size_t>(n * 16 + m)], mag = std::fabs(ref);
      for (int k = 0; k < K; ++k) {
        const double a = static_cast<float>(A[static_cast<size_t>(a_row ? m * K + k : k * 16 + m)]);
        const double b = static_cast<float>(B[static_cast<size_t>(b_row ? k * 16 + n : n * K + k)]);
        ref += a * b;
        mag += std::fabs(a * b);
      }
      const double got = D[static_cast<size_t>(m * 16 + n)];
      if (!(std::fabs(got - ref) <= gamma * mag) && bad++ < 3)
        UNSCOPED_INFO("D(" << m << "," << n << ") = " << got << ", float64 " << ref << ", bound "
                           << gamma * mag);
    }
  CHECK(bad == 0);
  cudaFree(dA);
  cudaFree(dB);
  cudaFree(dC);
  cudaFree(dD);
}

}  // namespace

TEST_CASE("cudasim WMMA: load, mma and store of every layout match float64", "[cudasim][wmma]") {
  check_wmma_tile<__nv_bfloat16, wmma::row_major, wmma::row_major>();
  check_wmma_tile<__nv_bfloat16, wmma::col_major, wmma::col_major>();
  check_wmma_tile<__half, wmma::row_major, wmma::col_major>();
  check_wmma_tile<__half, wmma::col_major, wmma::row_major>();
}

TEST_CASE("cudasim WMMA: contract violations are reported with file:line", "[cudasim][wmma]") {
  __nv_bfloat16* dA = to_device(to_lowp<__nv_bfloat16>(random_values(512, 4)));
  float* dD = to_device(std::vector<float>(256, 0.f));
  SECTION("a correctly staged tile loads") {
    wmma_load_from_shared<<<1, 32>>>(dA, dD, 24, 0);
    REQUIRE(launch_error().empty());
    CHECK(!std::isnan(to_host(dD, 1)[0]));
  }
  SECTION("a leading dimension that is not a multiple of 8 elements (16 bytes)") {
    wmma_load_from_shared<<<1, 32>>>(dA, dD, 20, 0);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("ldm 20 is not a multiple of 8") != std::string::npos);
    CHECK(e.find("selftest.cu:") != std::string::npos);
  }
  SECTION("a pointer that is not 32-byte aligned") {
    wmma_load_from_shared<<<1, 32>>>(dA, dD, 24, 8);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("not 256-bit (32-byte) aligned") != std::string::npos);
  }
  SECTION("a warp with fewer than 32 threads") {
    wmma_load_from_shared<<<1, 16>>>(dA, dD, 24, 0);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("does not exist") != std::string::npos);
  }
  SECTION("lanes that exited") {
    wmma_diverged<<<1, 32>>>(dA, dD, 0);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("has exited") != std::string::npos);
  }
  SECTION("lanes at two different calls") {
    wmma_diverged<<<1, 32>>>(dA, dD, 1);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("the lanes of the warp disagree") != std::string::npos);
  }
  SECTION("lanes passing different pointers") {
    wmma_diverged<<<1, 32>>>(dA, dD, 2);
    const std::string e = launch_error();
    INFO(e);
    CHECK(e.find("lane 8 passed") != std::string::npos);
  }
  cudaFree(dA);
  cudaFree(dD);
}

TEST_CASE("cudasim WMMA: a missing __syncthreads between staging and load_matrix_sync is reported",
          "[cudasim][wmma][race]") {
  __nv_bfloat16* dA = to_device(to_lowp<__nv_bfloat16>(random_values(256, 5)));
  float* dD = to_device(std::vector<float>(256, 0.f));
  wmma_staging<<<1, 64>>>(dA, dD, true);
  REQUIRE(launch_error().empty());
  for (float v : to_host(dD, 256)) REQUIRE(!std::isnan(v));
  wmma_staging<<<1, 64>>>(dA, dD, false);
  const std::string e = launch_error();
  if (cudasim::race_mode()) {
    // Race mode: whichever warp runs first, the other's accesses conflict with its own.
    INFO(e);
    CHECK(e.find("shared-memory race") != std::string::npos);
    CHECK(e.find("selftest.cu:") != std::string::npos);
  } else {
    // Normal mode runs warp 0 to completion first: it reads the half of the tile that warp 1 has
    // not written, still the indeterminate 0xff (NaN) of fresh shared memory.
    REQUIRE(e.empty());
    bool any_nan = false;
    for (float v : to_host(dD, 256)) any_nan = any_nan || std::isnan(v);
    CHECK(any_nan);
  }
  cudaFree(dA);
  cudaFree(dD);
}

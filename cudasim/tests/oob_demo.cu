// An off-by-one kernel for cudasim's protect mode (CUDASIM_PROTECT=1). Without arguments, the
// write to y[n] of a 64-float allocation lands on the inaccessible page after it, and the emulator
// must stop with the kernel, its launch site and the overrun. With "gap", the allocation is 61
// floats, so y[61] falls into the 12 bytes of rounding (to 16) before the guard page, and the
// canary check after the launch must fail it. Run by CTest (cudasim.protect_mode_catches_overrun,
// cudasim.protect_mode_catches_gap_write), which expects those reports and fails on "no fault
// detected".
#include <cstdio>
#include <cstring>

#include <cuda_runtime.h>

__global__ void off_by_one(float* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = 1.f;  // should be i < n
}

int main(int argc, char** argv) {
  const int n = argc > 1 && std::strcmp(argv[1], "gap") == 0 ? 61 : 64;
  float* y = nullptr;
  if (cudaMalloc(&y, n * sizeof(float)) != cudaSuccess) return 2;
  off_by_one<<<1, 128>>>(y, n);
  const cudaError_t e = cudaGetLastError();
  cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    std::printf("launch failed: %s\n", cudaGetErrorString(e));
    return 1;
  }
  std::printf("no fault detected (is CUDASIM_PROTECT=1 set?)\n");
  return 0;
}

// An off-by-one kernel for cudasim's protect mode (CUDASIM_PROTECT=1): the write to y[n] lands on
// the inaccessible page after the allocation, and the emulator must stop with the kernel, its
// launch site and the overrun. Run by CTest (cudasim.protect_mode_catches_overrun), which expects
// that report and fails on "no fault detected".
#include <cstdio>

#include <cuda_runtime.h>

__global__ void off_by_one(float* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = 1.f;  // should be i < n
}

int main() {
  float* y = nullptr;
  if (cudaMalloc(&y, 64 * sizeof(float)) != cudaSuccess) return 2;
  off_by_one<<<1, 128>>>(y, 64);
  cudaDeviceSynchronize();
  std::printf("no fault detected (is CUDASIM_PROTECT=1 set?)\n");
  return 0;
}

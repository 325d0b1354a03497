// Tutorial step (d): a CUDA kernel beside its CPU reference (docs/tutorial/d-cuda-kernels.md).
//
// Runs three ops on minidl's own CUDA kernels (backend cuda-handwritten) and on the CPU reference,
// on the same inputs, and prints both results side by side with their largest difference:
//
//   ReLU            kernels/activation.cu   activation_forward_kernel: one thread per element
//   softmax-CE      kernels/softmax_xent.cu softmax_xent_rows_kernel: one warp per row, the row's
//                                           max and sum by warp shuffles (warp_argmax, warp_sum)
//   BatchNorm       kernels/batchnorm.cu    bn_stats_partial_kernel + bn_stats_finalize_kernel:
//                                           the statistics in two passes (partial moments per
//                                           block, merged per channel), then bn_normalize_kernel
//
// No GPU is needed: in the emulator build (-DMINIDL_CUDA_SIM=ON, tree build-sim/) the same kernel
// source runs on cudasim, a CPU emulation of CUDA's threads, warps and shuffles (docs/GPU.md).
// Exits 77 (skipped) when neither a GPU nor the emulator is there.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/rng.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/softmax_xent.h"

using namespace minidl;

namespace {

double max_diff(const Tensor& a, const Tensor& b) {
  const auto va = a.to(Device::cpu()).to_vector<float>(), vb = b.to(Device::cpu()).to_vector<float>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::fabs(double(va[i]) - vb[i]));
  return m;
}

void side_by_side(const char* what, const Tensor& gpu, const Tensor& cpu, int show) {
  const auto g = gpu.to(Device::cpu()).to_vector<float>(), c = cpu.to_vector<float>();
  std::printf("  %s (first %d of %zu):\n    %-12s %-12s\n", what, show, g.size(), "cuda", "cpu");
  for (int i = 0; i < show && i < int(g.size()); ++i) std::printf("    %-12.7g %-12.7g\n", g[i], c[i]);
  std::printf("  largest |cuda - cpu| = %.3g\n", max_diff(gpu, cpu));
}

Tensor random(const Shape& s, Generator& g, double lo, double hi) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(g.uniform(lo, hi));
  return t;
}

}  // namespace

int main() {
  const Backend gpu = Backend::CudaHandwritten;
  if (!backend_runnable(gpu)) {
    std::printf("skipped: %s cannot run here (no GPU, and this is not the emulator build).\n"
                "Build the emulator tree: cmake -S . -B build-sim -G Ninja -DMINIDL_CUDA_SIM=ON\n",
                backend_name(gpu));
    return 77;
  }
  const Device dev = Device::cuda(0);
  std::printf("backend %s on %s%s\n\n", backend_name(gpu), dev.str().c_str(),
              MINIDL_CUDA_SIM ? " (cudasim: the CUDA kernels emulated on the CPU)" : "");
  Generator g(11);
  double worst = 0;

  std::printf("1. ReLU, y = max(x, 0), one thread per element\n");
  const Tensor x = random(Shape{1000}, g, -1, 1);
  Tensor y_cpu = Tensor::empty(x.shape()), y_gpu = Tensor::empty(x.shape(), DType::F32, dev);
  activation_forward(Backend::CpuReference, y_cpu, x, Activation::ReLU);
  activation_forward(gpu, y_gpu, x.to(dev), Activation::ReLU);
  side_by_side("y", y_gpu, y_cpu, 4);
  worst = std::max(worst, max_diff(y_gpu, y_cpu));

  std::printf("\n2. softmax cross-entropy, one warp (32 threads) per row of 100 logits\n");
  const Tensor z = random(Shape{6, 100}, g, -5, 5);
  Tensor labels = Tensor::empty(Shape{6}, DType::I32);
  for (int i = 0; i < 6; ++i) labels.data<int32_t>()[i] = int32_t(g.below(100));
  Tensor loss_c = Tensor::empty(Shape{1}), p_c = Tensor::empty(z.shape());
  Tensor hit_c = Tensor::empty(Shape{1}, DType::I32);
  Tensor loss_g = Tensor::empty(Shape{1}, DType::F32, dev), p_g = Tensor::empty(z.shape(), DType::F32, dev);
  Tensor hit_g = Tensor::empty(Shape{1}, DType::I32, dev);
  softmax_xent_forward(Backend::CpuReference, loss_c, p_c, hit_c, z, labels, 0.0);
  softmax_xent_forward(gpu, loss_g, p_g, hit_g, z.to(dev), labels.to(dev), 0.0);
  side_by_side("loss", loss_g, loss_c, 1);
  side_by_side("probabilities", p_g, p_c, 3);
  worst = std::max({worst, max_diff(loss_g, loss_c), max_diff(p_g, p_c)});

  std::printf("\n3. BatchNorm (train), statistics of 3 channels over N*H*W = 4*9*9 values,\n"
              "   inputs of mean 10 and std 0.29 (where a one-pass E[x^2] - E[x]^2 would fail)\n");
  Tensor xb = random(Shape{4, 3, 9, 9}, g, 9.5, 10.5);
  const Tensor gamma = Tensor::full(Shape{3}, 1.0), beta = Tensor::zeros(Shape{3});
  Tensor yb_c = Tensor::empty(xb.shape()), m_c = Tensor::empty(Shape{3}), s_c = Tensor::empty(Shape{3});
  Tensor rm_c = Tensor::zeros(Shape{3}), rv_c = Tensor::full(Shape{3}, 1.0);
  Tensor yb_g = Tensor::empty(xb.shape(), DType::F32, dev), m_g = Tensor::empty(Shape{3}, DType::F32, dev);
  Tensor s_g = Tensor::empty(Shape{3}, DType::F32, dev), rm_g = rm_c.to(dev), rv_g = rv_c.to(dev);
  batchnorm_forward_train(Backend::CpuReference, yb_c, m_c, s_c, rm_c, rv_c, xb, gamma, beta, {});
  batchnorm_forward_train(gpu, yb_g, m_g, s_g, rm_g, rv_g, xb.to(dev), gamma.to(dev), beta.to(dev), {});
  side_by_side("batch mean", m_g, m_c, 3);
  side_by_side("1/std", s_g, s_c, 3);
  side_by_side("y", yb_g, yb_c, 3);
  worst = std::max({worst, max_diff(m_g, m_c), max_diff(s_g, s_c), max_diff(yb_g, yb_c)});

  // float32 rounding bounds every difference: a statistic of values near 10 is within a few ulp
  // of 10 (ulp 9.5e-7) of the CPU's double-precision one, and y = (x - mean) invstd inherits the
  // mean's error times invstd (about 3.5): a few 1e-6. 1e-4 leaves room and still catches a wrong
  // kernel, whose errors are of the size of the values.
  std::printf("\nlargest difference %.3g: %s\n", worst, worst < 1e-4 ? "agree" : "DISAGREE");
  return worst < 1e-4 ? 0 : 1;
}

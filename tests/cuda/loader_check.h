// Shared by the CUDA loader tests (model_cuda_test.cpp, folder_cuda_test.cpp).
#pragma once

#include <catch2/catch.hpp>

#include <initializer_list>

#include "../support/test_util.h"
#include "data/loader.h"

namespace minidl::test {

// Runs a CPU and a CUDA loader over the same dataset and configuration through `epochs` side by
// side: each epoch has `batches` batches, with the same dataset indices and labels, and images
// equal bit for bit (augment_batch's CUDA backend equals the float32 cpu-reference:
// tests/ops/augment_test.cpp), on the device.
inline void check_same_batches(DataLoader& cpu, DataLoader& gpu,
                               std::initializer_list<int64_t> epochs, int64_t batches) {
  for (int64_t epoch : epochs) {
    INFO("epoch " << epoch);
    cpu.start_epoch(epoch);
    gpu.start_epoch(epoch);
    Batch a, b;
    int64_t n = 0;
    while (cpu.next(a)) {
      REQUIRE(gpu.next(b));
      CHECK(b.images.is_cuda());
      CHECK(b.labels.is_cuda());
      CHECK(a.indices == b.indices);
      CHECK(a.labels.to_vector<int32_t>() == b.labels.to_vector<int32_t>());
      const Comparison cmp = compare(b.images, a.images, 0.0, 0.0);
      INFO("batch " << n << ": " << cmp.report);
      CHECK(cmp.ok);
      ++n;
    }
    CHECK(n == batches);
    CHECK_FALSE(gpu.next(b));
  }
}

}  // namespace minidl::test

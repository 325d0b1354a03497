// The safetensors format (https://github.com/huggingface/safetensors): 8-byte little-endian header
// length N, N bytes of JSON header {"name": {"dtype": "F32", "shape": [...], "data_offsets":
// [begin, end]}, "__metadata__": {string: string}} padded with spaces to a multiple of 8 (as the
// reference writer does), then the raw little-endian tensor bytes; offsets are relative to the end
// of the header, and the tensors tile the data region without gaps or overlaps. Readable by
// `safetensors.torch.load_file`, so a minidl checkpoint's state_dict loads into PyTorch.
//
// Supported dtypes: F32, F64, BF16, F16, I32, U8 (minidl's float32, float64, bfloat16, float16,
// int32, uint8; BF16/F16 are the raw 16-bit patterns, as torch.bfloat16/float16 store them), and
// I64, which PyTorch uses for integer buffers (BatchNorm's num_batches_tracked): an I64 tensor is
// read into an int32 tensor (a value outside int32 is an error naming the tensor), and int32 tensors named in
// `as_i64` are written as I64, as torch writes them. Other dtypes are rejected by name. Shapes have
// at most 4 dimensions (minidl's Shape).
//
// Writes go to "<path>.tmp" and are renamed over <path> only when complete: a crash never leaves a
// half-written file under the real name.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace minidl {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Tensors may live on any device (copied to the host to write), in the order given. Names must be
// unique and non-empty, and "__metadata__" is reserved. The int32 tensors named in `as_i64` are
// stored as I64. Throws naming the path on I/O errors.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {},
                      const std::set<std::string>& as_i64 = {});

struct SafetensorsFile {
  NamedTensors tensors;  // CPU tensors, in file order (increasing data offset)
  std::map<std::string, std::string> metadata;
  std::set<std::string> read_as_i64;  // the tensors stored as I64 (now int32 tensors)
  const Tensor* find(const std::string& name) const;  // nullptr when absent
};
// Validates the header and every offset; errors name the path and the bad entry.
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace minidl

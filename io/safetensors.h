// The safetensors format (https://github.com/huggingface/safetensors): 8-byte little-endian header
// length, a JSON header {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
// "__metadata__": {string: string}}, then the raw little-endian tensor bytes. Readable by
// `safetensors.torch.load_file`, so a minidl checkpoint's state_dict loads into PyTorch.
//
// Writes go to "<path>.tmp" and are renamed over <path> only when complete: a crash never leaves a
// half-written file under the real name.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace minidl {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Tensors may live on any device (copied to the host to write). Throws naming the path on I/O
// errors.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

struct SafetensorsFile {
  NamedTensors tensors;  // CPU tensors, in file order
  std::map<std::string, std::string> metadata;
  const Tensor* find(const std::string& name) const;
};
// Validates the header and every offset; errors name the path and the bad entry.
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace minidl

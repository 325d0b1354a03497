// Training checkpoints: one safetensors file holding
//   - the model's parameters and buffers under their PyTorch state_dict names
//     ("conv1.weight", "layer1.0.bn1.running_mean", "fc.bias", ...),
//   - the optimizer state under "optimizer.<state name>" (flat buffers),
//   - metadata: epoch, global step, best accuracy, optimizer step count, the model name, the
//     configuration JSON, and the data loader seed,
// so that --resume continues exactly where the run stopped. Written atomically (temp + rename).
#pragma once

#include <cstdint>
#include <string>

#include "layers/module.h"
#include "optim/optimizer.h"

namespace minidl {

struct TrainState {
  int64_t epoch = 0;        // completed epochs
  int64_t global_step = 0;  // optimizer steps taken
  double best_accuracy = 0.0;
  int64_t best_epoch = -1;
  std::string model_name;
  std::string config_json;  // the run's full configuration
};

void save_checkpoint(const std::string& path, Module& model, const Optimizer* opt,
                     const TrainState& state);
// Loads into an already-built model (and optimizer, when given and present in the file). Every
// model tensor must be present with the same shape; mismatches are reported by name and shape.
TrainState load_checkpoint(const std::string& path, Module& model, Optimizer* opt);

}  // namespace minidl

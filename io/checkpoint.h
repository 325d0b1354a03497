// Training checkpoints: one safetensors file holding
//   - the model's parameters and buffers under their PyTorch state_dict names
//     ("conv1.weight", "layer1.0.bn1.running_mean", "fc.bias", ...),
//   - the optimizer state under "optimizer.<state name>" (flat buffers in the layout of the
//     model's flat parameter buffers, state_dict order, e.g. "optimizer.exp_avg"),
//   - metadata (all strings, as safetensors requires): "format" = "minidl-checkpoint",
//     "format_version", "epoch", "global_step", "best_accuracy", "best_epoch", "model_name",
//     "config_json" (the run's configuration, seeds included), when an optimizer was saved
//     "optimizer" (its name) and "optimizer_step" (its step count), in a float16 run the loss
//     scaler's "loss_scale" and "loss_scale_growth_tracker", and "tensor_hashes": a JSON
//     object giving every tensor's content hash (tensor_content_hash, 16 hex digits),
// so that --resume continues exactly where the run stopped. Written atomically (temp + rename).
// Loading is strict, like torch's load_state_dict(strict=True).
//
// Loading verifies every tensor against its hash (a flipped byte is an error naming the tensor) and
// refuses a model or optimizer tensor holding NaN or infinite values (a diverged or damaged state
// must not be evaluated or trained on). Files without hashes (format versions 1 and 2, and
// state_dicts from torch) load unverified: TrainState::verified says so.
//
// Format versions: 3 adds "tensor_hashes". 2 writes int32 buffers (BatchNorm's num_batches_tracked)
// as I64, as torch does, so that the file is a state_dict torch loads as it is; 1 (before) wrote
// them as I32. Both load. A file without minidl's metadata (a state_dict written by
// safetensors.torch.save_file, with metadata "format": "pt" or none) loads as model weights only:
// epoch 0, no optimizer state.
#pragma once

#include <cstdint>
#include <string>

#include "layers/module.h"
#include "optim/optimizer.h"

namespace minidl {

inline constexpr int kCheckpointFormatVersion = 3;
inline constexpr int kOldestCheckpointFormatVersion = 1;

struct TrainState {
  int64_t epoch = 0;        // completed epochs
  int64_t global_step = 0;  // optimizer steps taken
  double best_accuracy = 0.0;
  int64_t best_epoch = -1;
  std::string model_name;
  std::string config_json;  // the run's full configuration
  // float16 loss scaling (optim/grad_scaler.h): the scale (0: no scaler in this run) and the
  // clean steps since it last changed, metadata "loss_scale" and "loss_scale_growth_tracker".
  double loss_scale = 0.0;
  int64_t loss_scale_growth_tracker = 0;
  bool verified = false;    // load_checkpoint: the file had content hashes and they all matched
};

// FNV-1a (64-bit offset basis and prime) over the tensor's bytes as minidl holds it (int32 for a
// buffer stored as I64), taken 8 bytes at a time as little-endian words, then the remaining bytes
// one by one. Any single flipped bit changes it; it guards against corruption (disk, transfer),
// not tampering. The tensor may live on any device.
uint64_t tensor_content_hash(const Tensor& t);

// The model's tensors may live on any device. Undefined buffers are not saved.
void save_checkpoint(const std::string& path, Module& model, const Optimizer* opt,
                     const TrainState& state);
// Loads into an already-built model (and optimizer, when given and present in the file), copying
// into the existing tensors on whatever device they are. Every model parameter and defined buffer
// must be present with the same shape and dtype, and the file may hold no other model tensors;
// mismatches are reported by name and shape. Nothing is modified unless everything checks out.
// The optimizer must be of the same kind as the saved one.
TrainState load_checkpoint(const std::string& path, Module& model, Optimizer* opt);

}  // namespace minidl

// What a `train` invocation sets up before its first step (engine/trainer.h runs it): the final
// configuration (a --resume or --evaluate takes the checkpoint's, overlaid with the flags given),
// the device, the run directory, the datasets with their normalisation, and the model on its
// device. Also what a checkpoint's "config_json" metadata holds about the run.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>

#include "data/cifar.h"
#include "data/loader.h"
#include "engine/config.h"
#include "layers/module.h"

namespace minidl {

// What a checkpoint's "config_json" holds: the run's configuration plus where in an epoch it was
// saved (nonzero step_in_epoch for a stop in the middle of an epoch).
struct SavedRun {
  bool has_config = false;  // false for a checkpoint written by other code
  TrainConfig config;
  nlohmann::json effective;  // effective_settings() of the run that saved it (null before)
  bool interrupted = false;
  int64_t step_in_epoch = 0;
  int64_t batches_per_epoch = 0;
  int ranks = 1;  // processes that trained it (mpirun -np; docs/DISTRIBUTED.md)
};
std::string saved_run_json(const TrainConfig& cfg, const nlohmann::json& effective,
                           bool interrupted, int64_t step_in_epoch, int64_t batches_per_epoch);
// Reads it without building a model (the model to build is in it).
SavedRun read_saved_run(const std::string& path);

struct PickedDevice {
  Device device;
  std::string line;  // what the log says about it: "device: cpu (2 threads) [--device cpu]"
};
// --device auto|cpu|cuda|cuda:N (auto: a GPU when there is one); throws when it cannot be used.
PickedDevice pick_device(const std::string& flag);
// The run's model from the models() registry (on the CPU), as `train` and `predict` build it.
std::unique_ptr<Module> build_run_model(const TrainConfig& cfg, int num_classes);

// Everything a run sets up before its first step.
struct Setup {
  TrainConfig cfg;         // the final configuration (cfg.out is the run directory)
  std::string checkpoint;  // to resume from or to evaluate ("" for a fresh run)
  SavedRun saved;          // what the checkpoint says about its run
  PickedDevice device;
  std::filesystem::path out;
  bool created_out = false;  // this invocation made the run directory (removed again if empty)
  nlohmann::json effective;  // effective_settings(*this)
  Dataset train, val, test;  // val: the last --val-split training images (empty without)
  ChannelStats norm;
  int num_classes = 0;
  std::unique_ptr<Module> model;  // on the device
};

// What decides a run's numbers besides its flags, as this invocation resolved them: one key per
// setting (version, git-commit, device, kernels, cpu-kernels, threads, precision, tf32,
// deterministic). Written to config.json ("effective") and every checkpoint; --resume warns about
// each key whose value differs from the checkpoint's. A new setting that changes results is one
// more row in effective_settings() (setup.cpp).
nlohmann::json effective_settings(const Setup& s);
// config.json: the configuration (to_json) plus "effective".
std::string config_file_json(const Setup& s);

// Merges and validates the configuration, picks the device, claims the run directory (refusing
// to write over a run unless --overwrite), loads the data and builds the model, logging each.
// Under mpirun every rank runs it: they check that they agree on the configuration, take
// cuda:<local rank> (or the CPU), and rank 0 alone claims the run directory.
Setup prepare(const TrainConfig& cli, std::ostream& log);

// The loader settings of the training set (training = true: shuffled and augmented as configured)
// or of an evaluation set.
LoaderConfig loader_config(const Setup& s, bool training);

// "note: <path> has no content hashes ...": what --resume and --evaluate say about a checkpoint
// that load_checkpoint could not verify (written before format 3, or by other code).
std::string unverified_note(const std::string& checkpoint);

// The local time formatted by strftime ("%Y%m%d-%H%M%S").
std::string timestamp(const char* format);
// Wall time since t0, in seconds.
double seconds_since(std::chrono::steady_clock::time_point t0);

}  // namespace minidl

// Helpers for the engine tests: parse a command line given as strings, fresh scratch
// directories, run the program (train_main) capturing what it prints, and tiny CPU runs on the
// real CIFAR-10 files (REQUIRE_CIFAR skips a test where they are absent).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "../support/test_util.h"
#include "engine/app.h"
#include "engine/cli.h"
#include "io/safetensors.h"

namespace minidl::test {

inline TrainConfig parse_args(std::vector<std::string> args) {
  args.insert(args.begin(), "train");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_train_args(static_cast<int>(argv.size()), argv.data());
}

// An empty directory under the system temp directory, unique to this process and `name`.
inline std::filesystem::path scratch_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() /
                 ("minidl_engine_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// 128 training images in 4 steps of 32, tested on 128 images: about a second per epoch.
inline std::vector<std::string> tiny(const std::string& data, const std::filesystem::path& out,
                                     int epochs = 1) {
  return {"--data",        data,
          "--model",       "plain",
          "--subset",      "128",
          "--test-subset", "128",
          "--batch-size",  "32",
          "--lr",          "0.05",
          "--epochs",      std::to_string(epochs),
          "--device",      "cpu",
          "--out",         out.string(),
          "--print-freq",  "2"};
}

inline std::vector<std::string> plus(std::vector<std::string> a,
                                     const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline nlohmann::json checkpoint_run(const std::filesystem::path& path) {
  return nlohmann::json::parse(load_safetensors(path.string()).metadata.at("config_json"));
}

// train_main with argv, capturing what it prints.
struct Outcome {
  int code = -1;
  std::string out, err;
};
inline Outcome run_main(std::vector<std::string> args, const std::string& program = "train") {
  args.insert(args.begin(), program);
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  Outcome o;
  o.code = train_main(static_cast<int>(argv.size()), argv.data(), out, err);
  o.out = out.str();
  o.err = err.str();
  return o;
}

}  // namespace minidl::test

#define REQUIRE_CIFAR(data)                               \
  const std::string data = ::minidl::test::cifar10_dir(); \
  if (data.empty()) {                                     \
    WARN("CIFAR-10 not found: test skipped");             \
    return;                                               \
  }

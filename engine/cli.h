// Command-line parsing for `train` (CLI11). Flags follow the PyTorch examples (--lr, --wd,
// --epochs, --resume, --evaluate, --print-freq, ...); `train --help` lists every one with its
// default.
#pragma once

#include <string>

#include "engine/config.h"

namespace minidl {

// Thrown by parse_train_args for --help and --version; the app prints `text` and exits with 0.
struct HelpRequested {
  std::string text;
};

// Parses the command line into a validated TrainConfig: fills cfg.command (the command line,
// shell-quoted) and cfg.given (the long names of the flags that were given), and defaults --data to
// ../shared/data/<dataset directory> when that exists. Throws UsageError for an unknown flag, a
// value that does not parse or one validate() rejects. With --resume/--checkpoint the settings not
// given are read from the checkpoint later, so --data is only checked then.
TrainConfig parse_train_args(int argc, const char* const* argv);

// The --help text (no line wider than 100 columns).
std::string train_help();
// The --version text: "train (minidl) 0.1.0, git commit 1a2b3c4d5e6f\n".
std::string version_text();

// "train --model resnet20 --out 'my runs/x'": argv joined, quoted where a shell would need it.
std::string shell_command(int argc, const char* const* argv);

}  // namespace minidl

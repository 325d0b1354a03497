// The `train` program as a function, so that tests can check what a user sees: the output, the
// error message and the exit code.
//
// Exit codes: 0 done (trained, evaluated, or stopped at --max-steps), 1 error (a missing file, a
// diverged loss, out of memory), 2 usage error (a bad flag or value; nothing ran), 130 stopped by
// Ctrl-C (SIGINT) and 143 stopped by SIGTERM, after saving a resumable last.safetensors.
#pragma once

#include <ostream>

namespace minidl {

int train_main(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace minidl

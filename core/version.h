// The version of minidl and the git commit it was built from (cmake/version.cmake writes the
// definitions at every build), for `train --version`, config.json and checkpoints.
#pragma once

namespace minidl {

const char* minidl_version();     // the CMake project version, "0.1.0"
const char* minidl_git_commit();  // "1a2b3c4d5e6f", "1a2b3c4d5e6f-dirty" or "unknown"

}  // namespace minidl

// Whole-file writes that a reader never sees half done: the bytes go to "<path>.tmp", which is
// renamed over <path> only when complete (a failed write removes the temporary file).
#pragma once

#include <string>
#include <string_view>

namespace minidl {

// Throws minidl::Error naming the path (and "disk full?" when the write fails).
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace minidl

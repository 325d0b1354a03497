#include "engine/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace minidl {

ProgressBar::ProgressBar(std::ostream& os, bool tty, std::string label, int64_t total_steps)
    : os_(os), tty_(tty), label_(std::move(label)), total_(std::max<int64_t>(total_steps, 1)) {}

void ProgressBar::update(int64_t done, const std::string& stats) {
  if (tty_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * std::clamp<int64_t>(done, 0, total_) / total_);
    os_ << '\r' << label_ << " [" << std::string(filled, '#') << std::string(kWidth - filled, '.')
        << "] " << fmt::format("{}/{} ", done, total_) << stats << "\033[K" << std::flush;
    open_ = true;
  } else {
    os_ << label_ << fmt::format(" {}/{} ", done, total_) << stats << '\n' << std::flush;
  }
}

void ProgressBar::finish() {
  if (tty_ && open_) os_ << "\r\033[K" << std::flush;
  open_ = false;
}

bool stdout_is_tty() { return isatty(STDOUT_FILENO) == 1; }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  const int64_t h = s / 3600, m = (s / 60) % 60, r = s % 60;
  return h > 0 ? fmt::format("{}:{:02}:{:02}", h, m, r) : fmt::format("{}:{:02}", m, r);
}

}  // namespace minidl

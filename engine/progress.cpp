#include "engine/progress.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>

#include <algorithm>
#include <cmath>

namespace minidl {

ProgressBar::ProgressBar(std::ostream& os, bool tty, std::string label, int64_t total_steps,
                         int columns)
    : os_(os),
      tty_(tty),
      label_(std::move(label)),
      total_(std::max<int64_t>(total_steps, 1)),
      columns_(columns > 0 ? columns : (tty ? terminal_columns() : 80)) {}

void ProgressBar::update(int64_t done, const std::string& stats) {
  if (tty_) {
    // The bar shrinks (down to nothing) before the statistics are cut.
    const std::string count = fmt::format("{}/{} ", done, total_);
    const int room =
        columns_ - 1 - static_cast<int>(label_.size() + 4 + count.size() + stats.size());
    const int width = std::clamp(room, 0, 24);
    std::string line = label_;
    if (width >= 5) {
      const int filled = static_cast<int>(width * std::clamp<int64_t>(done, 0, total_) / total_);
      line += " [" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
    }
    line += " " + count + stats;
    os_ << '\r' << fit_width(line, columns_ - 1) << "\033[K" << std::flush;
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

int terminal_columns() {
  struct winsize w {};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col > 0) return w.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    const int n = std::atoi(c);
    if (n > 0) return n;
  }
  return 80;
}

std::string fit_width(const std::string& line, int columns) {
  if (columns <= 0) return std::string();
  int chars = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if ((static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) continue;  // UTF-8 continuation
    if (chars == columns) return line.substr(0, i);
    ++chars;
  }
  return line;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  const int64_t h = s / 3600, m = (s / 60) % 60, r = s % 60;
  return h > 0 ? fmt::format("{}:{:02}:{:02}", h, m, r) : fmt::format("{}:{:02}", m, r);
}

}  // namespace minidl

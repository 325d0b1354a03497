// The progress line of a training epoch.
//
// On a terminal the line is redrawn in place ("\r" and erase-to-end-of-line), so an epoch takes
// one line that fills up. The line is cut to the terminal's width less one column: a line that
// wrapped could not be redrawn by "\r" and would leave stale copies above it. When the output is
// a file or a pipe each update is printed as its own line instead, so that logs stay readable.
// The caller decides when to update (every --print-freq steps), because an update is where the
// per-step losses are read from the device.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace minidl {

class ProgressBar {
 public:
  // `columns`: the terminal width (0: ask the terminal, see terminal_columns()).
  ProgressBar(std::ostream& os, bool tty, std::string label, int64_t total_steps, int columns = 0);
  // Shows `done` of the total steps followed by `stats` (running loss, accuracy, speed, ETA).
  void update(int64_t done, const std::string& stats);
  // Erases the line on a terminal, so that the epoch's summary line takes its place; no-op
  // otherwise.
  void finish();

 private:
  std::ostream& os_;
  bool tty_;
  std::string label_;
  int64_t total_;
  int columns_;
  bool open_ = false;  // a redrawn line is on screen
};

// True when stdout is a terminal.
bool stdout_is_tty();

// The width of the terminal on stdout (TIOCGWINSZ), else $COLUMNS, else 80.
int terminal_columns();

// `line` cut to at most `columns` characters (UTF-8 aware; the progress text is ASCII anyway).
std::string fit_width(const std::string& line, int columns);

// "1:05:09", "4:07", "0:03"
std::string format_duration(double seconds);

}  // namespace minidl

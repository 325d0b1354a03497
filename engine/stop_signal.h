// Ctrl-C (SIGINT) and SIGTERM during `train`: the handler only sets a flag; the training loop
// reads it after each step, saves a resumable last.safetensors and stops (engine/trainer.h).
#pragma once

#include <csignal>
#include <string>

namespace minidl {

// Installs the handler for SIGINT and SIGTERM for the life of the object and clears the flag.
// SA_RESETHAND restores the default action after the first signal, so a second one ends the
// process at once if saving hangs.
class StopSignalGuard {
 public:
  StopSignalGuard();
  ~StopSignalGuard();
  StopSignalGuard(const StopSignalGuard&) = delete;
  StopSignalGuard& operator=(const StopSignalGuard&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_ {};  // the actions before, restored at the end
};

// Set by the handler (or by request_interrupt, declared in trainer.h): a stop was asked for.
bool stop_requested();
// The signal that asked (SIGINT or SIGTERM; 0 for request_interrupt or none).
int stop_signal();
// Another rank of a data-parallel job was stopped by `sig`: stop here too, as if it came here.
void note_stop(int sig);
// "Ctrl-C" or "SIGTERM", for the messages.
std::string stop_reason();

}  // namespace minidl

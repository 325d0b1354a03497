#include "engine/stop_signal.h"

#include <atomic>
#include <csignal>

#include "engine/trainer.h"

namespace minidl {

namespace {

// Lock-free, so setting them is async-signal-safe. g_signal: the signal that asked to stop.
std::atomic<bool> g_interrupt{false};
std::atomic<int> g_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int sig) {
  g_signal.store(sig);
  g_interrupt.store(true);
}

}  // namespace

StopSignalGuard::StopSignalGuard() {
  g_interrupt.store(false);
  g_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, &old_int_);
  sigaction(SIGTERM, &sa, &old_term_);
}

StopSignalGuard::~StopSignalGuard() {
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
}

bool stop_requested() { return g_interrupt.load(); }
int stop_signal() { return g_signal.load(); }
std::string stop_reason() { return g_signal.load() == SIGTERM ? "SIGTERM" : "Ctrl-C"; }

void note_stop(int sig) {
  g_signal.store(sig);
  g_interrupt.store(true);
}

void request_interrupt() { g_interrupt.store(true); }
bool interrupt_requested() { return g_interrupt.load(); }

}  // namespace minidl

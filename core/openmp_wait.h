// OpenMP's wait policy for minidl's programs (train, bench_train).
//
// libgomp, with OMP_WAIT_POLICY unset, lets a thread that has finished its share of a parallel
// region spin (GOMP_SPINCOUNT = 300,000 pause instructions, milliseconds) before it sleeps, but
// only while the process has no more OpenMP threads than CPUs; with more it spins 1,000 times.
// The CPU data loader's producer thread augments each batch in its own `omp parallel`, so during
// an epoch the process has two teams and spins briefly; once the producer has prepared the
// epoch's last batch its thread ends, its team goes, and the remaining steps and the evaluations
// spin fully. On a machine shared with other processes the spinning threads hold the cores that
// the working ones (and the loader) need: on two loaded cores the last three steps of each epoch
// took ~10 s instead of ~0.3 s (docs/BENCHMARKS.md, "OpenMP waits").
//
// Sleeping at once (OMP_WAIT_POLICY=passive, minidl's first fix) cures that but costs every one of
// the ~376 parallel regions of a ResNet-20 step a futex wake-up: on an idle 2-core machine the
// bf16 step at batch 32 took 31 ms passive against 18.7 ms with a short spin. So a waiting thread
// spins GOMP_SPINCOUNT = 3,000 pause instructions (tens of microseconds, about the gap between two
// regions of a step) and then sleeps: the region-to-region hand-offs of a step stay spins, while a
// thread left waiting through the loader's work or an evaluation sleeps almost at once. Measured
// (docs/BENCHMARKS.md, "OpenMP waits: a bounded spin"): idle, 18.7 ms vs passive 31 ms; beside 2
// busy threads (bench_train --load 2) median 38 ms, p99 42 ms vs passive 73/172 ms and libgomp's
// default 40/135 ms with 3 slow steps; the 1-epoch command beside 8 busy processes
// 13.5-13.7 s vs passive 13.7-15.1 s, no slow last steps either way.
//
// libgomp reads the spin count from the environment once, when it is loaded (before main), and has
// no call to change it later. So the programs' main() calls use_bounded_openmp_spins first: unless
// the user has set OMP_WAIT_POLICY or GOMP_SPINCOUNT, it sets GOMP_SPINCOUNT=3000 and executes the
// program again (/proc/self/exe, same arguments), once.
#pragma once

#include <string>

namespace minidl {

// See above. Returns only when nothing needs doing or the re-execution failed (then
// openmp_wait_policy() says "default"); `argv` is main's, null-terminated.
void use_bounded_openmp_spins(char** argv);

// The policy in effect, for the device line and benchmark headers: "spin 3000 then sleep" (set by
// use_bounded_openmp_spins), "passive (OMP_WAIT_POLICY)" or "active (OMP_WAIT_POLICY)" when the
// user set it, "GOMP_SPINCOUNT=N" (the user's), or "default (spinning)" when neither the user nor
// use_bounded_openmp_spins set anything.
std::string openmp_wait_policy();

}  // namespace minidl

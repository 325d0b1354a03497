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
// took ~10 s instead of ~0.3 s (docs/BENCHMARKS.md, "OpenMP waits"). With OMP_WAIT_POLICY=passive
// a waiting thread sleeps at once, and every step takes the same time.
//
// libgomp reads the policy from the environment once, when it is loaded (before main), and has no
// call to change it later. So the programs' main() calls use_passive_openmp_waits first: unless the
// user has set OMP_WAIT_POLICY or GOMP_SPINCOUNT, it sets OMP_WAIT_POLICY=passive and executes
// the program again (/proc/self/exe, same arguments), once.
#pragma once

#include <string>

namespace minidl {

// See above. Returns only when nothing needs doing or the re-execution failed (then
// openmp_wait_policy() says "default"); `argv` is main's, null-terminated.
void use_passive_openmp_waits(char** argv);

// The policy in effect, for the device line and benchmark headers: "passive", "passive
// (OMP_WAIT_POLICY)" when the user set it, "active (OMP_WAIT_POLICY)", "GOMP_SPINCOUNT=N", or
// "default (spinning)" when neither the user nor use_passive_openmp_waits set anything.
std::string openmp_wait_policy();

}  // namespace minidl

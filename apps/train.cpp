// train: train a model on CIFAR-10/100 (or evaluate a checkpoint). The user guide is
// docs/TRAINING.md; the engine is engine/trainer.h, the exit codes are in engine/app.h.
#include <iostream>

#include "core/openmp_wait.h"
#include "engine/app.h"

int main(int argc, char** argv) {
  minidl::use_bounded_openmp_spins(argv);  // may execute the program again (core/openmp_wait.h)
  return minidl::train_main(argc, argv, std::cout, std::cerr);
}

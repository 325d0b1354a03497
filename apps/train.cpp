// train: train a model on CIFAR-10/100 (or evaluate a checkpoint). The user guide is
// docs/TRAINING.md; the engine is engine/trainer.h, the exit codes are in engine/app.h.
#include <iostream>

#include "engine/app.h"

int main(int argc, char** argv) { return minidl::train_main(argc, argv, std::cout, std::cerr); }

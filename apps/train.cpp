// train: train a model on CIFAR-10/100 (or evaluate a checkpoint). The user guide is
// docs/TRAINING.md; the engine is engine/trainer.h.
//
// Exit codes: 0 done, 1 error, 2 usage error (bad flag or value), 130 interrupted by Ctrl-C (the
// run saved last.safetensors and can be resumed).
#include <iostream>

#include "engine/cli.h"
#include "engine/trainer.h"

int main(int argc, char** argv) {
  try {
    const minidl::TrainConfig cfg = minidl::parse_train_args(argc, argv);
    const minidl::RunResult r = minidl::run_train(cfg, std::cout);
    return r.status == minidl::RunStatus::Interrupted ? 130 : 0;
  } catch (const minidl::HelpRequested& h) {
    std::cout << h.text;
    return 0;
  } catch (const minidl::UsageError& e) {
    std::cout.flush();
    std::cerr << "train: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {  // minidl::Error, and I/O errors from the standard library
    std::cout.flush();
    std::cerr << "train: error: " << e.what() << '\n';
    return 1;
  }
}

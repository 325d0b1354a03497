#include "engine/app.h"

#include <chrono>
#include <csignal>
#include <new>
#include <string>
#include <thread>

#include "dist/comm.h"
#include "engine/cli.h"
#include "engine/trainer.h"

namespace minidl {

namespace {

int run_main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  // Under mpirun every rank reports its own errors, saying which rank it is.
  std::string who = "train";
  try {
    dist::init();  // MPI, when mpirun started this process (dist/comm.h)
    if (dist::world().distributed()) who = str("train (", dist::world().describe(), ")");
    const TrainConfig cfg = parse_train_args(argc, argv);
    if (cfg.seeds > 1) {
      const SeedsSummary s = run_seeds(cfg, out);
      const bool stopped = !s.runs.empty() && s.runs.back().status == RunStatus::Interrupted;
      if (stopped) return s.runs.back().stop_signal == SIGTERM ? 143 : 130;
      return 0;
    }
    const RunResult r = run_train(cfg, out);
    if (r.status == RunStatus::Interrupted) return r.stop_signal == SIGTERM ? 143 : 130;
    return 0;
  } catch (const HelpRequested& h) {
    out << h.text;
    return 0;
  } catch (const UsageError& e) {
    out.flush();
    err << who << ": error: " << e.what() << '\n';
    return 2;
  } catch (const std::bad_alloc&) {
    out.flush();
    err << "train: error: out of host memory; try a smaller --batch-size (or --subset)\n";
    return 1;
  } catch (const std::exception& e) {  // minidl::Error, and I/O errors from the standard library
    out.flush();
    const std::string what = e.what();
    err << who << ": error: " << what;
    // The CUDA allocator's message has its own hint; the host's does not.
    if (what.find("out of host memory") != std::string::npos)
      err << "; try a smaller --batch-size (or a smaller model, --num-classes or --subset)";
    err << '\n';
    return 1;
  }
}

}  // namespace

int train_main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  const int code = run_main(argc, argv, out, err);
  // Under mpirun an error on one rank ends every rank now (MPI_Abort; mpirun names the rank):
  // the others would wait for it in their next collective. A stop (130, 143) is agreed by all
  // ranks at the same step, and they finish normally.
  if ((code == 1 || code == 2) && dist::world().distributed()) {
    out.flush();
    err.flush();
    // mpirun forwards the ranks' output asynchronously: give it the error message before the kill.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    dist::world().abort(code);
  }
  return code;
}

}  // namespace minidl

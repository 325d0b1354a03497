// train --channels-last end to end on the CPU (engine/mixed_precision.h): the run says so, records
// it in config.json and its checkpoints, --resume keeps it, and --evaluate reads the checkpoint in
// either layout with the same result. Tiny runs of the plain CNN (conv, BN, max-pool, global pool,
// flatten, linear) on the real CIFAR-10 files; they need the NHWC ops ([channels_last_ops]).
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <optional>
#include <sstream>

#include "engine/config.h"
#include "engine/trainer.h"
#include "engine_test_util.h"
#include "layers/forward_observer.h"

using namespace minidl;
using namespace minidl::test;
namespace fs = std::filesystem;

namespace {

// The layouts of the 4-D activations of every forward (training and evaluation) while it lives,
// watched as --trace-steps does (layers/forward_observer.h): the value checks cannot tell a pass
// that silently ran NCHW.
struct LayoutWatch {
  int64_t nchw = 0, nhwc = 0;
  LayoutWatch() {
    set_forward_observer([this](const Module&, const Tensor& y) {
      if (y.dim() == 4 && !layouts_coincide(y.shape()))
        ++(y.layout() == Layout::NHWC ? nhwc : nchw);
    });
  }
  ~LayoutWatch() { set_forward_observer({}); }
};

}  // namespace

TEST_CASE("train --channels-last: a run, its --resume and --evaluate in either layout",
          "[engine][channels_last][channels_last_ops][cifar]") {
  REQUIRE_CIFAR(data);
  const fs::path dir = scratch_dir("cl_run");
  std::ostringstream log;
  RunResult r;
  {
    LayoutWatch watch;
    r = run_train(parse_args(plus(tiny(data, dir / "run"), {"--channels-last"})), log);
    CHECK(watch.nchw == 0);  // the training steps and the test evaluation
    CHECK(watch.nhwc > 0);
  }
  INFO(log.str());
  REQUIRE(r.status == RunStatus::Finished);
  CHECK_THAT(log.str(), Catch::Contains("layout: channels-last (NHWC)"));
  CHECK(config_from_json(nlohmann::json::parse(read_text(dir / "run" / "config.json")))
            .channels_last);
  CHECK(checkpoint_run(dir / "run" / "last.safetensors")["config"]["channels-last"] == true);
  // An untrained model is at ln 10 = 2.30: four steps keep the loss finite and near it.
  REQUIRE(std::isfinite(r.history.at(0).train_loss));

  // --resume continues channels-last without the flag.
  std::ostringstream resumed;
  const RunResult r2 = run_train(
      parse_args({"--resume", (dir / "run" / "last.safetensors").string(), "--epochs", "2"}),
      resumed);
  INFO(resumed.str());
  REQUIRE(r2.history.size() == 2);
  CHECK_THAT(resumed.str(), Catch::Contains("layout: channels-last (NHWC)"));

  // --evaluate in the run's layout repeats the run's own last evaluation exactly (the same
  // computation); in NCHW (--no-channels-last) the sums run in another order: the same accuracy
  // up to an image whose two largest logits lie within float32 roundoff, the loss within 1e-5
  // relative (float32 roundoff ~1e-6 through the plain CNN's 8 layers, as the model test measures).
  const std::string ckpt = (dir / "run" / "last.safetensors").string();
  std::ostringstream e1, e2;
  std::optional<LayoutWatch> watch;
  watch.emplace();
  const RunResult same = run_train(
      parse_args({"--evaluate", "--checkpoint", ckpt, "--out", (dir / "e1").string()}), e1);
  CHECK(watch->nchw == 0);
  CHECK(watch->nhwc > 0);
  watch.reset();
  INFO(e1.str());
  CHECK_THAT(e1.str(), Catch::Contains("layout: channels-last (NHWC)"));
  CHECK(same.last_eval.loss == r2.last_eval.loss);
  CHECK(same.last_eval.accuracy == r2.last_eval.accuracy);
  watch.emplace();
  const RunResult nchw = run_train(parse_args({"--evaluate", "--checkpoint", ckpt, "--out",
                                               (dir / "e2").string(), "--no-channels-last"}),
                                   e2);
  CHECK(watch->nhwc == 0);
  CHECK(watch->nchw > 0);
  watch.reset();
  INFO(e2.str());
  CHECK_FALSE(e2.str().find("layout: channels-last") != std::string::npos);
  CHECK(std::fabs(nchw.last_eval.loss - r2.last_eval.loss) <= 1e-5 * r2.last_eval.loss);
  CHECK(std::fabs(nchw.last_eval.accuracy - r2.last_eval.accuracy) <= 100.0 / 128 + 1e-9);
  fs::remove_all(dir);
}

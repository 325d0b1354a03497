// One registry per choice flag of `train` (--model, --dataset, --optimizer, --schedule, --kernels,
// --cpu-kernels): each feeds the flag's --help text, the check of its value and the factory, so
// the three list the same choices. Also the mapping of the flags to the optimizer and schedule
// configurations (--lr is the schedule's base lr).
#include <catch2/catch.hpp>
#include <cctype>
#include <functional>

#include "data/cifar.h"
#include "core/device_settings.h"
#include "engine/cli.h"
#include "engine/config.h"
#include "engine_test_util.h"
#include "layers/module.h"
#include "models/models.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// A choice flag: its registry's names and help lines, a near miss of one name and what the
// registry suggests for it.
struct ChoiceFlag {
  std::string flag;
  std::vector<std::string> names;
  std::vector<std::string> help;
  std::string typo, suggestion;
};

template <typename T>
ChoiceFlag choice(const std::string& flag, const Registry<T>& r, const std::string& typo,
                  const std::string& suggestion) {
  ChoiceFlag c{flag, r.names(), {}, typo, suggestion};
  for (const auto& e : r.entries()) c.help.push_back(e.help);
  return c;
}

std::vector<ChoiceFlag> choice_flags() {
  return {choice("--model", models(), "resnet19", "resnet18"),
          choice("--dataset", datasets(), "cifar1000", "cifar100"),
          choice("--optimizer", optimizers(), "adamm", "adam"),
          choice("--schedule", schedules(), "cosin", "cosine"),
          choice("--kernels", kernel_paths(), "cudn", "cudnn"),
          choice("--cpu-kernels", cpu_kernel_paths(), "handwriten", "handwritten")};
}

}  // namespace

TEST_CASE("choice flags: --help lists every entry of the flag's registry with its help",
          "[engine][cli][choices]") {
  const std::string help = train_help();
  for (const ChoiceFlag& c : choice_flags()) {
    INFO(c.flag);
    const size_t at = help.find(c.flag + " ");  // after "  " or an alias ("-a,--arch,")
    REQUIRE(at != std::string::npos);
    const size_t next = help.find("\n  -", at + 1);  // the next flag's line
    // --help wraps long lines at 100 columns: compared with every run of blanks as one space.
    const auto squash = [](const std::string& s) {
      std::string out;
      for (char ch : s)
        if (!std::isspace(static_cast<unsigned char>(ch)) || (!out.empty() && out.back() != ' '))
          out += std::isspace(static_cast<unsigned char>(ch)) ? ' ' : ch;
      return out;
    };
    const std::string section = squash(help.substr(at, next - at));
    for (size_t i = 0; i < c.names.size(); ++i) {
      INFO(c.names[i]);
      CHECK_THAT(section, Catch::Contains(c.names[i] + " ") && Catch::Contains(squash(c.help[i])));
    }
  }
}

TEST_CASE("choice flags: every name is accepted, another is an error naming the flag, the value, "
          "the choices and the closest name",
          "[engine][cli][choices][errors]") {
  const std::string d = scratch_dir("choices").string();
  for (const ChoiceFlag& c : choice_flags()) {
    INFO(c.flag);
    for (const std::string& name : c.names) {
      INFO(name);
      std::vector<std::string> args{"--data", d, c.flag, name};
      if (c.flag == "--schedule" && name == "multistep") args.insert(args.end(), {"--milestones", "5"});
      CHECK_NOTHROW(parse_args(args));
    }
    REQUIRE_THROWS_AS(parse_args({"--data", d, c.flag, c.typo}), UsageError);
    REQUIRE_THROWS_WITH(parse_args({"--data", d, c.flag, c.typo}),
                        Catch::StartsWith(c.flag + " '" + c.typo + "' is not known") &&
                            Catch::Contains(join_or(c.names)) &&
                            Catch::Contains("did you mean " + c.suggestion + "?"));
    // The same check for a value that comes from a configuration file (--resume).
    TrainConfig cfg = parse_args({"--data", d});
    if (c.flag == "--model") cfg.model = c.typo;
    if (c.flag == "--dataset") cfg.dataset = c.typo;
    if (c.flag == "--optimizer") cfg.optimizer = c.typo;
    if (c.flag == "--schedule") cfg.schedule = c.typo;
    if (c.flag == "--kernels") cfg.kernels = c.typo;
    if (c.flag == "--cpu-kernels") cfg.cpu_kernels = c.typo;
    REQUIRE_THROWS_WITH(validate(cfg), Catch::StartsWith(c.flag + " '" + c.typo + "'"));
  }
}

TEST_CASE("choice flags: the registries are the factories", "[engine][choices]") {
  CHECK(kernel_paths().at("handwritten") == KernelPath::Handwritten);
  CHECK(kernel_paths().at("cublas") == KernelPath::Cublas);
  CHECK(kernel_paths().at("cudnn") == KernelPath::Cudnn);
  // The fastest CPU path built in comes first (the default of --cpu-kernels).
  const std::vector<std::string> cpu =
      onednn_available() ? std::vector<std::string>{"onednn", "handwritten"}
                         : std::vector<std::string>{"handwritten"};
  CHECK(cpu_kernel_paths().names() == cpu);
  for (const std::string& name : cpu)
    CHECK(cpu_kernels_name(cpu_kernel_paths().at(name)) == name);
  CHECK(datasets().at("cifar10").num_classes == 10);
  CHECK(datasets().at("cifar100").num_classes == 100);
  CHECK(dataset_num_classes("cifar100") == 100);
  CHECK(dataset_default_dir("cifar100") == "cifar-100-binary");
  CHECK(dataset_default_dir("nonsense") == "cifar-10-batches-bin");

  ModelConfig mc;
  mc.name = "plain";
  const std::unique_ptr<Module> plain = models().at("plain").build(mc);
  CHECK(plain->parameter_count() == make_model(mc)->parameter_count());
  CHECK(imagenet_stem_model_names() ==
        std::vector<std::string>{"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"});

  Parameter p{Tensor::zeros(Shape{3}), Tensor::zeros(Shape{3})};
  FlatParameters flat({{"w", &p}});
  for (const std::string& name : optimizers().names()) {
    INFO(name);
    OptimizerConfig oc;
    oc.name = name;
    CHECK(optimizers().at(name).make(flat, oc)->config().name == name);
  }
}

TEST_CASE("the flags as optimizer and schedule configurations", "[engine][config][choices]") {
  const std::string d = scratch_dir("choices_configs").string();
  const TrainConfig c = parse_args({"--data", d, "--optimizer", "adam", "--lr", "0.003",
                                    "--momentum", "0.8", "--wd", "0.01", "--schedule", "cosine",
                                    "--epochs", "12", "--warmup", "2"});
  // --lr is the schedule's base learning rate; the optimizer has none.
  const ScheduleConfig sc = schedule_config(c);
  CHECK(sc.name == "cosine");
  CHECK(sc.base_lr == 0.003);
  CHECK(sc.warmup_epochs == 2.0);
  CHECK(sc.total_epochs == 10);  // the epochs after warm-up
  // Every hyper-parameter flag goes to the optimizer, which reads those it uses: adam ignores
  // --momentum, and its description says what it does use.
  const OptimizerConfig oc = optimizer_config(c);
  CHECK(oc.name == "adam");
  CHECK(oc.momentum == 0.8);
  CHECK(oc.weight_decay == 0.01);
  CHECK(describe_optimizer(oc) == "adam (betas (0.9, 0.999), eps 1e-08, weight decay 0.01)");

  // The optimizer's own rules, reported with the flags that set them.
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--optimizer", "adamw", "--nesterov"}),
                      Catch::Contains("nesterov applies to sgd") && Catch::Contains("--nesterov") &&
                          Catch::Contains("--optimizer adamw"));
  REQUIRE_THROWS_WITH(parse_args({"--data", d, "--momentum", "0", "--nesterov"}),
                      Catch::Contains("nesterov requires momentum > 0") &&
                          Catch::Contains("--momentum 0"));
  CHECK_NOTHROW(parse_args({"--data", d, "--momentum", "0.9", "--nesterov"}));
}

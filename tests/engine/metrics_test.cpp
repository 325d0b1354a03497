#include "engine/metrics.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "engine_test_util.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("confusion matrix and per-class accuracy on a hand example", "[engine][metrics]") {
  // 3 classes; class 2 has no images.
  //   truth 0: predicted 0, 0, 1      -> 2/3
  //   truth 1: predicted 1, 0, 1, 1   -> 3/4
  ConfusionMatrix cm(3);
  for (auto [t, p] :
       std::vector<std::pair<int, int>>{{0, 0}, {0, 0}, {0, 1}, {1, 1}, {1, 0}, {1, 1}, {1, 1}})
    cm.add(t, p);
  CHECK(cm.count(0, 0) == 2);
  CHECK(cm.count(0, 1) == 1);
  CHECK(cm.count(1, 0) == 1);
  CHECK(cm.count(1, 1) == 3);
  CHECK(cm.count(2, 2) == 0);
  CHECK(cm.row_total(1) == 4);
  CHECK(cm.total() == 7);
  CHECK(cm.accuracy() == Approx(100.0 * 5 / 7));
  const std::vector<double> pc = cm.per_class_accuracy();
  CHECK(pc[0] == Approx(100.0 * 2 / 3));
  CHECK(pc[1] == Approx(75.0));
  CHECK(std::isnan(pc[2]));

  const std::vector<std::string> names{"cat", "dog", "bird"};
  const std::string table = cm.format(names);
  CHECK_THAT(table,
             Catch::Contains("cat") && Catch::Contains("bird") && Catch::Contains("predicted"));
  const std::string per_class = format_per_class(cm, names);
  CHECK_THAT(per_class,
             Catch::Contains("75.00%") && Catch::Contains("(3/4)") && Catch::Contains("n/a"));

  REQUIRE_THROWS_WITH(cm.add(3, 0), Catch::Contains("(3, 0)") && Catch::Contains("[0, 3)"));
  REQUIRE_THROWS_WITH(cm.format({"a"}), Catch::Contains("1 class names for 3 classes"));
  CHECK(ConfusionMatrix(4).accuracy() == 0.0);
}

TEST_CASE("metrics.csv round-trips every value exactly", "[engine][metrics]") {
  const auto dir = scratch_dir("metrics_csv");
  const std::string path = (dir / "metrics.csv").string();
  const std::vector<EpochMetrics> rows{
      {1, 0.1, 2.302585124969482, 10.5, 2.1, 20.25, 12.5, 4000.25},
      {2, 0.1 / 3, 1.0 / 7, 100.0 / 3, std::nextafter(1.0, 2.0), 99.99, 1e-3, 1e9 / 7},
  };
  write_metrics_csv(path, rows);
  CHECK(read_metrics_csv(path) == rows);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  std::ifstream f(path);
  std::string header;
  std::getline(f, header);
  CHECK(header ==
        "epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,epoch_seconds,"
        "images_per_second,val_top5,test_top5,resumed_at_step");

  std::ofstream(path, std::ios::app) << "3,0.1,oops,1,,,1,1,1,1\n";
  REQUIRE_THROWS_WITH(read_metrics_csv(path),
                      Catch::Contains(path + ":4") && Catch::Contains("oops"));
  REQUIRE_THROWS_WITH(read_metrics_csv((dir / "missing.csv").string()),
                      Catch::Contains("missing.csv"));
}

TEST_CASE("metrics.csv keeps validation columns, and reads files from before --val-split",
          "[engine][metrics][val]") {
  const auto dir = scratch_dir("metrics_val");
  const std::string path = (dir / "metrics.csv").string();
  EpochMetrics with_val{1, 0.1, 2.0, 20.0, 1.9, 25.0, 3.5, 1000.0};
  with_val.has_val = true;
  with_val.val_loss = 1.0 / 3;
  with_val.val_acc = 31.25;
  const EpochMetrics without{2, 0.05, 1.5, 40.0, 1.4, 45.0, 3.0, 1100.0};
  write_metrics_csv(path, {with_val, without});
  const std::vector<EpochMetrics> back = read_metrics_csv(path);
  REQUIRE(back.size() == 2);
  CHECK(back[0] == with_val);
  CHECK(back[1] == without);
  CHECK_FALSE(back[1].has_val);

  // A run directory written before validation columns existed can still be resumed.
  const std::string old = (dir / "old.csv").string();
  std::ofstream(old) << "epoch,lr,train_loss,train_acc,test_loss,test_acc,epoch_seconds,"
                        "images_per_second\n1,0.1,2,20,1.9,25,3.5,1000\n";
  const std::vector<EpochMetrics> v1 = read_metrics_csv(old);
  REQUIRE(v1.size() == 1);
  CHECK(v1[0] == EpochMetrics{1, 0.1, 2.0, 20.0, 1.9, 25.0, 3.5, 1000.0});
  // And one written before top-5 and resumed_at_step (issue 16).
  std::ofstream(old) << "epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,"
                        "epoch_seconds,images_per_second\n1,0.1,2,20,,,1.9,25,3.5,1000\n";
  const std::vector<EpochMetrics> v2 = read_metrics_csv(old);
  REQUIRE(v2.size() == 1);
  CHECK(v2[0] == EpochMetrics{1, 0.1, 2.0, 20.0, 1.9, 25.0, 3.5, 1000.0});
}

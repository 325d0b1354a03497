#include "engine/report.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine_test_util.h"

using namespace minidl;
using namespace minidl::test;

namespace {

std::string base64_decode(const std::string& s) {
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    acc = (acc << 6) | static_cast<uint32_t>(alphabet.find(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
         (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

}  // namespace

TEST_CASE("base64 of the RFC 4648 test vectors", "[engine][report]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
}

TEST_CASE("png_data_uri encodes an upscaled PNG", "[engine][report]") {
  std::vector<uint8_t> chw(3 * 32 * 32);
  for (size_t i = 0; i < chw.size(); ++i) chw[i] = static_cast<uint8_t>(i * 7);
  const std::string uri = png_data_uri(chw.data(), 3, 32, 32, 2);
  const std::string prefix = "data:image/png;base64,";
  REQUIRE(uri.rfind(prefix, 0) == 0);
  const std::string png = base64_decode(uri.substr(prefix.size()));
  REQUIRE(png.size() > 33);
  CHECK(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  CHECK(png.substr(12, 4) == "IHDR");
  CHECK(be32(png, 16) == 64);  // width, upscaled 2x
  CHECK(be32(png, 20) == 64);  // height
  REQUIRE_THROWS_WITH(png_data_uri(chw.data(), 2, 32, 32, 1),
                      Catch::Contains("1 or 3 channels, got 2"));
}

TEST_CASE("report.html has every section, self-contained", "[engine][report]") {
  ReportData r;
  r.title = "plain on cifar10";
  r.status = "finished";
  r.model = "plain";
  r.dataset = "cifar10";
  r.date = "2024-01-01 00:00:00";
  r.device = "cpu (2 threads)";
  r.command = "train --model plain --out '<x>'";
  r.best_accuracy = 55.5;
  r.best_epoch = 2;
  r.total_seconds = 12.0;
  r.history = {{1, 0.1, 2.0, 25.0, 1.9, 30.0, 5.0, 100.0},
               {2, 0.05, 1.5, 45.0, 1.4, 55.5, 5.0, 100.0}};
  r.lr_curve = {{0.0, 0.1}, {1.0, 0.05}, {2.0, 0.05}};
  r.class_names = {"airplane", "automobile", "bird"};
  r.confusion = ConfusionMatrix(3);
  r.confusion.add(0, 0);
  r.confusion.add(1, 2);
  r.test_loss = 1.4;
  r.test_acc = 55.5;
  r.samples.push_back({std::vector<uint8_t>(3 * 32 * 32, 128), 0, 0});
  r.samples.push_back({std::vector<uint8_t>(3 * 32 * 32, 10), 1, 2});

  const auto dir = scratch_dir("report");
  const std::string path = (dir / "report.html").string();
  write_report(path, r);
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string html = ss.str();
  CHECK_THAT(html, Catch::StartsWith("<!DOCTYPE html>") && Catch::Contains("</html>"));
  for (const char* section :
       {"<h1>plain on cifar10</h1>", "best test accuracy", "55.50% (epoch 2)", "<h2>Curves</h2>",
        ">Loss</text>", ">Accuracy</text>", ">Learning rate</text>", "<polyline",
        "<h2>Confusion matrix</h2>", "<table class=\"cm\">", "<h2>Per-class accuracy</h2>",
        "<h2>Test images</h2>", "data:image/png;base64,", "automobile", "pred: bird",
        "class=\"bad\"", "class=\"ok\"", "cpu (2 threads)", "--out &#39;&lt;x&gt;&#39;"}) {
    INFO(section);
    CHECK_THAT(html, Catch::Contains(section));
  }
  // Self-contained: nothing is fetched from elsewhere.
  CHECK_THAT(html, !Catch::Contains("<script") && !Catch::Contains("<link") &&
                       !Catch::Contains("src=\"http") && !Catch::Contains("url("));
  CHECK_THAT(html, !Catch::Contains("http-equiv=\"refresh\""));
  r.in_progress = true;
  CHECK_THAT(render_report(r), Catch::Contains("http-equiv=\"refresh\""));
}

TEST_CASE("svg_line_chart draws axes, a line per series and a legend", "[engine][report]") {
  const std::string svg = svg_line_chart(
      "Loss", "epoch", "loss", {{"train", "#111", {{1, 2.0}, {2, 1.0}}}, {"empty", "#222", {}}});
  CHECK_THAT(svg, Catch::StartsWith("<svg") && Catch::Contains("</svg>") &&
                      Catch::Contains(">train</text>"));
  CHECK_THAT(svg, !Catch::Contains(">empty</text>"));
  CHECK(std::count(svg.begin(), svg.end(), '\n') > 5);
  CHECK_THAT(svg_line_chart("x", "e", "y", {}), Catch::Contains("no data yet"));
  // Epoch axes: whole-number ticks only.
  const ChartSeries four{"s", "#111", {{1, 1.0}, {2, 2.0}, {3, 1.0}, {4, 2.0}}};
  CHECK_THAT(svg_line_chart("x", "e", "y", {four}), Catch::Contains(">1.5</text>"));
  CHECK_THAT(svg_line_chart("x", "e", "y", {four}, 1.0),
             !Catch::Contains(">1.5</text>") && Catch::Contains(">3</text>"));
}

// report.html: one self-contained page per run (no external scripts, styles or images, so it opens
// offline in any browser) with the run's header, loss/accuracy/learning-rate curves as inline SVG,
// the confusion matrix as a coloured table, per-class accuracy, and a grid of test images with
// their true and predicted labels (PNG data URIs). The trainer rewrites it after every epoch; while
// a run is in progress the page reloads itself every 30 seconds.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/metrics.h"

namespace minidl {

struct SampleImage {
  std::vector<uint8_t> chw;  // 3 x 32 x 32, as stored in the dataset
  int truth = 0;
  int predicted = 0;
};

struct ReportData {
  std::string title;         // "resnet20 on cifar10"
  std::string status;        // "training: epoch 3 of 30", "finished", "interrupted", "evaluation"
  bool in_progress = false;  // the page reloads itself while true
  std::string model, dataset, date, device, command, checkpoint;
  double best_accuracy = 0.0;
  int64_t best_epoch = -1;  // -1: no epoch evaluated yet
  std::string best_label = "best test accuracy";  // "best validation accuracy" with --val-split
  double total_seconds = 0.0;
  std::vector<EpochMetrics> history;
  std::vector<std::pair<double, double>> lr_curve;  // (epoch, lr) of the schedule
  // Per layer (by path, in forward order): (epoch, L2 norm of its parameter gradient at the
  // epoch's last step), drawn by grad_norm_chart (engine/trace.h).
  std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>> layer_grad_norms;
  // The latest evaluation on the test set.
  double test_loss = 0.0, test_acc = 0.0, test_top5 = 0.0;
  std::vector<std::string> class_names;
  ConfusionMatrix confusion;  // 0 classes: no evaluation yet
  std::vector<SampleImage> samples;
};

std::string render_report(const ReportData& r);
// Writes render_report(r) atomically (temp file + rename), so a browser never reads half a page.
void write_report(const std::string& path, const ReportData& r);

// "data:image/png;base64,..." of a C x H x W uint8 image (C = 1 or 3), each pixel drawn as a
// scale x scale block (nearest neighbour) so 32x32 images are visible.
std::string png_data_uri(const uint8_t* chw, int channels, int height, int width, int scale);
std::string base64_encode(const std::string& bytes);

struct ChartSeries {
  std::string name;
  std::string color;                              // CSS colour
  std::vector<std::pair<double, double>> points;  // (x, y)
};
// An SVG line chart with axes, ticks and a legend; empty series are skipped. x ticks are at least
// min_x_step apart (1 for epochs, so that a short run is not labelled 0.5, 1.5, ...).
std::string svg_line_chart(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<ChartSeries>& series,
                           double min_x_step = 0.0);

// Escapes & < > " ' for HTML text and attributes.
std::string html_escape(const std::string& s);

}  // namespace minidl

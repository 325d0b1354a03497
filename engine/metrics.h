// What a run measures: per-epoch numbers (one row of metrics.csv) and the confusion matrix of an
// evaluation, with the per-class accuracy derived from it. Accuracies are percentages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/atomic_file.h"  // write_file_atomic, used by the engine's writers

namespace minidl {

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based: the epoch just completed
  double lr = 0.0;    // learning rate at the end of the epoch
  double train_loss = 0.0, train_acc = 0.0;
  double test_loss = 0.0, test_acc = 0.0;
  double epoch_seconds = 0.0;      // training and evaluation
  double images_per_second = 0.0;  // training images / training time
  // A --val-split run: the validation set's numbers after the epoch (last, so that the fields
  // before keep their positions in aggregate initialisers).
  bool has_val = false;
  double val_loss = 0.0, val_acc = 0.0;
  // Top-5 accuracy (percent) of the evaluations, and for an epoch resumed in its middle the steps
  // trained before the resume (its train loss and accuracy cover the steps after them); 0: all.
  double val_top5 = 0.0, test_top5 = 0.0;
  int64_t resumed_at_step = 0;

  bool operator==(const EpochMetrics&) const = default;
};

// counts[t][p]: test images of true class t predicted as p. Rows are the truth, as in
// sklearn.metrics.confusion_matrix.
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int num_classes = 0);
  void add(int truth, int predicted);  // throws naming the label when out of range
  int num_classes() const { return k_; }
  int64_t count(int truth, int predicted) const {
    return counts_[static_cast<size_t>(truth) * k_ + predicted];
  }
  int64_t row_total(int truth) const;
  int64_t total() const;
  // Percent of all images on the diagonal (0 when empty).
  double accuracy() const;
  // Percent of class t's images predicted as t; NaN for a class with no images.
  std::vector<double> per_class_accuracy() const;
  // Plain-text table for the terminal: a row per true class, a column per predicted class,
  // class names abbreviated to fit.
  std::string format(const std::vector<std::string>& class_names) const;

 private:
  int k_;
  std::vector<int64_t> counts_;
};

// Per-class accuracy as aligned "name  93.10%  (931/1000)" lines.
std::string format_per_class(const ConfusionMatrix& cm,
                             const std::vector<std::string>& class_names);

// metrics.csv: header
// epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,epoch_seconds,images_per_second,
// val_top5,test_top5,resumed_at_step
// then one row per epoch; val_loss, val_acc and val_top5 are empty without --val-split. Written
// whole (temp file + rename) so a reader never sees half a file.
void write_metrics_csv(const std::string& path, const std::vector<EpochMetrics>& rows);
// Reads a file written by write_metrics_csv, or by minidl before top-5 (no last three columns) or
// before --val-split (no val columns either);
// throws naming the path and line when malformed.
std::vector<EpochMetrics> read_metrics_csv(const std::string& path);

}  // namespace minidl

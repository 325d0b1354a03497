#include "engine/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"

namespace minidl {

ConfusionMatrix::ConfusionMatrix(int num_classes)
    : k_(num_classes), counts_(static_cast<size_t>(num_classes) * num_classes, 0) {
  MINIDL_CHECK(num_classes >= 0, "ConfusionMatrix: expected a class count >= 0, got ", num_classes);
}

void ConfusionMatrix::add(int truth, int predicted) {
  MINIDL_CHECK(truth >= 0 && truth < k_ && predicted >= 0 && predicted < k_,
               "ConfusionMatrix::add: labels (", truth, ", ", predicted, ") outside [0, ", k_, ")");
  ++counts_[static_cast<size_t>(truth) * k_ + predicted];
}

int64_t ConfusionMatrix::row_total(int truth) const {
  int64_t n = 0;
  for (int p = 0; p < k_; ++p) n += count(truth, p);
  return n;
}

int64_t ConfusionMatrix::total() const {
  int64_t n = 0;
  for (int64_t c : counts_) n += c;
  return n;
}

double ConfusionMatrix::accuracy() const {
  const int64_t n = total();
  int64_t diag = 0;
  for (int t = 0; t < k_; ++t) diag += count(t, t);
  return n == 0 ? 0.0 : 100.0 * static_cast<double>(diag) / static_cast<double>(n);
}

std::vector<double> ConfusionMatrix::per_class_accuracy() const {
  std::vector<double> acc(k_);
  for (int t = 0; t < k_; ++t) {
    const int64_t n = row_total(t);
    acc[t] = n == 0 ? std::numeric_limits<double>::quiet_NaN()
                    : 100.0 * static_cast<double>(count(t, t)) / static_cast<double>(n);
  }
  return acc;
}

std::string ConfusionMatrix::format(const std::vector<std::string>& names) const {
  MINIDL_CHECK(static_cast<int>(names.size()) == k_, "ConfusionMatrix::format: ", names.size(),
               " class names for ", k_, " classes");
  // Columns as wide as the largest count, at least 5 characters; rows labelled by the full name.
  int64_t biggest = 0;
  for (int64_t c : counts_) biggest = std::max(biggest, c);
  const int width = std::max<int>(5, static_cast<int>(std::to_string(biggest).size()) + 1);
  size_t name_width = 10;
  for (const auto& n : names) name_width = std::max(name_width, n.size());

  std::string s = fmt::format("{:>{}}  predicted ->\n", "true", name_width);
  s += fmt::format("{:>{}} ", "", name_width);
  for (int p = 0; p < k_; ++p) s += fmt::format("{:>{}}", names[p].substr(0, width - 1), width);
  s += '\n';
  for (int t = 0; t < k_; ++t) {
    s += fmt::format("{:>{}} ", names[t], name_width);
    for (int p = 0; p < k_; ++p) s += fmt::format("{:>{}}", count(t, p), width);
    s += '\n';
  }
  return s;
}

std::string format_per_class(const ConfusionMatrix& cm, const std::vector<std::string>& names) {
  MINIDL_CHECK(static_cast<int>(names.size()) == cm.num_classes(),
               "format_per_class: ", names.size(), " class names for ", cm.num_classes(),
               " classes");
  size_t name_width = 10;
  for (const auto& n : names) name_width = std::max(name_width, n.size());
  const std::vector<double> acc = cm.per_class_accuracy();
  std::string s;
  for (int t = 0; t < cm.num_classes(); ++t) {
    s += std::isnan(acc[t]) ? fmt::format("{:>{}}     n/a  (no images)\n", names[t], name_width)
                            : fmt::format("{:>{}}  {:6.2f}%  ({}/{})\n", names[t], name_width,
                                          acc[t], cm.count(t, t), cm.row_total(t));
  }
  return s;
}

namespace {

constexpr const char* kCsvHeader =
    "epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,epoch_seconds,"
    "images_per_second,val_top5,test_top5,resumed_at_step";
// The header before top-5 existed.
constexpr const char* kCsvHeaderV2 =
    "epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,epoch_seconds,"
    "images_per_second";
// The header before --val-split existed: still read, so that older runs can be resumed.
constexpr const char* kCsvHeaderV1 =
    "epoch,lr,train_loss,train_acc,test_loss,test_acc,epoch_seconds,images_per_second";

// Shortest text that reads back as the same double, so metrics.csv round-trips exactly (a resumed
// run's history must equal the uninterrupted run's).
std::string exact(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

void write_metrics_csv(const std::string& path, const std::vector<EpochMetrics>& rows) {
  std::string s = std::string(kCsvHeader) + "\n";
  for (const EpochMetrics& m : rows) {
    s += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}\n", m.epoch, exact(m.lr),
                     exact(m.train_loss), exact(m.train_acc), m.has_val ? exact(m.val_loss) : "",
                     m.has_val ? exact(m.val_acc) : "", exact(m.test_loss), exact(m.test_acc),
                     exact(m.epoch_seconds), exact(m.images_per_second),
                     m.has_val ? exact(m.val_top5) : "", exact(m.test_top5), m.resumed_at_step);
  }
  write_file_atomic(path, s);
}

std::vector<EpochMetrics> read_metrics_csv(const std::string& path) {
  std::ifstream f(path);
  MINIDL_CHECK(f.good(), "cannot read ", path, ": ", std::strerror(errno));
  std::string line;
  std::getline(f, line);
  const bool v1 = line == kCsvHeaderV1, v2 = line == kCsvHeaderV2;
  MINIDL_CHECK(v1 || v2 || line == kCsvHeader, path, ": expected the header '", kCsvHeader,
               "', got '", line, "'");
  const size_t columns = v1 ? 8 : v2 ? 10 : 13;
  std::vector<EpochMetrics> rows;
  for (int lineno = 2; std::getline(f, line); ++lineno) {
    if (line.empty()) continue;
    std::vector<double> v;
    std::stringstream ss(line + ",");  // so that an empty last cell is still a cell
    std::string cell;
    bool has_val = false;
    while (std::getline(ss, cell, ',')) {
      // val_loss, val_acc, val_top5: empty without a split
      if (!v1 && (v.size() == 4 || v.size() == 5 || v.size() == 10)) {
        if (v.size() != 10) has_val = !cell.empty();
        if (cell.empty()) {
          v.push_back(0.0);
          continue;
        }
      }
      double x = 0.0;
      const auto r = std::from_chars(cell.data(), cell.data() + cell.size(), x);
      MINIDL_CHECK(r.ec == std::errc() && r.ptr == cell.data() + cell.size(), path, ":", lineno,
                   ": '", cell, "' is not a number");
      v.push_back(x);
    }
    MINIDL_CHECK(v.size() == columns, path, ":", lineno, ": expected ", columns, " columns, got ",
                 v.size());
    if (v1) v.insert(v.begin() + 4, {0.0, 0.0});
    if (v.size() == 10) v.insert(v.end(), {0.0, 0.0, 0.0});  // before top-5
    EpochMetrics m;
    m.epoch = static_cast<int64_t>(v[0]);
    m.lr = v[1];
    m.train_loss = v[2];
    m.train_acc = v[3];
    m.has_val = has_val;
    m.val_loss = v[4];
    m.val_acc = v[5];
    m.test_loss = v[6];
    m.test_acc = v[7];
    m.epoch_seconds = v[8];
    m.images_per_second = v[9];
    m.val_top5 = v[10];
    m.test_top5 = v[11];
    m.resumed_at_step = static_cast<int64_t>(v[12]);
    rows.push_back(m);
  }
  return rows;
}

}  // namespace minidl

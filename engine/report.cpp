#include "engine/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

// The one place that compiles stb_image_write; static, so its symbols cannot clash with another
// copy.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#include "core/error.h"
#include "engine/trace.h"

namespace minidl {

std::string html_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&#39;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

std::string base64_encode(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  o.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v =
        (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) o += kAlphabet[(v >> s) & 63];
  }
  if (i < bytes.size()) {  // 1 or 2 bytes left: pad with '='
    const bool two = i + 1 < bytes.size();
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (two ? uint8_t(bytes[i + 1]) << 8 : 0);
    o += kAlphabet[(v >> 18) & 63];
    o += kAlphabet[(v >> 12) & 63];
    o += two ? kAlphabet[(v >> 6) & 63] : '=';
    o += '=';
  }
  return o;
}

std::string png_data_uri(const uint8_t* chw, int channels, int height, int width, int scale) {
  MINIDL_CHECK(channels == 1 || channels == 3, "png_data_uri: expected 1 or 3 channels, got ",
               channels);
  MINIDL_CHECK(height > 0 && width > 0 && scale >= 1, "png_data_uri: bad size ", height, "x", width,
               " scale ", scale);
  // Planar CHW (the dataset's layout) to interleaved HWC (what PNG stores), upscaled.
  const int H = height * scale, W = width * scale;
  std::vector<uint8_t> hwc(static_cast<size_t>(H) * W * channels);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < channels; ++c)
        hwc[(static_cast<size_t>(y) * W + x) * channels + c] =
            chw[(static_cast<size_t>(c) * height + y / scale) * width + x / scale];
  std::string png;
  auto append = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data),
                                           static_cast<size_t>(size));
  };
  MINIDL_CHECK(stbi_write_png_to_func(append, &png, W, H, channels, hwc.data(), W * channels) != 0,
               "png_data_uri: PNG encoding failed");
  return "data:image/png;base64," + base64_encode(png);
}

namespace {

// Tick spacing of 1, 2 or 5 times a power of ten giving about `n` intervals over `range`.
double nice_step(double range, int n) {
  if (!(range > 0)) return 1.0;
  const double raw = range / n, p = std::pow(10.0, std::floor(std::log10(raw))), f = raw / p;
  return p * (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10);
}

std::string fmt_tick(double v) { return fmt::format("{:.4g}", std::abs(v) < 1e-12 ? 0.0 : v); }

}  // namespace

std::string svg_line_chart(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<ChartSeries>& series,
                           double min_x_step) {
  // The plot is W wide; the legend sits in a column of width LW to its right, never on a curve.
  constexpr double W = 480, H = 280, L = 62, R = 16, T = 30, B = 44, LW = 104;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} "
      "{1}\" "
      "class=\"chart\">\n<text x=\"{2}\" y=\"18\" class=\"ctitle\">{3}</text>\n",
      W + LW, H, L, html_escape(title));
  if (!std::isfinite(x0))
    return svg + fmt::format("<text x=\"{}\" y=\"{}\">no data yet</text>\n</svg>\n", L, H / 2);
  if (x1 == x0) x0 -= 0.5, x1 += 0.5;
  const double ystep = nice_step(y1 - y0 > 0 ? y1 - y0 : std::max(std::abs(y0), 1e-12), 5);
  y0 = std::floor(y0 / ystep) * ystep, y1 = std::ceil(y1 / ystep) * ystep;
  if (y1 == y0) y1 = y0 + ystep;
  const auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  const auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };

  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" class=\"plot\"/>\n", L, T,
                     W - L - R, H - T - B);
  for (double y = y0; y <= y1 + ystep * 1e-6; y += ystep)
    svg += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" class=\"grid\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" class=\"ytick\">{5}</text>\n",
        L, W - R, py(y), L - 5, py(y) + 4, fmt_tick(y));
  const double xstep = std::max({nice_step(x1 - x0, 8), min_x_step, 1e-12});
  for (double x = std::ceil(x0 / xstep) * xstep; x <= x1 + xstep * 1e-6; x += xstep)
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" class=\"grid\"/>"
        "<text x=\"{0:.1f}\" y=\"{3}\" class=\"xtick\">{4}</text>\n",
        px(x), T, H - B, H - B + 15, fmt_tick(x));
  svg += fmt::format("<text x=\"{}\" y=\"{}\" class=\"xlabel\">{}</text>\n", L + (W - L - R) / 2,
                     H - 8, html_escape(x_label));
  svg += fmt::format(
      "<text x=\"14\" y=\"{0}\" class=\"ylabel\" transform=\"rotate(-90 14 {0})\">{1}</text>\n",
      T + (H - T - B) / 2, html_escape(y_label));

  int legend_row = 0;
  for (const auto& s : series) {
    if (s.points.empty()) continue;
    std::string pts;
    for (const auto& [x, y] : s.points)
      if (std::isfinite(x) && std::isfinite(y)) pts += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                       pts, s.color);
    if (s.points.size() <= 60)  // markers only while they stay apart
      for (const auto& [x, y] : s.points)
        if (std::isfinite(x) && std::isfinite(y))
          svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"{}\"/>", px(x),
                             py(y), s.color);
    const double ly = T + 14 + 16 * legend_row++;
    svg += fmt::format(
        "\n<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"3\"/>"
        "<text x=\"{4}\" y=\"{5}\" class=\"legend\">{6}</text>\n",
        W - R + 10, W - R + 28, ly, s.color, W - R + 34, ly + 4, html_escape(s.name));
  }
  return svg + "</svg>\n";
}

namespace {

constexpr const char* kStyle = R"(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; }
table.info td { padding: 2px 12px 2px 0; vertical-align: top; } table.info td:first-child { color: #666; }
code { background: #f3f3f3; padding: 2px 4px; word-break: break-all; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.chart { background: #fff; border: 1px solid #ddd; }
.chart .plot { fill: none; stroke: #999; } .chart .grid { stroke: #eee; }
.chart text { font-size: 11px; fill: #333; } .chart .ctitle { font-size: 13px; font-weight: bold; }
.chart .ytick { text-anchor: end; } .chart .xtick, .chart .xlabel, .chart .ylabel { text-anchor: middle; }
table.cm { border-collapse: collapse; font-size: 12px; }
table.cm td, table.cm th { border: 1px solid #ddd; padding: 3px 5px; text-align: right; }
table.cm th.pred { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
table.pc { border-collapse: collapse; font-size: 13px; } table.pc td { padding: 2px 10px; }
.bar { display: inline-block; height: 10px; background: #4a8; }
.grid-images { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 96px; text-align: center; font-size: 11px; }
figure img { width: 64px; height: 64px; image-rendering: pixelated; border: 3px solid; }
.ok { color: #1a7f37; border-color: #1a7f37; } .bad { color: #c62828; border-color: #c62828; }
)";

std::string info_row(const std::string& k, const std::string& v) {
  return fmt::format("<tr><td>{}</td><td>{}</td></tr>\n", k, v);
}

std::string class_name(const ReportData& r, int k) {
  return k >= 0 && k < static_cast<int>(r.class_names.size()) ? r.class_names[k]
                                                              : std::to_string(k);
}

std::string confusion_table(const ReportData& r) {
  const ConfusionMatrix& cm = r.confusion;
  std::string s = "<table class=\"cm\">\n<tr><th>true \\ predicted</th>";
  for (int p = 0; p < cm.num_classes(); ++p)
    s += fmt::format("<th class=\"pred\">{}</th>", html_escape(class_name(r, p)));
  s += "</tr>\n";
  for (int t = 0; t < cm.num_classes(); ++t) {
    s += fmt::format("<tr><th>{}</th>", html_escape(class_name(r, t)));
    const double row = static_cast<double>(std::max<int64_t>(cm.row_total(t), 1));
    for (int p = 0; p < cm.num_classes(); ++p) {
      // Shade by the fraction of the true class's images: green on the diagonal, red off it.
      const double f = static_cast<double>(cm.count(t, p)) / row;
      const std::string bg = t == p ? fmt::format("rgba(26,127,55,{:.3f})", f)
                                    : fmt::format("rgba(198,40,40,{:.3f})", std::min(1.0, 2.5 * f));
      s += fmt::format("<td style=\"background:{}\">{}</td>", bg, cm.count(t, p));
    }
    s += "</tr>\n";
  }
  return s + "</table>\n";
}

std::string per_class_table(const ReportData& r) {
  const std::vector<double> acc = r.confusion.per_class_accuracy();
  std::string s = "<table class=\"pc\">\n";
  for (int t = 0; t < r.confusion.num_classes(); ++t) {
    if (std::isnan(acc[t])) {
      s +=
          fmt::format("<tr><td>{}</td><td>n/a</td><td></td></tr>\n", html_escape(class_name(r, t)));
      continue;
    }
    s += fmt::format(
        "<tr><td>{}</td><td>{:.2f}%</td><td><span class=\"bar\" style=\"width:{:.0f}px\"></span>"
        "</td><td>{}/{}</td></tr>\n",
        html_escape(class_name(r, t)), acc[t], 2 * acc[t], r.confusion.count(t, t),
        r.confusion.row_total(t));
  }
  return s + "</table>\n";
}

std::string sample_grid(const ReportData& r) {
  std::string s = "<div class=\"grid-images\">\n";
  for (const SampleImage& im : r.samples) {
    MINIDL_CHECK(im.chw.size() == 3 * 32 * 32, "report: sample images must be 3x32x32, got ",
                 im.chw.size(), " bytes");
    const char* cls = im.truth == im.predicted ? "ok" : "bad";
    s += fmt::format(
        "<figure><img class=\"{0}\" src=\"{1}\" alt=\"{2}\"><figcaption>true: {2}<br>"
        "<span class=\"{0}\">pred: {3}</span></figcaption></figure>\n",
        cls, png_data_uri(im.chw.data(), 3, 32, 32, 2), html_escape(class_name(r, im.truth)),
        html_escape(class_name(r, im.predicted)));
  }
  return s + "</div>\n";
}

}  // namespace

std::string render_report(const ReportData& r) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  if (r.in_progress) h += "<meta http-equiv=\"refresh\" content=\"30\">\n";
  h += fmt::format("<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
                   html_escape(r.title), kStyle, html_escape(r.title));

  h += "<table class=\"info\">\n";
  h += info_row("status", html_escape(r.status));
  h += info_row("model", html_escape(r.model));
  h += info_row("dataset", html_escape(r.dataset));
  h += info_row("date", html_escape(r.date));
  h += info_row("device", html_escape(r.device));
  if (!r.checkpoint.empty())
    h += info_row("checkpoint", "<code>" + html_escape(r.checkpoint) + "</code>");
  if (r.best_epoch >= 0)
    h += info_row(r.best_label,
                  fmt::format("{:.2f}% (epoch {})", r.best_accuracy, r.best_epoch));
  if (r.confusion.total() > 0)
    h += info_row("latest test", fmt::format("loss {:.4f}, accuracy {:.2f}%, top-5 {:.2f}%",
                                             r.test_loss, r.test_acc, r.test_top5));
  h += info_row("total time", fmt::format("{:.1f} s", r.total_seconds));
  // One line per invocation (a resumed run: the original command, then each --resume).
  std::string commands;
  for (size_t b = 0, e; b < r.command.size(); b = e + 1) {
    e = std::min(r.command.find('\n', b), r.command.size());
    commands += (commands.empty() ? "" : "<br>") +
                ("<code>" + html_escape(r.command.substr(b, e - b)) + "</code>");
  }
  h += info_row(r.command.find('\n') == std::string::npos ? "command" : "commands", commands);
  h += "</table>\n";

  if (!r.history.empty() || !r.lr_curve.empty()) {
    ChartSeries train_loss{"train", "#1f77b4", {}}, test_loss{"test", "#d62728", {}};
    ChartSeries train_acc{"train", "#1f77b4", {}}, test_acc{"test", "#d62728", {}};
    ChartSeries val_loss{"validation", "#ff7f0e", {}}, val_acc{"validation", "#ff7f0e", {}};
    ChartSeries test_top5{"test top-5", "#9467bd", {}};
    std::string partial;  // the epochs whose train numbers cover only the steps after a resume
    for (const EpochMetrics& m : r.history) {
      const double e = static_cast<double>(m.epoch);
      train_loss.points.push_back({e, m.train_loss});
      test_loss.points.push_back({e, m.test_loss});
      train_acc.points.push_back({e, m.train_acc});
      test_acc.points.push_back({e, m.test_acc});
      if (m.test_top5 > 0.0) test_top5.points.push_back({e, m.test_top5});
      if (m.resumed_at_step > 0)
        partial += fmt::format("{}epoch {} (resumed after step {})", partial.empty() ? "" : ", ",
                               m.epoch, m.resumed_at_step);
      if (m.has_val) {  // --val-split: the curve that chooses the best checkpoint
        val_loss.points.push_back({e, m.val_loss});
        val_acc.points.push_back({e, m.val_acc});
      }
    }
    h += "<h2>Curves</h2>\n<div class=\"charts\">\n";
    h += svg_line_chart("Loss", "epoch", "cross-entropy", {train_loss, val_loss, test_loss}, 1.0);
    h += svg_line_chart("Accuracy", "epoch", "accuracy (%)",
                        {train_acc, val_acc, test_acc, test_top5}, 1.0);
    // The schedule when the run's is known, else (an evaluation's report) each epoch's lr.
    std::vector<std::pair<double, double>> lr = r.lr_curve;
    if (lr.empty())
      for (const EpochMetrics& m : r.history) lr.push_back({static_cast<double>(m.epoch), m.lr});
    if (!lr.empty())
      h += svg_line_chart("Learning rate", "epoch", "lr", {{"schedule", "#2ca02c", lr}}, 1.0);
    h += "</div>\n";
    if (!partial.empty())
      h += "<p>The train loss and accuracy of " + html_escape(partial) +
           " cover only the steps after the resume, not the whole epoch.</p>\n";
  }
  h += grad_norm_chart(r);

  if (r.confusion.total() > 0) {
    h += fmt::format("<h2>Confusion matrix</h2>\n<p>{} test images; rows are the true class.</p>\n",
                     r.confusion.total());
    h += confusion_table(r);
    h += "<h2>Per-class accuracy</h2>\n" + per_class_table(r);
  }
  if (!r.samples.empty()) {
    h += fmt::format(
        "<h2>Test images</h2>\n<p>The first {} test images with the latest predictions "
        "(green: correct, red: wrong).</p>\n",
        r.samples.size());
    h += sample_grid(r);
  }
  return h + "</body>\n</html>\n";
}

void write_report(const std::string& path, const ReportData& r) {
  write_file_atomic(path, render_report(r));
}

}  // namespace minidl

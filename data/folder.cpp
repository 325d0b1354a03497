// The folder dataset (folder.h): scanning the class folders, the decode transforms, the statistics.
#include "data/folder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <thread>

#include "data/thread_pool.h"

namespace minidl {

namespace fs = std::filesystem;

bool BadImageLog::add(const std::string& path) {
  std::lock_guard<std::mutex> lock(m_);
  return paths_.insert(path).second;
}

int64_t BadImageLog::count() const {
  std::lock_guard<std::mutex> lock(m_);
  return static_cast<int64_t>(paths_.size());
}

int eval_resize(int s) { return s <= 32 ? s : static_cast<int>(std::lround(s * 256.0 / 224.0)); }

namespace {

struct Scan {
  std::vector<std::string> classes;
  std::vector<std::string> paths;
  std::vector<int32_t> labels;
  std::vector<std::string> ignored;  // files that are not images by name
};

std::vector<std::string> sorted_subdirs(const fs::path& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.is_directory()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The class folders of `dir` and their images (sorted paths, as ImageFolder lists them).
Scan scan_split(const fs::path& dir, const std::vector<std::string>& skip_dirs) {
  Scan s;
  for (const std::string& name : sorted_subdirs(dir))
    if (std::find(skip_dirs.begin(), skip_dirs.end(), name) == skip_dirs.end())
      s.classes.push_back(name);
  if (s.classes.empty())
    throw Error(str("folder dataset ", dir.string(),
                    ": no class folders (expected one subfolder of images per class, e.g. ",
                    (dir / "cat" / "0001.jpg").string(), ")"));
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (!e.is_directory()) s.ignored.push_back(e.path().string());  // loose files beside classes
  for (size_t c = 0; c < s.classes.size(); ++c) {
    const fs::path cdir = dir / s.classes[c];
    std::vector<std::string> files;
    for (const fs::directory_entry& e : fs::recursive_directory_iterator(
             cdir, fs::directory_options::follow_directory_symlink)) {
      if (e.is_directory()) continue;
      const std::string p = e.path().string();
      (has_image_extension(p) ? files : s.ignored).push_back(p);
    }
    if (files.empty())
      throw Error(str("folder dataset: class folder ", cdir.string(),
                      " holds no images (.jpg, .jpeg or .png); add images or remove the folder"));
    std::sort(files.begin(), files.end());
    for (std::string& f : files) {
      s.paths.push_back(std::move(f));
      s.labels.push_back(static_cast<int32_t>(c));
    }
  }
  return s;
}

// The fixed order of a split's samples (see folder.h): a Fisher-Yates permutation under a
// constant key.
std::vector<size_t> fixed_order(size_t n) {
  std::vector<size_t> p(n);
  std::iota(p.begin(), p.end(), size_t{0});
  Generator g(0x6D696E69646C2E66ull);  // "minidl.f"
  for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[g.below(i)]);
  return p;
}

std::string list_some(const std::vector<std::string>& v, size_t k) {
  std::string s;
  for (size_t i = 0; i < std::min(k, v.size()); ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > k) s += str(", ... (", v.size() - k, " more)");
  return s;
}

}  // namespace

Dataset load_image_folder(const std::string& dir, Split split, int64_t subset,
                          const DataOptions& opt) {
  const fs::path root(dir);
  if (!fs::is_directory(root))
    throw Error(str("folder dataset ", dir, ": no such directory"));
  MINIDL_CHECK(opt.image_size >= 8 && opt.image_size <= 1024, "--image-size ", opt.image_size,
               ": expected 8 to 1024 pixels");
  const bool has_train = fs::is_directory(root / "train");
  fs::path eval_dir;
  for (const char* name : {"val", "test"})
    if (eval_dir.empty() && fs::is_directory(root / name)) eval_dir = root / name;
  if (has_train != !eval_dir.empty())
    throw Error(str("folder dataset ", dir, ": has ", has_train ? "train/ but no val/ or test/"
                                                                  : "val/ or test/ but no train/",
                    "; give both splits, or put the class folders directly in ", dir));

  Scan scan;
  fs::path split_dir;
  bool every_tenth = false;  // no split folders: every 10th sample is the evaluation split
  if (has_train) {
    split_dir = split == Split::Train ? root / "train" : eval_dir;
    scan = scan_split(split_dir, {});
    if (split == Split::Test) {
      const std::vector<std::string> train_classes = sorted_subdirs(root / "train");
      if (train_classes != scan.classes)
        throw Error(str("folder dataset ", dir, ": the classes of ", eval_dir.filename().string(),
                        "/ (", list_some(scan.classes, 5), ") differ from those of train/ (",
                        list_some(train_classes, 5), "); both splits need the same class folders"));
    }
  } else {
    split_dir = root;
    scan = scan_split(root, {});
    every_tenth = true;
  }

  Dataset d;
  d.name = "folder";
  d.class_names = scan.classes;
  d.num_classes = static_cast<int>(scan.classes.size());
  auto files = std::make_shared<ImageFiles>();
  files->root = split_dir.string();
  files->opt = opt;
  const std::vector<size_t> order = fixed_order(scan.paths.size());
  for (size_t k = 0; k < order.size(); ++k) {
    if (every_tenth && ((k % 10 == 9) != (split == Split::Test))) continue;
    files->paths.push_back(scan.paths[order[k]]);
    d.labels.push_back(scan.labels[order[k]]);
  }
  if (d.labels.empty())
    throw Error(str("folder dataset ", dir, ": no ", split == Split::Train ? "training" : "test",
                    " images (", scan.paths.size(), " images in all; without train/ and val/ "
                    "every 10th is a test image)"));
  if (subset > 0 && subset < d.size()) {
    files->paths.resize(static_cast<size_t>(subset));
    d.labels.resize(static_cast<size_t>(subset));
  }
  d.files = std::move(files);
  if (!scan.ignored.empty())
    d.warnings.push_back(str("folder dataset ", split_dir.string(), ": ", scan.ignored.size(),
                             " file(s) are not .jpg/.jpeg/.png images and are not used: ",
                             list_some(scan.ignored, 3)));
  if (every_tenth && split == Split::Train)
    d.warnings.push_back(str("folder dataset ", dir, ": no train/ and val/ (or test/) folders; "
                             "every 10th image is held out as the test split"));
  return d;
}

void decode_eval(const ImageFiles& f, int64_t i, uint8_t* out) {
  const int s = f.opt.image_size;
  resize_center_crop(decode_image(f.paths[static_cast<size_t>(i)]), eval_resize(s), s, out);
}

void decode_random_resized_crop(const ImageFiles& f, int64_t i, Generator& g, uint8_t* out) {
  const Image img = decode_image(f.paths[static_cast<size_t>(i)]);
  const int s = f.opt.image_size;
  const double W = img.width, H = img.height, area = W * H;
  const double lo = std::log(3.0 / 4.0), hi = std::log(4.0 / 3.0);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * g.uniform(0.08, 1.0);
    const double ratio = std::exp(g.uniform(lo, hi));
    const double w = std::round(std::sqrt(target * ratio)), h = std::round(std::sqrt(target / ratio));
    if (w > 0 && w <= W && h > 0 && h <= H) {
      const double y = static_cast<double>(g.below(static_cast<uint64_t>(H - h + 1)));
      const double x = static_cast<double>(g.below(static_cast<uint64_t>(W - w + 1)));
      resample_box(img, x, y, w, h, s, s, out);
      return;
    }
  }
  // torchvision's fallback: the centre crop of the whole image with the ratio clamped.
  double w = W, h = H;
  if (W / H < 3.0 / 4.0) h = std::round(W * 4.0 / 3.0);
  else if (W / H > 4.0 / 3.0) w = std::round(H * 4.0 / 3.0);
  resample_box(img, (W - w) / 2.0, (H - h) / 2.0, w, h, s, s, out);
}

ChannelStats folder_channel_stats(const Dataset& d) {
  MINIDL_CHECK(d.files && d.size() > 0, "folder_channel_stats: not a non-empty folder dataset");
  const ImageFiles& f = *d.files;
  const int64_t m = d.size(), k = std::min<int64_t>(m, 2000);
  const int64_t plane = static_cast<int64_t>(f.opt.image_size) * f.opt.image_size;
  std::vector<std::array<double, 6>> part(static_cast<size_t>(k));  // per sample: sums, squares
  std::vector<uint8_t> ok(static_cast<size_t>(k), 0);
  const int threads = f.opt.workers > 0 ? f.opt.workers
                                        : std::max(1u, std::thread::hardware_concurrency());
  ThreadPool pool(threads);
  pool.parallel_for(k, [&](int64_t j) {
    std::vector<uint8_t> px(static_cast<size_t>(3 * plane));
    const int64_t i = j * m / k;  // evenly spaced over the (already shuffled) samples
    try {
      decode_eval(f, i, px.data());
    } catch (const Error&) {
      if (f.opt.bad_images == BadImages::Stop) throw;
      f.bad->add(f.paths[static_cast<size_t>(i)]);
      return;
    }
    std::array<double, 6>& p = part[static_cast<size_t>(j)];
    p.fill(0.0);
    for (int c = 0; c < 3; ++c)
      for (int64_t q = 0; q < plane; ++q) {
        const double v = px[static_cast<size_t>(c * plane + q)];
        p[c] += v;
        p[3 + c] += v * v;
      }
    ok[static_cast<size_t>(j)] = 1;
  });
  std::array<double, 6> tot{};
  int64_t n = 0;
  for (int64_t j = 0; j < k; ++j)
    if (ok[static_cast<size_t>(j)]) {
      ++n;
      for (int c = 0; c < 6; ++c) tot[c] += part[static_cast<size_t>(j)][c];
    }
  MINIDL_CHECK(n > 0, "folder dataset ", f.root, ": none of the ", k,
               " images sampled for the normalisation constants could be decoded");
  ChannelStats st;
  const double count = static_cast<double>(n * plane);
  for (int c = 0; c < 3; ++c) {
    const double mean = tot[c] / count, var = tot[3 + c] / count - mean * mean;
    st.mean[c] = static_cast<float>(mean / 255.0);
    st.std[c] = static_cast<float>(std::sqrt(std::max(var, 0.0)) / 255.0);
  }
  return st;
}

}  // namespace minidl

// CIFAR-10/100 binary readers (layouts in cifar.h) and the per-channel statistics.
//
// Each file is read whole into a buffer with one read, validated, and its pixel bytes are copied
// record by record into the (M, 3, 32, 32) uint8 tensor: the pixels of a record are already in
// C, H, W order, so a record is one memcpy. Every check runs before anything is copied, so a bad
// file never yields a half-loaded dataset.
#include "data/cifar.h"

#include "data/folder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

namespace minidl {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kPixels = 3 * 32 * 32;  // bytes of image per record

// What differs between the two datasets: where to get them and how a record starts.
struct Format {
  const char* who;          // "CIFAR-10" / "CIFAR-100", the prefix of every message
  const char* archive;      // the download
  const char* folder;       // the folder inside it that --data must name
  int label_bytes;          // 1 (label) or 2 (coarse, fine)
  int classes[2];           // label range of each label byte
};

constexpr Format kCifar10{"CIFAR-10", "cifar-10-binary.tar.gz", "cifar-10-batches-bin", 1, {10, 0}};
constexpr Format kCifar100{"CIFAR-100", "cifar-100-binary.tar.gz", "cifar-100-binary", 2, {20, 100}};

std::string download_hint(const Format& f) {
  return str("download ", f.archive, " from https://www.cs.toronto.edu/~kriz/cifar.html and pass its ",
             f.folder, " folder with --data");
}

void check_folder(const Format& f, const std::string& dir) {
  MINIDL_CHECK(fs::exists(dir), f.who, ": data folder '", dir, "' does not exist; ", download_hint(f));
  MINIDL_CHECK(fs::is_directory(dir), f.who, ": '", dir, "' is not a folder; ", download_hint(f));
}

// Validates existence and size of one data file; returns its path.
std::string check_file(const Format& f, const std::string& dir, const std::string& name,
                       int64_t expected_records) {
  const std::string path = (fs::path(dir) / name).string();
  MINIDL_CHECK(fs::is_regular_file(path), f.who, ": '", path, "' not found; ", download_hint(f));
  const int64_t record = f.label_bytes + kPixels;
  const int64_t bytes = static_cast<int64_t>(fs::file_size(path));
  MINIDL_CHECK(bytes % record == 0 && bytes / record == expected_records, f.who, ": '", path,
               "' has ", bytes, " bytes, expected ", expected_records * record, " (", expected_records,
               " records of ", record, " bytes); truncated? ", download_hint(f));
  return path;
}

// Reads the first `records` records of `path` into images[at, at + records) and labels[at, ...),
// taking label byte `label_byte` of each record. Every label byte is range-checked.
void read_records(const Format& f, const std::string& path, int64_t records, int label_byte,
                  uint8_t* images, int32_t* labels) {
  const int64_t record = f.label_bytes + kPixels;
  std::vector<uint8_t> buf(static_cast<size_t>(records * record));
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
  MINIDL_CHECK(in.gcount() == static_cast<std::streamsize>(buf.size()), f.who, ": could not read ",
               buf.size(), " bytes from '", path, "' (read ", in.gcount(), ")");
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* rec = buf.data() + r * record;
    for (int k = 0; k < f.label_bytes; ++k)
      MINIDL_CHECK(rec[k] < f.classes[k], f.who, ": '", path, "' record ", r, " has ",
                   f.label_bytes == 1 ? "label " : (k == 0 ? "coarse label " : "fine label "),
                   int(rec[k]), ", expected 0..", f.classes[k] - 1, " (corrupt file?)");
  }
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* rec = buf.data() + r * record;
    labels[r] = rec[label_byte];
    std::memcpy(images + r * kPixels, rec + f.label_bytes, kPixels);
  }
}

// Class names, one per non-empty line; `fallback` when the file is absent.
std::vector<std::string> read_names(const Format& f, const std::string& path, size_t expected,
                                    const std::vector<std::string>& fallback) {
  if (!fs::exists(path)) return fallback;
  std::ifstream in(path);
  MINIDL_CHECK(in.good(), f.who, ": cannot open '", path, "'");
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    const size_t end = line.find_last_not_of(" \t\r");
    if (end == std::string::npos) continue;
    const size_t begin = line.find_first_not_of(" \t");
    names.push_back(line.substr(begin, end + 1 - begin));
  }
  MINIDL_CHECK(names.size() == expected, f.who, ": '", path, "' lists ", names.size(),
               " class names, expected ", expected);
  return names;
}

const std::vector<std::string>& cifar10_names() {
  static const std::vector<std::string> n{"airplane", "automobile", "bird",  "cat",  "deer",
                                          "dog",      "frog",       "horse", "ship", "truck"};
  return n;
}

const std::vector<std::string>& cifar100_coarse_names() {
  static const std::vector<std::string> n{
      "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
      "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
      "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
      "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
      "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2"};
  return n;
}

const std::vector<std::string>& cifar100_fine_names() {
  static const std::vector<std::string> n{
      "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
      "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
      "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
      "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
      "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
      "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
      "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
      "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
      "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
      "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
      "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
      "willow_tree", "wolf", "woman", "worm"};
  return n;
}

// Loads the files (name, records) in order, keeping the first `subset` records overall (all when
// 0). All files are validated before any is read, also those a subset does not reach.
Dataset load_files(const Format& f, const std::string& dir,
                   const std::vector<std::pair<std::string, int64_t>>& files, int label_byte,
                   int64_t subset) {
  check_folder(f, dir);
  std::vector<std::string> paths;
  int64_t total = 0;
  for (const auto& [name, records] : files) {
    paths.push_back(check_file(f, dir, name, records));
    total += records;
  }
  MINIDL_CHECK(subset >= 0 && subset <= total, f.who, ": subset ", subset,
               " is out of range (the split has ", total, " records; 0 keeps all)");
  const int64_t m = subset > 0 ? subset : total;

  Dataset d;
  d.images = Tensor::empty(Shape{m, 3, 32, 32}, DType::U8);
  d.labels.resize(static_cast<size_t>(m));
  int64_t at = 0;
  for (size_t i = 0; i < files.size() && at < m; ++i) {
    const int64_t take = std::min(files[i].second, m - at);
    read_records(f, paths[i], take, label_byte, d.images.data<uint8_t>() + at * kPixels,
                 d.labels.data() + at);
    at += take;
  }
  return d;
}

}  // namespace

Dataset load_cifar10(const std::string& dir, Split split, int64_t subset) {
  std::vector<std::pair<std::string, int64_t>> files;
  if (split == Split::Train)
    for (int i = 1; i <= 5; ++i) files.emplace_back(str("data_batch_", i, ".bin"), 10000);
  else
    files.emplace_back("test_batch.bin", 10000);
  Dataset d = load_files(kCifar10, dir, files, 0, subset);
  d.name = "cifar10";
  d.num_classes = 10;
  d.class_names = read_names(kCifar10, (fs::path(dir) / "batches.meta.txt").string(), 10,
                             cifar10_names());
  return d;
}

Dataset load_cifar100(const std::string& dir, Split split, bool coarse, int64_t subset) {
  const std::pair<std::string, int64_t> file =
      split == Split::Train ? std::pair<std::string, int64_t>{"train.bin", 50000}
                            : std::pair<std::string, int64_t>{"test.bin", 10000};
  Dataset d = load_files(kCifar100, dir, {file}, coarse ? 0 : 1, subset);
  d.name = "cifar100";
  d.num_classes = coarse ? 20 : 100;
  d.class_names =
      coarse ? read_names(kCifar100, (fs::path(dir) / "coarse_label_names.txt").string(), 20,
                          cifar100_coarse_names())
             : read_names(kCifar100, (fs::path(dir) / "fine_label_names.txt").string(), 100,
                          cifar100_fine_names());
  return d;
}

namespace {
Dataset load_cifar10_entry(const std::string& dir, Split split, int64_t subset,
                           const DataOptions&) {
  return load_cifar10(dir, split, subset);
}
Dataset load_cifar100_fine(const std::string& dir, Split split, int64_t subset,
                           const DataOptions&) {
  return load_cifar100(dir, split, /*coarse=*/false, subset);
}
}  // namespace

const Registry<DatasetKind>& datasets() {
  static const Registry<DatasetKind> r(
      "dataset", {{"cifar10", "CIFAR-10: 50,000 training and 10,000 test images, 10 classes",
                   {10, "cifar-10-batches-bin", load_cifar10_entry}},
                  {"cifar100", "CIFAR-100: the same sizes, 100 fine classes",
                   {100, "cifar-100-binary", load_cifar100_fine}},
                  {"folder",
                   "a folder of JPEG/PNG images, one subfolder per class, with train/ and val/ "
                   "(or test/) splits (docs/TRAINING.md)",
                   {0, "", load_image_folder}}});
  return r;
}

Dataset load_dataset(const std::string& name, const std::string& dir, Split split, int64_t subset,
                     const DataOptions& opt) {
  const Registry<DatasetKind>::Entry* e = datasets().find(name);
  MINIDL_CHECK(e != nullptr, "load_dataset: dataset ", datasets().unknown_message(name));
  return e->value.load(dir, split, subset, opt);
}

Dataset split_off_tail(Dataset& d, int64_t n) {
  MINIDL_CHECK(n > 0 && n < d.size(), "split_off_tail: cannot hold out ", n, " of ", d.size(),
               " samples");
  const int64_t m = d.size() - n;
  Dataset tail;
  tail.name = d.name;
  tail.class_names = d.class_names;
  tail.num_classes = d.num_classes;
  if (d.files) {
    auto head = std::make_shared<ImageFiles>(*d.files), rest = std::make_shared<ImageFiles>(*d.files);
    head->paths.resize(static_cast<size_t>(m));
    rest->paths.erase(rest->paths.begin(), rest->paths.begin() + m);
    d.files = head;
    tail.files = rest;
  } else {
    tail.images = d.images.slice(m, d.size()).clone();
    d.images = d.images.slice(0, m).clone();
  }
  tail.labels.assign(d.labels.begin() + m, d.labels.end());
  d.labels.resize(static_cast<size_t>(m));
  return tail;
}

ChannelStats channel_stats(const Dataset& d) {
  if (d.files) return folder_channel_stats(d);
  check_dtype(d.images, DType::U8, "channel_stats", "images");
  MINIDL_CHECK(d.images.dim() == 4 && d.images.size(1) == 3 && d.images.size(0) > 0,
               "channel_stats: expected uint8 images (M, 3, H, W) with M > 0, got ",
               d.images.describe());
  const int64_t m = d.images.size(0), hw = d.images.size(2) * d.images.size(3);
  const uint8_t* px = d.images.data<uint8_t>();
  // Integer sums of v and v^2 are exact (at most 2^8 * 2^8 * 50,000 * 1,024 < 2^42), so the only
  // rounding is in the final divisions.
  uint64_t s0 = 0, s1 = 0, s2 = 0, q0 = 0, q1 = 0, q2 = 0;
#pragma omp parallel for reduction(+ : s0, s1, s2, q0, q1, q2)
  for (int64_t i = 0; i < m; ++i) {
    const uint8_t* img = px + i * 3 * hw;
    uint64_t s[3] = {0, 0, 0}, q[3] = {0, 0, 0};
    for (int c = 0; c < 3; ++c)
      for (int64_t j = 0; j < hw; ++j) {
        const uint64_t v = img[c * hw + j];
        s[c] += v;
        q[c] += v * v;
      }
    s0 += s[0], s1 += s[1], s2 += s[2];
    q0 += q[0], q1 += q[1], q2 += q[2];
  }
  const uint64_t sum[3] = {s0, s1, s2}, sq[3] = {q0, q1, q2};
  const double n = static_cast<double>(m * hw);
  ChannelStats st;
  for (int c = 0; c < 3; ++c) {
    const double mean = static_cast<double>(sum[c]) / n;        // in pixel units
    const double var = static_cast<double>(sq[c]) / n - mean * mean;  // population variance
    st.mean[c] = static_cast<float>(mean / 255.0);
    st.std[c] = static_cast<float>(std::sqrt(std::max(var, 0.0)) / 255.0);
  }
  return st;
}

}  // namespace minidl

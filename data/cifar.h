// CIFAR-10 and CIFAR-100 in their official binary layouts, held in memory as uint8.
//
// CIFAR-10  (cifar-10-batches-bin/):  data_batch_1..5.bin (train, 10,000 records each),
//           test_batch.bin (10,000), batches.meta.txt (class names). A record is 1 label byte then
//           3,072 pixel bytes (1,024 R, 1,024 G, 1,024 B; each 32x32 row-major).
// CIFAR-100 (cifar-100-binary/):      train.bin (50,000), test.bin (10,000), coarse_label_names.txt,
//           fine_label_names.txt. A record is coarse label byte, fine label byte, 3,072 pixels.
//
// Every file is validated (exists, size a whole number of records, expected record count, labels in
// range); a failure names the path, what was expected and where the dataset can be downloaded.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/registry.h"
#include "core/tensor.h"

namespace minidl {

enum class Split { Train, Test };

struct ImageFiles;  // data/folder.h

struct Dataset {
  std::string name;                      // "cifar10", "cifar100" or "folder"
  Tensor images;                         // uint8 (M, 3, 32, 32) on the CPU; undefined for a folder
  std::vector<int32_t> labels;           // M labels in [0, num_classes)
  std::vector<std::string> class_names;  // num_classes names
  int num_classes = 0;
  // A folder dataset (data/folder.h) keeps its images on disk: the loader decodes each batch.
  std::shared_ptr<const ImageFiles> files;
  std::vector<std::string> warnings;  // what loading found and did not use (the run logs them)
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

// What to do with an image file that cannot be decoded: stop with an error naming it, or skip it
// (its place in the batch is taken by another image of the batch) and count it.
enum class BadImages { Stop, Skip };
// Options of the datasets that decode files (the folder dataset); the CIFAR readers ignore them.
struct DataOptions {
  int image_size = 32;  // side of the square images the model sees
  BadImages bad_images = BadImages::Stop;
  int workers = 0;  // decoding threads (0: one per hardware thread)
};

// `subset` > 0 keeps the first `subset` records (the files are already shuffled).
Dataset load_cifar10(const std::string& dir, Split split, int64_t subset = 0);
// `coarse` selects the 20 superclasses instead of the 100 fine classes.
Dataset load_cifar100(const std::string& dir, Split split, bool coarse = false, int64_t subset = 0);
// What a dataset's registry entry holds besides its name and help line.
struct DatasetKind {
  int num_classes;          // 0: read from the data (folder)
  std::string default_dir;  // its directory under ../shared/data ("cifar-10-batches-bin"; "": none)
  Dataset (*load)(const std::string& dir, Split split, int64_t subset, const DataOptions& opt);
};
// cifar10, cifar100, folder: for `train --dataset`, its --help and load_dataset.
const Registry<DatasetKind>& datasets();
// By name: "cifar10", "cifar100" or "folder".
Dataset load_dataset(const std::string& name, const std::string& dir, Split split, int64_t subset = 0,
                     const DataOptions& opt = {});
// Moves the last n samples of `d` into a new dataset (the --val-split hold-out); 0 < n < size.
Dataset split_off_tail(Dataset& d, int64_t n);

// Per-channel mean and standard deviation of the pixel values scaled to [0, 1] (population std,
// as the usual CIFAR normalisation constants are computed), over the whole dataset; for a folder
// dataset over a sample of its images (folder_channel_stats in data/folder.h).
struct ChannelStats {
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
};
ChannelStats channel_stats(const Dataset& d);

}  // namespace minidl

// The folder dataset (`train --dataset folder --data DIR`), with torchvision ImageFolder's layout:
//
//   DIR/train/<class>/*.jpg|*.jpeg|*.png     training images, one subfolder per class
//   DIR/val/<class>/...   (or DIR/test/)     evaluation images, the same class subfolders
//
// Classes are the subfolder names in sorted order (label i = the i-th name), images are found
// recursively inside a class folder. Without train/ and val/ (test/), DIR itself holds the class
// folders and every 10th image (of the fixed shuffled order below) is the evaluation split.
// The samples of a split are put in a fixed pseudo-random order (Philox keyed by a constant, not
// the run's seed), so that --subset, --test-subset and --val-split take a mix of classes.
//
// Images stay on disk: the DataLoader decodes each batch on a thread pool (data/loader.h), with
//   evaluation: shorter side resized to eval_resize(S), centre S x S crop (Resize + CenterCrop);
//   training, S <= 32: the same, then the CIFAR pad-4 random crop and flip (kernels/augment.h);
//   training, S > 32: random-resized-crop (scale [0.08, 1], aspect ratio [3/4, 4/3], 10 tries
//                     then a centre crop, as torchvision's RandomResizedCrop) to S x S, then flip.
// Problems are reported, never silently skipped: an empty class folder is an error; files that
// are not JPEG/PNG (by name) are listed in Dataset::warnings; an image that cannot be decoded
// stops the run naming its path, or with BadImages::Skip is counted and warned about once.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/rng.h"
#include "data/cifar.h"
#include "data/image.h"

namespace minidl {

// The images that could not be decoded (BadImages::Skip), shared by a run's loaders.
class BadImageLog {
 public:
  // Records `path`; true the first time it is seen (the caller warns once per file).
  bool add(const std::string& path);
  int64_t count() const;

 private:
  mutable std::mutex m_;
  std::set<std::string> paths_;
};

struct ImageFiles {
  std::string root;                 // the split's directory
  std::vector<std::string> paths;   // per sample, in the order of Dataset::labels
  DataOptions opt;
  std::shared_ptr<BadImageLog> bad = std::make_shared<BadImageLog>();
};

// The split's samples; `subset` > 0 keeps the first `subset` of the fixed order. Throws naming the
// directory when it is missing, has no class folders, a class folder without images, or a val/
// test split whose classes differ from train/'s.
Dataset load_image_folder(const std::string& dir, Split split, int64_t subset,
                          const DataOptions& opt);

// The resize before the centre crop for evaluation: S for S <= 32 (CIFAR-sized images are used
// whole), else round(S * 256 / 224) (ImageNet's 256 -> 224 ratio).
int eval_resize(int image_size);

// Writes sample i's evaluation view (uint8 CHW, 3 x S x S) to `out`; throws naming the file.
void decode_eval(const ImageFiles& f, int64_t i, uint8_t* out);
// The random-resized-crop training view of sample i with draws from `g`.
void decode_random_resized_crop(const ImageFiles& f, int64_t i, Generator& g, uint8_t* out);

// channel_stats of a folder dataset: over the evaluation views of up to 2,000 evenly spaced
// samples (decoding every image of a large folder would take minutes).
ChannelStats folder_channel_stats(const Dataset& d);

}  // namespace minidl

// Image decoding and resampling (data/image.h), the folder dataset (data/folder.h) and the
// DataLoader on it: formats (greyscale, CMYK, PNG, mixed sizes), the error cases, the transforms,
// and determinism of the decoded batches whatever the number of decoding threads.
#include "data/folder.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>

#include "../engine/engine_test_util.h"
#include "../support/test_util.h"
#include "data/image.h"
#include "data/loader.h"

using namespace minidl;
namespace fs = std::filesystem;
using test::scratch_dir;

namespace {

// A w x h RGB image whose pixels depend on (x, y, c) and `seed`.
std::vector<uint8_t> pattern(int w, int h, int seed) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        px[(static_cast<size_t>(y) * w + x) * 3 + c] =
            static_cast<uint8_t>((x * 7 + y * 13 + c * 50 + seed * 31) % 256);
  return px;
}

// The path as a string, its parent folders created.
std::string mk(const fs::path& p) {
  fs::create_directories(p.parent_path());
  return p.string();
}

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

LoaderConfig identity_config(int64_t batch) {
  LoaderConfig c;
  c.batch_size = batch;
  c.shuffle = false;
  c.norm.mean = {0.f, 0.f, 0.f};
  c.norm.std = {1.f, 1.f, 1.f};
  return c;
}

}  // namespace

TEST_CASE("image: PNG round trip is exact, greyscale is replicated to RGB", "[image][data]") {
  const fs::path dir = scratch_dir("image_png");
  const std::vector<uint8_t> rgb = pattern(13, 7, 1);
  write_png(mk(dir / "a.png"), rgb.data(), 13, 7, 3);
  const Image a = decode_image((dir / "a.png").string());
  REQUIRE(a.width == 13);
  REQUIRE(a.height == 7);
  CHECK(a.rgb == rgb);

  std::vector<uint8_t> grey(13 * 7);
  std::iota(grey.begin(), grey.end(), uint8_t{100});
  write_png(mk(dir / "g.png"), grey.data(), 13, 7, 1);
  write_jpeg(mk(dir / "g.jpg"), grey.data(), 13, 7, 1, 100);
  for (const char* f : {"g.png", "g.jpg"}) {
    const Image g = decode_image((dir / f).string());
    REQUIRE(g.rgb.size() == 13 * 7 * 3);
    int worst = 0;
    for (size_t i = 0; i < grey.size(); ++i)
      for (int c = 0; c < 3; ++c) worst = std::max(worst, std::abs(g.rgb[3 * i + c] - grey[i]));
    INFO(f);
    // PNG is lossless. A greyscale JPEG at quality 100 has quantisation steps of 1 on a DCT scaled
    // by 8: each coefficient's rounding moves a pixel by at most 1/16 of a level, 64 of them by at
    // most 4 levels in the worst case; measured 1.
    CHECK(worst <= (std::string(f) == "g.png" ? 0 : 4));
  }
}

TEST_CASE("image: CMYK JPEG decodes with Adobe's inverted convention", "[image][data]") {
  const fs::path dir = scratch_dir("image_cmyk");
  // A flat image (every block is its DC coefficient only): stored C, M, Y, K.
  const int w = 16, h = 16;
  std::vector<uint8_t> cmyk;
  for (int i = 0; i < w * h; ++i) cmyk.insert(cmyk.end(), {200, 100, 50, 128});
  write_jpeg(mk(dir / "c.jpg"), cmyk.data(), w, h, 4, 100);
  const Image img = decode_image((dir / "c.jpg").string());
  REQUIRE(img.width == w);
  // Expected R = C K / 255 etc. Error bound: the encoder converts CMY to YCC and the decoder back
  // (each rounds to integers: at most 1 level each way, 2 in all), the DC quantisation step at
  // quality 100 is 1 on a coefficient scaled by 8 (1/16 level), and the product with K rounds once
  // more (0.5): 3 levels.
  const int expect[3] = {200 * 128 / 255, 100 * 128 / 255, 50 * 128 / 255};
  for (int c = 0; c < 3; ++c) {
    INFO("channel " << c);
    CHECK(std::abs(img.rgb[c] - expect[c]) <= 3);
    CHECK(std::abs(img.rgb[3 * (w * h - 1) + c] - expect[c]) <= 3);
  }
}

TEST_CASE("image: unreadable, corrupt and non-image files name their path", "[image][data][errors]") {
  const fs::path dir = scratch_dir("image_bad");
  const std::vector<uint8_t> rgb = pattern(40, 30, 2);
  write_jpeg(mk(dir / "ok.jpg"), rgb.data(), 40, 30, 3);
  std::ifstream f(dir / "ok.jpg", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  write_text(dir / "truncated.jpg", bytes.substr(0, bytes.size() / 2));
  write_text(dir / "text.jpg", "hello, not an image");
  write_png(mk(dir / "ok.png"), rgb.data(), 40, 30, 3);
  std::ifstream fp(dir / "ok.png", std::ios::binary);
  std::string png((std::istreambuf_iterator<char>(fp)), std::istreambuf_iterator<char>());
  write_text(dir / "truncated.png", png.substr(0, png.size() / 2));

  CHECK_NOTHROW(decode_image((dir / "ok.jpg").string()));
  for (const char* name : {"truncated.jpg", "text.jpg", "truncated.png", "missing.png"}) {
    const std::string path = (dir / name).string();
    INFO(name);
    CHECK_THROWS_WITH(decode_image(path), Catch::Contains(path));
  }
  CHECK_THROWS_WITH(decode_image((dir / "text.jpg").string()),
                    Catch::Contains("not a JPEG or PNG"));
  CHECK_THROWS_WITH(decode_image((dir / "truncated.jpg").string()), Catch::Contains("corrupt"));
}

TEST_CASE("image: resampling copies an identity box and averages a 2x downscale", "[image][data]") {
  Image img;
  img.width = 64;
  img.height = 6;
  img.rgb.resize(64 * 6 * 3);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) img.rgb[(y * 64 + x) * 3 + c] = static_cast<uint8_t>(2 * x + c);
  std::vector<uint8_t> same(64 * 6 * 3);
  resample_box(img, 0, 0, 64, 6, 64, 6, same.data());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 64; ++x) REQUIRE(same[(c * 6 + y) * 64 + x] == 2 * x + c);
  // 64 -> 32 columns: output o is centred at source 2o + 1 with triangle weights 1/8, 3/8, 3/8,
  // 1/8 on pixels 2o-1 .. 2o+2; on the ramp v = 2x + c that is 2(2o + 0.5) + c = 4o + 1 + c
  // exactly (the two clamped edge columns excepted).
  std::vector<uint8_t> half(32 * 6 * 3);
  resample_box(img, 0, 0, 64, 6, 32, 6, half.data());
  for (int c = 0; c < 3; ++c)
    for (int o = 1; o < 31; ++o) {
      INFO("column " << o << " channel " << c);
      REQUIRE(half[(c * 6 + 2) * 32 + o] == 4 * o + 1 + c);
    }
}

TEST_CASE("folder: classes, splits, non-image files, mixed sizes, grey and CMYK", "[folder][data]") {
  const fs::path root = scratch_dir("folder_layout");
  // Class "a": RGB JPEGs of mixed sizes and a greyscale PNG; class "b": a CMYK JPEG and PNGs.
  int seed = 0;
  for (const char* split : {"train", "val"}) {
    for (int k = 0; k < 3; ++k) {
      const int w = 20 + 9 * k, h = 48 - 5 * k;
      const std::vector<uint8_t> px = pattern(w, h, ++seed);
      write_jpeg(mk(root / split / "a" / fmt::format("{}.jpg", k)), px.data(), w, h, 3);
      write_png(mk(root / split / "b" / fmt::format("{}.png", k)), px.data(), w, h, 3);
    }
    std::vector<uint8_t> grey(30 * 40, 77), cmyk(33 * 35 * 4, 128);
    write_png(mk(root / split / "a" / "grey.PNG"), grey.data(), 30, 40, 1);
    write_jpeg(mk(root / split / "b" / "cmyk.jpeg"), cmyk.data(), 33, 35, 4);
  }
  write_text(root / "train" / "a" / "notes.txt", "not an image");
  DataOptions opt;
  opt.workers = 3;
  const Dataset train = load_image_folder(root.string(), Split::Train, 0, opt);
  CHECK(train.class_names == std::vector<std::string>{"a", "b"});
  CHECK(train.size() == 8);
  CHECK(std::count(train.labels.begin(), train.labels.end(), 0) == 4);
  REQUIRE(train.warnings.size() == 1);
  CHECK_THAT(train.warnings[0], Catch::Contains("notes.txt"));
  const Dataset val = load_image_folder(root.string(), Split::Test, 0, opt);
  CHECK(val.size() == 8);
  CHECK(val.warnings.empty());

  // Every image decodes to 32x32 (mixed sizes, grey, CMYK); the loader's batch is exactly the
  // evaluation view scaled to [0, 1] under the identity normalisation.
  DataLoader loader(val, identity_config(8));
  loader.start_epoch(0);
  Batch b;
  REQUIRE(loader.next(b));
  REQUIRE(b.size == 8);
  const std::vector<float> got = b.images.to_vector<float>();
  const std::vector<int32_t> labels = b.labels.to_vector<int32_t>();
  std::vector<uint8_t> px(3 * 32 * 32);
  for (int64_t i = 0; i < 8; ++i) {
    decode_eval(*val.files, i, px.data());
    CHECK(labels[i] == val.labels[i]);
    for (size_t j = 0; j < px.size(); ++j)
      REQUIRE(got[i * px.size() + j] == static_cast<float>(px[j]) / 255.f);
  }
  CHECK_FALSE(loader.next(b));

  // --subset takes the first of the fixed shuffled order: both classes appear in 4 of 8.
  const Dataset sub = load_image_folder(root.string(), Split::Train, 4, opt);
  CHECK(sub.size() == 4);
}

TEST_CASE("folder: layout errors name the folder", "[folder][data][errors]") {
  const fs::path root = scratch_dir("folder_errors");
  const std::vector<uint8_t> px = pattern(8, 8, 0);
  DataOptions opt;
  CHECK_THROWS_WITH(load_image_folder((root / "nope").string(), Split::Train, 0, opt),
                    Catch::Contains("no such directory"));
  write_png(mk(root / "train" / "cat" / "1.png"), px.data(), 8, 8, 3);
  fs::create_directories(root / "train" / "dog");
  write_png(mk(root / "val" / "cat" / "1.png"), px.data(), 8, 8, 3);
  // An empty class folder is an error naming it.
  CHECK_THROWS_WITH(load_image_folder(root.string(), Split::Train, 0, opt),
                    Catch::Contains((root / "train" / "dog").string()) &&
                        Catch::Contains("no images"));
  write_png(mk(root / "train" / "dog" / "1.png"), px.data(), 8, 8, 3);
  CHECK(load_image_folder(root.string(), Split::Train, 0, opt).num_classes == 2);
  // val/ without dog: the classes differ.
  CHECK_THROWS_WITH(load_image_folder(root.string(), Split::Test, 0, opt),
                    Catch::Contains("differ"));
  // Only train/: both splits are needed.
  fs::remove_all(root / "val");
  CHECK_THROWS_WITH(load_image_folder(root.string(), Split::Train, 0, opt),
                    Catch::Contains("no val/ or test/"));
  // No split folders: every 10th image is the test split.
  const fs::path flat = scratch_dir("folder_flat");
  for (int i = 0; i < 20; ++i)
    write_png(mk(flat / (i % 2 ? "x" : "y") / fmt::format("{}.png", i)), px.data(), 8, 8, 3);
  CHECK(load_image_folder(flat.string(), Split::Train, 0, opt).size() == 18);
  CHECK(load_image_folder(flat.string(), Split::Test, 0, opt).size() == 2);
}

TEST_CASE("folder: a corrupt image stops naming it, or is skipped and counted",
          "[folder][data][errors]") {
  const fs::path root = scratch_dir("folder_corrupt");
  for (const char* split : {"train", "test"})
    for (int i = 0; i < 5; ++i) {
      const std::vector<uint8_t> px = pattern(32, 32, i);
      write_png(mk(root / split / "c" / fmt::format("{}.png", i)), px.data(), 32, 32, 3);
    }
  const fs::path bad = root / "train" / "c" / "2.png";
  write_text(bad, "\x89PNG\r\n\x1a\n garbage");
  DataOptions opt;
  opt.workers = 2;
  {
    const Dataset d = load_image_folder(root.string(), Split::Train, 0, opt);
    DataLoader loader(d, identity_config(5));
    loader.start_epoch(0);
    Batch b;
    CHECK_THROWS_WITH(loader.next(b),
                      Catch::Contains(bad.string()) && Catch::Contains("--bad-images skip"));
  }
  opt.bad_images = BadImages::Skip;
  const Dataset d = load_image_folder(root.string(), Split::Train, 0, opt);
  DataLoader loader(d, identity_config(5));
  for (int epoch = 0; epoch < 2; ++epoch) {
    loader.start_epoch(epoch);
    Batch b;
    REQUIRE(loader.next(b));
    CHECK(b.size == 5);
    // The bad image's place holds another image of the batch: no pixel is left unwritten.
    const std::vector<float> v = b.images.to_vector<float>();
    CHECK(std::all_of(v.begin(), v.end(), [](float x) { return x >= 0.f && x <= 1.f; }));
  }
  CHECK(d.files->bad->count() == 1);  // counted once, however many epochs meet it
}

TEST_CASE("folder: random-resized-crop batches depend on seed and epoch, not on threads",
          "[folder][data]") {
  const fs::path root = scratch_dir("folder_rrc");
  for (const char* split : {"train", "val"})
    for (int i = 0; i < 6; ++i) {
      const std::vector<uint8_t> px = pattern(90 + 7 * i, 70, i);
      write_jpeg(mk(root / split / (i % 2 ? "p" : "q") / fmt::format("{}.jpg", i)),
                 px.data(), 90 + 7 * i, 70, 3);
    }
  // `workers` decoding threads and `producers` loader workers (LoaderConfig::workers).
  auto batches = [&](int workers, int64_t epoch, int producers = 1) {
    DataOptions opt;
    opt.image_size = 48;
    opt.workers = workers;
    const Dataset d = load_image_folder(root.string(), Split::Train, 0, opt);
    LoaderConfig c = identity_config(4);
    c.augment = true;
    c.shuffle = true;
    c.seed = 11;
    c.workers = producers;
    DataLoader loader(d, c);
    loader.start_epoch(epoch);
    std::vector<float> all;
    Batch b;
    while (loader.next(b)) {
      CHECK(b.images.size(2) == 48);
      const std::vector<float> v = b.images.to_vector<float>();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const std::vector<float> a = batches(1, 3);
  CHECK(a.size() == 6 * 3 * 48 * 48);
  CHECK(batches(4, 3) == a);
  CHECK(batches(2, 3, 3) == a);  // 3 loader workers, 2 batches of 4 and one of 2: partial last
  CHECK(batches(2, 4) != a);
}

// An error in a loader worker (data/loader.cpp) reaches the caller with its message at the batch
// that failed, as with one worker: with 3 workers batch 1 often fails first (worker 1's first
// batch), yet next() hands out batch 0 before it throws, and throws again on a later call; the
// destructor joins the workers left waiting mid-epoch.
TEST_CASE("folder: a worker's error reaches next() at its batch, whatever the workers",
          "[folder][data][errors][workers]") {
  const fs::path root = scratch_dir("folder_worker_error");
  for (const char* split : {"train", "test"})
    for (int i = 0; i < 14; ++i) {
      // 160 x 160: a good batch takes a few ms to decode, a corrupt file fails at once.
      const std::vector<uint8_t> px = pattern(160, 160, i);
      write_png(mk(root / split / (i % 2 ? "a" : "b") / fmt::format("{}.png", i)), px.data(), 160,
                160, 3);
    }
  DataOptions opt;
  opt.workers = 2;
  const Dataset d = load_image_folder(root.string(), Split::Train, 0, opt);
  REQUIRE(d.size() == 14);
  const std::string bad = d.files->paths[5];  // batch 1 of batches of 4 (no shuffle)
  write_text(bad, "\x89PNG\r\n\x1a\n garbage");
  for (const int workers : {1, 3}) {
    INFO("workers " << workers);
    LoaderConfig c = identity_config(4);
    c.workers = workers;
    DataLoader loader(d, c);
    // Epoch 0: the caller sleeps (batch 1 fails meanwhile); epochs 1-11: it waits for batch 0
    // while batch 1 may fail first.
    for (int epoch = 0; epoch < 12; ++epoch) {
      INFO("epoch " << epoch);
      loader.start_epoch(epoch);
      if (epoch == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      Batch b;
      REQUIRE(loader.next(b));
      CHECK(b.indices == std::vector<int32_t>{0, 1, 2, 3});
      CHECK_THROWS_WITH(loader.next(b), Catch::Contains(bad) && Catch::Contains("--bad-images"));
      CHECK_THROWS_WITH(loader.next(b), Catch::Contains(bad));
    }
  }
}

TEST_CASE("image: EXIF orientation is read, and not applied (as torchvision's ImageFolder)",
          "[image][data][exif]") {
  const fs::path dir = scratch_dir("image_exif");
  const std::vector<uint8_t> rgb = pattern(24, 16, 3);
  write_jpeg(mk(dir / "plain.jpg"), rgb.data(), 24, 16, 3);
  const std::string plain = test::read_text(dir / "plain.jpg");
  const auto bytes = [](const std::string& s) {
    return reinterpret_cast<const uint8_t*>(s.data());
  };
  CHECK(exif_orientation(bytes(plain), plain.size()) == 0);  // no Exif segment
  for (bool le : {false, true})
    for (int o : {1, 3, 6, 8}) {
      INFO((le ? "II" : "MM") << " orientation " << o);
      const std::string tagged = test::with_exif_orientation(plain, o, le);
      CHECK(exif_orientation(bytes(tagged), tagged.size()) == o);
      // Cut anywhere inside the segment: never read past the bytes, never a tag.
      for (size_t cut = 4; cut < 40; cut += 5)
        CHECK(exif_orientation(bytes(tagged), cut) == 0);
    }
  // An out-of-range value is no orientation; a PNG has none.
  const std::string odd = test::with_exif_orientation(plain, 9, false);
  CHECK(exif_orientation(bytes(odd), odd.size()) == 0);
  write_png(mk(dir / "a.png"), rgb.data(), 24, 16, 3);
  CHECK(read_exif_orientation((dir / "a.png").string()) == 0);

  // Decoding ignores the tag: the same pixels as the untagged file, the stored width and height.
  std::ofstream(dir / "rot6.jpg", std::ios::binary) << test::with_exif_orientation(plain, 6, true);
  CHECK(read_exif_orientation((dir / "rot6.jpg").string()) == 6);
  const Image a = decode_image((dir / "plain.jpg").string());
  const Image b = decode_image((dir / "rot6.jpg").string());
  CHECK(b.width == 24);
  CHECK(b.height == 16);
  CHECK(a.rgb == b.rgb);
}

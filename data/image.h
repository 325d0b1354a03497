// Image files: decoding (JPEG with libjpeg-turbo's TurboJPEG API, PNG with libpng), encoding (for
// tests and generated folders), and resampling a box of an image to an output size.
//
// Decoding always gives 8-bit RGB, whatever the file holds: greyscale JPEG/PNG is replicated to
// three channels, palette and 16-bit PNGs are expanded/reduced by libpng, an alpha channel is
// composited onto black (as libpng's simplified API does without a background colour), and a CMYK
// or YCCK JPEG is converted with the Adobe convention (stored values inverted, as Photoshop writes
// them and as Pillow reads them): R = C K / 255, G = M K / 255, B = Y K / 255.
// The format is recognised by the file's first bytes, not by its name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace minidl {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height x width x 3, row-major (HWC)
};

// Throws minidl::Error naming `path` and the decoder's message for a file that cannot be read, is
// not JPEG or PNG, or is corrupt (a truncated JPEG included).
Image decode_image(const std::string& path);
// The same from bytes in memory; `what` names them in errors.
Image decode_image_bytes(const uint8_t* data, size_t size, const std::string& what);

// "jpeg", "png" from the first bytes, or "" for anything else.
std::string sniff_image_format(const uint8_t* data, size_t size);
// The EXIF orientation tag (0x0112) of a JPEG's APP1 Exif segment: 1 (upright) to 8, or 0 when
// there is none (PNG, no Exif, no tag, a malformed segment). minidl does not apply it, as
// torchvision's ImageFolder does not (docs/TRAINING.md, "EXIF orientation"): pixels are used as
// stored, in training and in predict alike; predict says so for an image whose tag is not 1.
int exif_orientation(const uint8_t* data, size_t size);
// The same for a file (its first 128 KiB, where the Exif segment must start); 0 when unreadable.
int read_exif_orientation(const std::string& path);
// Whether the name ends in .jpg, .jpeg or .png (any case): what a folder dataset treats as images.
bool has_image_extension(const std::string& path);

// Encoders (files written atomically). `pixels` is HWC with `channels` 1 (grey), 3 (RGB) or, for
// JPEG only, 4 (CMYK as stored: the Adobe inverted convention above).
void write_jpeg(const std::string& path, const uint8_t* pixels, int width, int height, int channels,
                int quality = 90);
void write_png(const std::string& path, const uint8_t* pixels, int width, int height, int channels);

// Resamples the box [x0, x0 + bw) x [y0, y0 + bh) of `src` (in pixel units, pixel i covering
// [i, i + 1)) to out_w x out_h, written as uint8 CHW (3 x out_h x out_w) at `out`. Separable
// triangle (bilinear) filter whose support widens with the downscale factor (as Pillow's BILINEAR
// resize, so shrinking does not alias); samples outside the image clamp to its edge. An identity
// box (whole image, same size) copies the pixels exactly.
void resample_box(const Image& src, double x0, double y0, double bw, double bh, int out_w,
                  int out_h, uint8_t* out);

// Evaluation transform: the shorter side resized to `resize`, then the centre out x out crop
// (torchvision's Resize(resize) + CenterCrop(out)); written CHW like resample_box.
void resize_center_crop(const Image& src, int resize, int out, uint8_t* dst);

}  // namespace minidl

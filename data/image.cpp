// Image decoding, encoding and resampling (image.h).
#include "data/image.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>

#include "core/error.h"
#include "io/atomic_file.h"

namespace minidl {

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(str("image ", path, ": cannot open (", std::strerror(errno), ")"));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw Error(str("image ", path, ": read error (", std::strerror(errno), ")"));
  return bytes;
}

struct TjHandle {
  tjhandle h;
  explicit TjHandle(tjhandle x) : h(x) {
    MINIDL_CHECK(h != nullptr, "TurboJPEG: cannot create a handle: ", tjGetErrorStr2(nullptr));
  }
  ~TjHandle() { tjDestroy(h); }
  TjHandle(const TjHandle&) = delete;
  TjHandle& operator=(const TjHandle&) = delete;
};

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& what) {
  TjHandle tj(tjInitDecompress());
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.h, data, static_cast<unsigned long>(size), &w, &h, &subsamp,
                          &colorspace) != 0)
    throw Error(str("image ", what, ": corrupt JPEG header (", tjGetErrorStr2(tj.h), ")"));
  if (w <= 0 || h <= 0 || static_cast<int64_t>(w) * h > (int64_t{1} << 28))
    throw Error(str("image ", what, ": JPEG of ", w, "x", h, " pixels (expected 1 to 2^28)"));
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  const int pf = cmyk ? TJPF_CMYK : TJPF_RGB;
  const int ch = cmyk ? 4 : 3;
  std::vector<uint8_t> buf(static_cast<size_t>(w) * h * ch);
  // Default flags: the accurate integer IDCT and fancy (smooth) chroma upsampling, as Pillow and
  // libjpeg's djpeg decode by default.
  if (tjDecompress2(tj.h, data, static_cast<unsigned long>(size), buf.data(), w, 0, h, pf, 0) !=
      0) {
    // A warning (extraneous bytes between markers, say) still gives the whole image; a truncated
    // file ("Premature end of JPEG file") does not, and is an error like any fatal one.
    const std::string msg = tjGetErrorStr2(tj.h);
    if (tjGetErrorCode(tj.h) != TJERR_WARNING || msg.find("Premature end") != std::string::npos)
      throw Error(str("image ", what, ": corrupt JPEG (", msg, ")"));
  }
  Image img;
  img.width = w;
  img.height = h;
  if (!cmyk) {
    img.rgb = std::move(buf);
    return img;
  }
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0, n = static_cast<size_t>(w) * h; i < n; ++i) {
    const unsigned k = buf[4 * i + 3];
    for (int c = 0; c < 3; ++c)  // Adobe's inverted CMYK: (255 - C')(255 - K')/255 = C K / 255
      img.rgb[3 * i + c] = static_cast<uint8_t>((buf[4 * i + c] * k + 127) / 255);
  }
  return img;
}

Image decode_png(const uint8_t* data, size_t size, const std::string& what) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_memory(&png, data, size) == 0)
    throw Error(str("image ", what, ": corrupt PNG (", png.message, ")"));
  if (static_cast<int64_t>(png.width) * png.height > (int64_t{1} << 28)) {
    png_image_free(&png);
    throw Error(str("image ", what, ": PNG of ", png.width, "x", png.height,
                    " pixels (expected at most 2^28)"));
  }
  png.format = PNG_FORMAT_RGB;  // grey, palette, 16-bit and alpha are converted by libpng
  Image img;
  img.width = static_cast<int>(png.width);
  img.height = static_cast<int>(png.height);
  img.rgb.resize(PNG_IMAGE_SIZE(png));
  if (png_image_finish_read(&png, nullptr, img.rgb.data(), 0, nullptr) == 0)
    throw Error(str("image ", what, ": corrupt PNG (", png.message, ")"));
  return img;
}

}  // namespace

std::string sniff_image_format(const uint8_t* d, size_t n) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return "jpeg";
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (n >= 8 && std::memcmp(d, kPng, 8) == 0) return "png";
  return "";
}

int exif_orientation(const uint8_t* d, size_t n) {
  if (sniff_image_format(d, n) != "jpeg") return 0;
  // The markers after SOI, each FF xx with a big-endian length that counts itself, up to the
  // first scan (SOS) or the end of the bytes.
  size_t pos = 2;
  while (pos + 4 <= n && d[pos] == 0xFF) {
    const uint8_t marker = d[pos + 1];
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0xFF) {
      pos += marker == 0xFF ? 1 : 2;  // standalone markers (and fill bytes) carry no length
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return 0;  // the scan (or the end) before any Exif
    const size_t len = (size_t{d[pos + 2]} << 8) | d[pos + 3];
    if (len < 2 || pos + 2 + len > n) return 0;
    const uint8_t* seg = d + pos + 4;
    const size_t m = len - 2;
    if (marker == 0xE1 && m >= 14 && std::memcmp(seg, "Exif\0\0", 6) == 0) {
      const uint8_t* t = seg + 6;  // the TIFF header: II (little-endian) or MM, 42, IFD0 offset
      const size_t tn = m - 6;
      const bool le = t[0] == 'I' && t[1] == 'I';
      if (!le && !(t[0] == 'M' && t[1] == 'M')) return 0;
      const auto u16 = [&](size_t o) -> uint32_t {
        return le ? t[o] | (t[o + 1] << 8) : (t[o] << 8) | t[o + 1];
      };
      const auto u32 = [&](size_t o) -> uint64_t {
        return le ? (uint64_t{u16(o + 2)} << 16) | u16(o) : (uint64_t{u16(o)} << 16) | u16(o + 2);
      };
      if (u16(2) != 42) return 0;
      const uint64_t ifd = u32(4);
      if (ifd + 2 > tn) return 0;
      const uint32_t entries = u16(ifd);
      for (uint32_t e = 0; e < entries; ++e) {
        const uint64_t o = ifd + 2 + 12 * uint64_t{e};  // tag, type, count, value (inline)
        if (o + 12 > tn) return 0;
        if (u16(o) == 0x0112 && u16(o + 2) == 3 && u32(o + 4) == 1) {
          const uint32_t v = u16(o + 8);
          return v >= 1 && v <= 8 ? static_cast<int>(v) : 0;
        }
      }
      return 0;
    }
    pos += 2 + len;
  }
  return 0;
}

int read_exif_orientation(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return 0;
  std::vector<uint8_t> head(128 * 1024);
  f.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  return exif_orientation(head.data(), static_cast<size_t>(f.gcount()));
}

bool has_image_extension(const std::string& path) {
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == "jpg" || ext == "jpeg" || ext == "png";
}

Image decode_image_bytes(const uint8_t* data, size_t size, const std::string& what) {
  const std::string fmt = sniff_image_format(data, size);
  if (fmt == "jpeg") return decode_jpeg(data, size, what);
  if (fmt == "png") return decode_png(data, size, what);
  throw Error(str("image ", what, ": not a JPEG or PNG file (",
                  size == 0 ? std::string("empty") : str(size, " bytes, unknown signature"),
                  "); minidl reads JPEG and PNG"));
}

Image decode_image(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  return decode_image_bytes(bytes.data(), bytes.size(), path);
}

void write_jpeg(const std::string& path, const uint8_t* pixels, int width, int height,
                int channels, int quality) {
  MINIDL_CHECK(channels == 1 || channels == 3 || channels == 4, "write_jpeg ", path,
               ": channels must be 1, 3 or 4, got ", channels);
  TjHandle tj(tjInitCompress());
  const int pf = channels == 1 ? TJPF_GRAY : channels == 3 ? TJPF_RGB : TJPF_CMYK;
  const int samp = channels == 1 ? TJSAMP_GRAY : TJSAMP_420;
  unsigned char* out = nullptr;
  unsigned long out_size = 0;
  if (tjCompress2(tj.h, pixels, width, 0, height, pf, &out, &out_size, samp, quality, 0) != 0) {
    const std::string msg = tjGetErrorStr2(tj.h);
    tjFree(out);
    throw Error(str("write_jpeg ", path, ": ", msg));
  }
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(out, tjFree);
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(out), out_size));
}

void write_png(const std::string& path, const uint8_t* pixels, int width, int height,
               int channels) {
  MINIDL_CHECK(channels == 1 || channels == 3, "write_png ", path, ": channels must be 1 or 3, got ",
               channels);
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(width);
  png.height = static_cast<png_uint_32>(height);
  png.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (png_image_write_to_memory(&png, nullptr, &size, 0, pixels, 0, nullptr) == 0)
    throw Error(str("write_png ", path, ": ", png.message));
  std::string bytes(size, '\0');
  if (png_image_write_to_memory(&png, bytes.data(), &size, 0, pixels, 0, nullptr) == 0)
    throw Error(str("write_png ", path, ": ", png.message));
  bytes.resize(size);
  write_file_atomic(path, bytes);
}

namespace {

// The weights of one output coordinate along one axis: source pixels [first, first + w.size()).
struct Taps {
  int first = 0;
  std::vector<float> w;
};

// Output pixel o covers [start + o s, start + (o + 1) s) of the source, s = len / n. Its value is
// a triangle-weighted mean of the source pixels whose centres lie within `support` = max(s, 1) of
// its centre (Pillow's bilinear filter scaled by the downscale factor); clamped to [0, size).
std::vector<Taps> make_taps(double start, double len, int n, int size) {
  const double s = len / n, support = std::max(s, 1.0);
  std::vector<Taps> taps(static_cast<size_t>(n));
  for (int o = 0; o < n; ++o) {
    const double centre = start + (o + 0.5) * s;
    const int lo = static_cast<int>(std::floor(centre - support - 0.5)) + 1;
    const int hi = static_cast<int>(std::ceil(centre + support - 0.5)) - 1;
    Taps& t = taps[static_cast<size_t>(o)];
    // Clamping to the edge: taps outside the image add their weight to the edge pixel.
    t.first = std::clamp(lo, 0, size - 1);
    const int last = std::clamp(hi, 0, size - 1);
    t.w.assign(static_cast<size_t>(last - t.first + 1), 0.f);
    double total = 0.0;
    for (int i = lo; i <= hi; ++i) {
      const double x = 1.0 - std::abs((i + 0.5 - centre) / support);
      if (x <= 0.0) continue;
      t.w[static_cast<size_t>(std::clamp(i, 0, size - 1) - t.first)] += static_cast<float>(x);
      total += x;
    }
    if (total <= 0.0) {  // a box narrower than a pixel between two centres: nearest pixel
      t.w.assign(1, 1.f);
      t.first = std::clamp(static_cast<int>(std::floor(centre)), 0, size - 1);
      continue;
    }
    for (float& v : t.w) v = static_cast<float>(v / total);
  }
  return taps;
}

}  // namespace

void resample_box(const Image& src, double x0, double y0, double bw, double bh, int out_w,
                  int out_h, uint8_t* out) {
  MINIDL_CHECK(src.width > 0 && src.height > 0 && out_w > 0 && out_h > 0 && bw > 0 && bh > 0,
               "resample_box: empty image or box (image ", src.width, "x", src.height, ", box ",
               bw, "x", bh, ", output ", out_w, "x", out_h, ")");
  const std::vector<Taps> tx = make_taps(x0, bw, out_w, src.width);
  const std::vector<Taps> ty = make_taps(y0, bh, out_h, src.height);
  // Rows of the source that any output row reads, filtered horizontally once each.
  const int row0 = ty.front().first;
  const int row1 = ty.back().first + static_cast<int>(ty.back().w.size());
  std::vector<float> rows(static_cast<size_t>(row1 - row0) * out_w * 3);
  for (int y = row0; y < row1; ++y) {
    const uint8_t* in = src.rgb.data() + static_cast<size_t>(y) * src.width * 3;
    float* r = rows.data() + static_cast<size_t>(y - row0) * out_w * 3;
    for (int o = 0; o < out_w; ++o) {
      const Taps& t = tx[static_cast<size_t>(o)];
      float acc[3] = {0.f, 0.f, 0.f};
      for (size_t k = 0; k < t.w.size(); ++k) {
        const uint8_t* p = in + (t.first + static_cast<int>(k)) * 3;
        for (int c = 0; c < 3; ++c) acc[c] += t.w[k] * p[c];
      }
      for (int c = 0; c < 3; ++c) r[o * 3 + c] = acc[c];
    }
  }
  const size_t plane = static_cast<size_t>(out_h) * out_w;
  for (int oy = 0; oy < out_h; ++oy) {
    const Taps& t = ty[static_cast<size_t>(oy)];
    for (int ox = 0; ox < out_w; ++ox) {
      float acc[3] = {0.f, 0.f, 0.f};
      for (size_t k = 0; k < t.w.size(); ++k) {
        const float* p =
            rows.data() + (static_cast<size_t>(t.first + static_cast<int>(k) - row0) * out_w + ox) * 3;
        for (int c = 0; c < 3; ++c) acc[c] += t.w[k] * p[c];
      }
      for (int c = 0; c < 3; ++c)
        out[c * plane + static_cast<size_t>(oy) * out_w + ox] =
            static_cast<uint8_t>(std::clamp(std::lround(acc[c]), 0L, 255L));
    }
  }
}

void resize_center_crop(const Image& src, int resize, int out, uint8_t* dst) {
  MINIDL_CHECK(resize >= out && out > 0, "resize_center_crop: resize ", resize,
               " must be >= the crop ", out, " > 0");
  // Scale so that the shorter side becomes `resize`; the crop is out x out of the scaled image,
  // i.e. out / scale source pixels, centred.
  const double scale = static_cast<double>(resize) / std::min(src.width, src.height);
  const double side = out / scale;
  resample_box(src, (src.width - side) / 2.0, (src.height - side) / 2.0, side, side, out, out, dst);
}

}  // namespace minidl

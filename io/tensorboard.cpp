// TensorBoard event files (tensorboard.h).
#include "io/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/onnx.h"

namespace minidl {

namespace {

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> t = [] {
    std::array<uint32_t, 256> a{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      a[i] = c;
    }
    return a;
  }();
  return t;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void put_le(std::string& s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t get_le(const std::string& s, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[pos + i])) << (8 * i);
  return v;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  const auto& t = crc_table();
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

EventWriter::EventWriter(const std::string& dir) {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = (std::filesystem::path(dir) /
           str("events.out.tfevents.", static_cast<int64_t>(now_seconds()), ".", host, ".",
               ::getpid()))
              .string();
  f_.open(path_, std::ios::binary | std::ios::app);
  MINIDL_CHECK(f_.good(), "--tensorboard: cannot write ", path_);
  ProtoWriter ev;
  ev.float64(1, now_seconds());
  ev.string(3, "brain.Event:2");
  record(ev.data());
  flush();
}

void EventWriter::scalar(const std::string& tag, int64_t step, double value) {
  ProtoWriter v;
  v.string(1, tag);
  v.float32(2, static_cast<float>(value));
  ProtoWriter summary;
  summary.message(1, v);
  ProtoWriter ev;
  ev.float64(1, now_seconds());
  ev.int64(2, step);
  ev.message(5, summary);
  record(ev.data());
}

void EventWriter::record(const std::string& data) {
  std::string header;
  put_le(header, data.size(), 8);
  std::string out = header;
  put_le(out, masked_crc32c(header.data(), 8), 4);
  out += data;
  put_le(out, masked_crc32c(data.data(), data.size()), 4);
  f_.write(out.data(), static_cast<std::streamsize>(out.size()));
}

void EventWriter::flush() {
  f_.flush();
  MINIDL_CHECK(f_.good(), "--tensorboard: writing ", path_, " failed (disk full?)");
}

std::vector<TbEvent> read_events(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MINIDL_CHECK(f.good(), "cannot read ", path);
  const std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<TbEvent> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t k = out.size();
    MINIDL_CHECK(pos + 12 <= s.size(), path, ": record ", k, " header truncated at byte ", pos);
    const uint64_t len = get_le(s, pos, 8);
    MINIDL_CHECK(get_le(s, pos + 8, 4) == masked_crc32c(s.data() + pos, 8), path, ": record ", k,
                 " length fails its CRC at byte ", pos);
    MINIDL_CHECK(len <= s.size() - pos - 12 && s.size() - pos - 12 - len >= 4, path, ": record ",
                 k, " of ", len, " bytes runs past the end");
    const std::string data = s.substr(pos + 12, len);
    MINIDL_CHECK(get_le(s, pos + 12 + len, 4) == masked_crc32c(data.data(), data.size()), path,
                 ": record ", k, " data fails its CRC at byte ", pos);
    pos += 12 + len + 4;
    TbEvent e;
    for (const ProtoField& fl : parse_proto(data, path + " Event")) {
      if (fl.field == 1) std::memcpy(&e.wall_time, &fl.value, 8);
      if (fl.field == 2) e.step = static_cast<int64_t>(fl.value);
      if (fl.field == 3) e.file_version = fl.bytes;
      if (fl.field != 5) continue;
      for (const ProtoField& v : parse_proto(fl.bytes, path + " Summary")) {
        if (v.field != 1) continue;
        std::string tag;
        float value = 0.f;
        for (const ProtoField& x : parse_proto(v.bytes, path + " Summary.Value")) {
          if (x.field == 1) tag = x.bytes;
          if (x.field == 2) {
            const uint32_t bits = static_cast<uint32_t>(x.value);
            std::memcpy(&value, &bits, 4);
          }
        }
        e.scalars.push_back({tag, value});
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace minidl

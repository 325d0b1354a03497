// safetensors reader and writer (format in safetensors.h). The JSON header is read and written
// with nlohmann::json; tensor bytes are copied as they are (minidl only runs on little-endian
// hosts, where the in-memory layout is the file layout).
#include "io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

namespace minidl {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian bytes; minidl copies memory as it is");

namespace {

namespace fs = std::filesystem;

// The reference implementation refuses headers above 100 MB; so do we, before allocating one.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    default: return nullptr;
  }
}

bool parse_dtype(const std::string& s, DType& out) {
  for (DType t : {DType::F32, DType::F64, DType::I32, DType::U8, DType::BF16, DType::F16})
    if (s == safetensors_dtype(t)) {
      out = t;
      return true;
    }
  return false;
}

}  // namespace

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

// ------------------------------------------------------------------ writing

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata,
                      const std::set<std::string>& as_i64) {
  const std::string who = "save_safetensors '" + path + "'";

  // Header: metadata first, then the tensors in the order given, their bytes back to back.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    MINIDL_CHECK(!name.empty() && name != "__metadata__", who, ": invalid tensor name '", name,
                 "'");
    MINIDL_CHECK(names.insert(name).second, who, ": tensor name '", name, "' appears twice");
    MINIDL_CHECK(t.defined(), who, ": tensor '", name, "' is undefined");
    const bool wide = as_i64.count(name) != 0;
    MINIDL_CHECK(!wide || t.dtype() == DType::I32, who, ": tensor '", name, "' is ", t.dtype(),
                 "; only int32 tensors can be written as I64");
    const char* dtype = wide ? "I64" : safetensors_dtype(t.dtype());
    MINIDL_CHECK(dtype != nullptr, who, ": tensor '", name, "' has dtype ", t.dtype(),
                 ", which minidl does not write (supported: float32, float64, int32, uint8, bfloat16, float16)");
    std::vector<int64_t> shape;
    for (int d = 0; d < t.dim(); ++d) shape.push_back(t.size(d));
    const uint64_t bytes = wide ? 2 * t.nbytes() : t.nbytes();
    header[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error& e) {  // strings that are not valid UTF-8
    throw_error(str(who, ": cannot encode the header: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so that the data starts 8-byte aligned
  const uint64_t header_len = text.size();

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    MINIDL_CHECK(out.is_open(), who, ": cannot open '", tmp, "' for writing: ",
                 std::strerror(errno));
    out.write(reinterpret_cast<const char*>(&header_len), sizeof header_len);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, t] : tensors) {
      const Tensor host = t.to(Device::cpu());
      if (as_i64.count(name) != 0) {  // sign-extended, little-endian like the rest
        const int32_t* v = host.data<int32_t>();
        const std::vector<int64_t> wide(v, v + host.numel());
        out.write(reinterpret_cast<const char*>(wide.data()),
                  static_cast<std::streamsize>(wide.size() * sizeof(int64_t)));
        continue;
      }
      out.write(static_cast<const char*>(host.raw_data()),
                static_cast<std::streamsize>(host.nbytes()));
    }
    out.flush();
    out.close();
    if (out.fail()) {
      const std::string reason = std::strerror(errno);
      std::error_code ec;
      fs::remove(tmp, ec);
      throw_error(str(who, ": writing '", tmp, "' failed: ", reason, " (disk full?)"));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw_error(str(who, ": cannot rename '", tmp, "' to '", path, "': ", ec.message()));
  }
}

// ------------------------------------------------------------------ reading

namespace {

struct Entry {
  std::string name;
  DType dtype;
  bool i64 = false;  // stored as I64, read into an int32 tensor
  Shape shape;
  uint64_t begin, end;
};

// Parses and checks one tensor entry of the header (everything that does not need the others).
Entry parse_entry(const std::string& who, const std::string& name, const nlohmann::json& j,
                  uint64_t data_bytes) {
  const std::string where = who + ": tensor '" + name + "'";
  MINIDL_CHECK(j.is_object() && j.contains("dtype") && j.contains("shape") &&
                   j.contains("data_offsets"),
               where, ": expected an object with dtype, shape and data_offsets, got ", j.dump());
  Entry e;
  e.name = name;
  MINIDL_CHECK(j["dtype"].is_string(), where, ": dtype must be a string, got ", j["dtype"].dump());
  const std::string dtype = j["dtype"].get<std::string>();
  e.i64 = dtype == "I64";
  if (e.i64) e.dtype = DType::I32;
  MINIDL_CHECK(e.i64 || parse_dtype(dtype, e.dtype), where, ": dtype ", dtype,
               " is not supported by minidl (supported: F32, F64, BF16, F16, I32, I64, U8)");

  const nlohmann::json& shape = j["shape"];
  MINIDL_CHECK(shape.is_array(), where, ": shape must be an array, got ", shape.dump());
  MINIDL_CHECK(shape.size() <= static_cast<size_t>(Shape::kMaxDims), where, ": shape ",
               shape.dump(), " has more than ", Shape::kMaxDims, " dimensions");
  // numel * element size, computed without overflow: it must not exceed the data region.
  uint64_t bytes = e.i64 ? sizeof(int64_t) : dtype_size(e.dtype);
  bool too_big = false;
  int64_t dims[Shape::kMaxDims] = {};
  for (size_t i = 0; i < shape.size(); ++i) {
    MINIDL_CHECK(shape[i].is_number_unsigned(), where, ": shape ", shape.dump(),
                 " must hold non-negative integers");
    const uint64_t d = shape[i].get<uint64_t>();
    MINIDL_CHECK(d <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where,
                 ": dimension ", d, " is too large");
    if (d != 0 && bytes > std::numeric_limits<uint64_t>::max() / d) too_big = true;
    bytes *= d;
    dims[i] = static_cast<int64_t>(d);
  }
  switch (shape.size()) {
    case 0: e.shape = Shape{}; break;
    case 1: e.shape = Shape{dims[0]}; break;
    case 2: e.shape = Shape{dims[0], dims[1]}; break;
    case 3: e.shape = Shape{dims[0], dims[1], dims[2]}; break;
    default: e.shape = Shape{dims[0], dims[1], dims[2], dims[3]}; break;
  }

  const nlohmann::json& off = j["data_offsets"];
  MINIDL_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                   off[1].is_number_unsigned(),
               where, ": data_offsets must be two non-negative integers, got ", off.dump());
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  MINIDL_CHECK(e.begin <= e.end && e.end <= data_bytes, where, ": data_offsets [", e.begin, ", ",
               e.end, "] are outside the data region of ", data_bytes, " bytes");
  MINIDL_CHECK(!too_big && bytes == e.end - e.begin, where, ": shape ", e.shape, " of ", dtype,
               " needs ", too_big ? std::string("more than 2^64") : std::to_string(bytes),
               " bytes but data_offsets [", e.begin, ", ", e.end, "] hold ", e.end - e.begin);
  return e;
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string who = "load_safetensors '" + path + "'";
  std::ifstream in(path, std::ios::binary);
  MINIDL_CHECK(in.is_open(), who, ": cannot open the file: ", std::strerror(errno));
  std::error_code ec;
  const uint64_t file_bytes = fs::file_size(path, ec);
  MINIDL_CHECK(!ec, who, ": cannot read the file size: ", ec.message());
  MINIDL_CHECK(file_bytes >= 8, who, ": the file has ", file_bytes,
               " bytes, too short for the 8-byte header length (truncated or not safetensors)");

  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), sizeof header_len);
  MINIDL_CHECK(in.good(), who, ": cannot read the header length");
  MINIDL_CHECK(header_len <= kMaxHeaderBytes && header_len <= file_bytes - 8, who,
               ": header length ", header_len, " does not fit the file of ", file_bytes,
               " bytes (limit ", kMaxHeaderBytes, "; truncated or not safetensors)");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  MINIDL_CHECK(in.good(), who, ": cannot read the ", header_len, "-byte header");
  const uint64_t data_bytes = file_bytes - 8 - header_len;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw_error(str(who, ": the header is not valid JSON: ", e.what()));
  }
  MINIDL_CHECK(header.is_object(), who, ": the header must be a JSON object, got ",
               header.type_name());

  SafetensorsFile file;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      MINIDL_CHECK(value.is_object(), who, ": __metadata__ must be an object of strings");
      for (const auto& [k, v] : value.items()) {
        MINIDL_CHECK(v.is_string(), who, ": __metadata__ entry '", k, "' must be a string, got ",
                     v.dump());
        file.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(who, key, value, data_bytes));
  }

  // The tensors must tile the data region: sorted by offset, each starts where the last ended.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    MINIDL_CHECK(e.begin >= expect, who, ": tensor '", e.name, "' at data_offsets [", e.begin, ", ",
                 e.end, "] overlaps tensor '", entries[i - 1].name, "' which ends at ", expect);
    MINIDL_CHECK(e.begin == expect, who, ": gap of ", e.begin - expect, " bytes before tensor '",
                 e.name, "' (data_offsets [", e.begin, ", ", e.end, "])");
    expect = e.end;
  }
  MINIDL_CHECK(expect == data_bytes, who, ": the tensors cover ", expect,
               " bytes but the data region has ", data_bytes,
               " (trailing bytes, or a truncated header)");

  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype, Device::cpu());
    if (e.i64) {
      std::vector<int64_t> wide(static_cast<size_t>(t.numel()));
      in.read(reinterpret_cast<char*>(wide.data()),
              static_cast<std::streamsize>(wide.size() * sizeof(int64_t)));
      MINIDL_CHECK(in.good() || wide.empty(), who, ": cannot read the data of tensor '", e.name,
                   "'");
      int32_t* dst = t.data<int32_t>();
      for (size_t i = 0; i < wide.size(); ++i) {
        MINIDL_CHECK(wide[i] >= std::numeric_limits<int32_t>::min() &&
                         wide[i] <= std::numeric_limits<int32_t>::max(),
                     who, ": tensor '", e.name, "' (I64) holds ", wide[i],
                     ", outside the int32 range minidl stores integers in");
        dst[i] = static_cast<int32_t>(wide[i]);
      }
      file.read_as_i64.insert(e.name);
    } else {
      in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes()));
      MINIDL_CHECK(in.good() || t.nbytes() == 0, who, ": cannot read the data of tensor '",
                   e.name, "'");
    }
    file.tensors.emplace_back(e.name, std::move(t));
  }
  return file;
}

}  // namespace minidl

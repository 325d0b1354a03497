// safetensors: bit-exact round trips, the exact byte layout of the format, files laid out by hand
// as other writers do, and corrupt files.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "../support/test_util.h"

using namespace minidl;
using namespace minidl::test;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test process (other builds run their tests at the same time), removed
// at exit.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("minidl_safetensors_test_" + std::to_string(getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
const fs::path& temp_dir() {
  static const TempDir dir;
  return dir.path;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file as the format describes it: length, header, data.
std::string file_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

std::string raw(const Tensor& t) {
  return std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
}

}  // namespace

TEST_CASE("safetensors round trip is bit-exact for every dtype", "[safetensors]") {
  const uint64_t seed = test_seed();
  INFO("seed " << seed);
  Generator g(seed);
  const double inf = std::numeric_limits<double>::infinity();
  NamedTensors tensors = {
      {"conv.weight", uniform_tensor(Shape{2, 3, 1, 5}, g, -1, 1, DType::F32)},
      {"specials", Tensor::from_vector<double>({-0.0, inf, -inf, 4.9e-324, 0.1, -1e300},
                                               Shape{6})},
      {"labels", Tensor::from_vector<int32_t>({INT32_MIN, -1, 0, 7, INT32_MAX, 42}, Shape{2, 3})},
      {"bytes", Tensor::from_vector<uint8_t>({0, 1, 127, 128, 255}, Shape{5})},
      {"empty", Tensor::empty(Shape{0}, DType::F32)},
      {"empty2d", Tensor::empty(Shape{3, 0}, DType::F64)},
      {"scalar", Tensor::from_vector<double>({3.5}, Shape{})},
      // every class of 16-bit value: zeros, subnormal, normal, largest, inf, NaN with a payload
      {"half", Tensor::from_vector<f16>({f16{0x8000}, f16{0x0001}, f16{0x3c00}, f16{0x7bff},
                                         f16{0xfc00}, f16{0x7d23}},
                                        Shape{2, 3})},
      {"bfloat", Tensor::from_vector<bf16>({bf16{0x8000}, bf16{0x0001}, bf16{0x3f80},
                                            bf16{0x7f7f}, bf16{0xff80}, bf16{0x7f81}},
                                           Shape{3, 2})},
  };
  const std::map<std::string, std::string> meta = {
      {"epoch", "12"}, {"quote\"and\\slash", "multi\nline \"json\" {\"a\": 1}"}, {"utf8", "µ±"}};
  const fs::path path = temp_dir() / "round_trip.safetensors";
  save_safetensors(path.string(), tensors, meta);

  const SafetensorsFile f = load_safetensors(path.string());
  CHECK(f.metadata == meta);
  REQUIRE(f.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO(tensors[i].first);
    CHECK(f.tensors[i].first == tensors[i].first);  // file order is the order written
    const Tensor& t = f.tensors[i].second;
    CHECK(t.dtype() == tensors[i].second.dtype());
    CHECK(t.shape() == tensors[i].second.shape());
    CHECK(t.device() == Device::cpu());
    CHECK(raw(t) == raw(tensors[i].second));
  }
  REQUIRE(f.find("labels") != nullptr);
  CHECK(f.find("labels")->to_vector<int32_t>()[4] == INT32_MAX);
  CHECK(f.find("nope") == nullptr);
}

TEST_CASE("safetensors writes the exact layout of the format", "[safetensors]") {
  SECTION("a one-tensor file, byte for byte") {
    const fs::path path = temp_dir() / "tiny.safetensors";
    save_safetensors(path.string(), {{"a", Tensor::from_vector<uint8_t>({1, 2}, Shape{2})}});
    // 53 bytes of JSON, padded with spaces to 56 (a multiple of 8) as the reference writer does.
    std::string header = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
    REQUIRE(header.size() == 53);
    header += "   ";
    CHECK(read_bytes(path) == file_bytes(header, std::string("\x01\x02", 2)));
  }
  SECTION("a checkpoint-like file, parsed independently") {
    const Tensor w = Tensor::from_vector<float>({1.5f, -2.f, 3.25f}, Shape{3, 1});
    const Tensor b = Tensor::from_vector<double>({0.5, 7}, Shape{2});
    const fs::path path = temp_dir() / "layout.safetensors";
    save_safetensors(path.string(), {{"fc.weight", w}, {"fc.bias", b}}, {{"epoch", "3"}});

    const std::string bytes = read_bytes(path);
    REQUIRE(bytes.size() >= 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);  // little-endian
    CHECK(n % 8 == 0);
    REQUIRE(bytes.size() == 8 + n + 12 + 16);
    const std::string header = bytes.substr(8, n);
    CHECK(header.front() == '{');
    CHECK(header.find_last_not_of(' ') == header.find_last_of('}'));  // only spaces after the JSON
    const auto j = nlohmann::json::parse(header);
    CHECK(j["__metadata__"] == nlohmann::json{{"epoch", "3"}});
    CHECK(j["fc.weight"]["dtype"] == "F32");
    CHECK(j["fc.weight"]["shape"] == nlohmann::json{3, 1});
    CHECK(j["fc.weight"]["data_offsets"] == nlohmann::json{0, 12});
    CHECK(j["fc.bias"]["dtype"] == "F64");
    CHECK(j["fc.bias"]["data_offsets"] == nlohmann::json{12, 28});
    const std::string data = bytes.substr(8 + n);
    CHECK(data.substr(0, 12) == raw(w));
    CHECK(data.substr(12) == raw(b));
  }
}

TEST_CASE("safetensors reads files laid out by other writers", "[safetensors]") {
  // Header keys in another order, tensors listed out of offset order, no padding, metadata last:
  // all allowed by the format. "b" comes first in the data.
  const std::string header =
      R"({"a":{"data_offsets":[4,12],"shape":[2],"dtype":"I32"},)"
      R"("b":{"shape":[],"dtype":"F32","data_offsets":[0,4]},"__metadata__":{"k":"v"}})";
  const float b = 2.5f;
  const int32_t a[2] = {-3, 9};
  std::string data(reinterpret_cast<const char*>(&b), 4);
  data += std::string(reinterpret_cast<const char*>(a), 8);
  const fs::path path = temp_dir() / "foreign.safetensors";
  write_bytes(path, file_bytes(header, data));

  const SafetensorsFile f = load_safetensors(path.string());
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.tensors[0].first == "b");  // in file (offset) order
  CHECK(f.tensors[0].second.shape() == Shape{});
  CHECK(f.tensors[0].second.item<float>() == 2.5f);
  CHECK(f.tensors[1].second.to_vector<int32_t>() == std::vector<int32_t>{-3, 9});
  CHECK(f.metadata.at("k") == "v");
}

TEST_CASE("safetensors reads and writes BF16 and F16 as torch does", "[safetensors][half]") {
  // The bytes safetensors.torch.save_file writes for {"h": torch.tensor([1, -2.5, 65504],
  // dtype=torch.float16), "b": torch.tensor([1, -2.5, 3.140625], dtype=torch.bfloat16)}: the raw
  // little-endian 16-bit patterns (checked against torch 2.x by hand, docs/BENCHMARKS.md's
  // mixed-precision section has the script).
  const std::string header =
      R"({"b":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},)"
      R"("h":{"dtype":"F16","shape":[3],"data_offsets":[6,12]}})";
  const std::string data("\x80\x3f\x20\xc0\x49\x40"   // bf16 0x3F80 0xC020 0x4049
                         "\x00\x3c\x00\xc1\xff\x7b",  // f16 0x3C00 0xC100 0x7BFF
                         12);
  const fs::path path = temp_dir() / "torch_half.safetensors";
  write_bytes(path, file_bytes(header, data));
  const SafetensorsFile f = load_safetensors(path.string());
  REQUIRE(f.tensors.size() == 2);
  const Tensor& b = f.tensors[0].second;
  const Tensor& h = f.tensors[1].second;
  REQUIRE(b.dtype() == DType::BF16);
  REQUIRE(h.dtype() == DType::F16);
  CHECK(to_doubles(b) == std::vector<double>{1.0, -2.5, 3.140625});
  CHECK(to_doubles(h) == std::vector<double>{1.0, -2.5, 65504.0});

  // Written back: the same dtype strings and bytes.
  const fs::path out = temp_dir() / "torch_half_out.safetensors";
  save_safetensors(out.string(), {{"b", b}, {"h", h}});
  const std::string bytes = read_bytes(out);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  const auto j = nlohmann::json::parse(bytes.substr(8, n));
  CHECK(j["b"]["dtype"] == "BF16");
  CHECK(j["h"]["dtype"] == "F16");
  CHECK(bytes.substr(8 + n) == data);
}

TEST_CASE("safetensors rejects corrupt files naming the path and the entry", "[safetensors][errors]") {
  const fs::path path = temp_dir() / "corrupt.safetensors";
  const std::string p = path.string();
  auto load_bytes = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    return load_safetensors(p);
  };
  const std::string ok_header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string eight(8, '\0');

  REQUIRE_THROWS_WITH(load_safetensors((temp_dir() / "missing.safetensors").string()),
                      Catch::Contains("missing.safetensors") && Catch::Contains("cannot open"));
  REQUIRE_THROWS_WITH(load_bytes("abc"), Catch::Contains(p) && Catch::Contains("too short"));
  REQUIRE_THROWS_WITH(load_bytes(le64(1ull << 40) + ok_header + eight),
                      Catch::Contains(p) && Catch::Contains("header length"));
  // Truncated data: the last byte of the tensor is gone.
  REQUIRE_THROWS_WITH(load_bytes(file_bytes(ok_header, std::string(7, '\0'))),
                      Catch::Contains(p) && Catch::Contains("'x'") && Catch::Contains("[0, 8]"));
  // Truncated header: the length promises more than the file holds.
  REQUIRE_THROWS_WITH(load_bytes(le64(ok_header.size() + 100) + ok_header),
                      Catch::Contains(p) && Catch::Contains("header length"));
  REQUIRE_THROWS_WITH(load_bytes(file_bytes(R"({"x": {"dtype": "F32", )", eight)),
                      Catch::Contains(p) && Catch::Contains("not valid JSON"));
  REQUIRE_THROWS_WITH(load_bytes(file_bytes("[1, 2]", "")),
                      Catch::Contains(p) && Catch::Contains("JSON object"));
  REQUIRE_THROWS_WITH(
      load_bytes(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            std::string(12, '\0'))),
      Catch::Contains(p) && Catch::Contains("'b'") && Catch::Contains("overlaps") &&
          Catch::Contains("'a'"));
  REQUIRE_THROWS_WITH(
      load_bytes(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight)),
      Catch::Contains(p) && Catch::Contains("gap") && Catch::Contains("'a'"));
  REQUIRE_THROWS_WITH(
      load_bytes(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight)),
      Catch::Contains(p) && Catch::Contains("trailing"));
  REQUIRE_THROWS_WITH(
      load_bytes(file_bytes(R"({"fp8":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", eight)),
      Catch::Contains(p) && Catch::Contains("'fp8'") && Catch::Contains("F8_E4M3"));
  REQUIRE_THROWS_WITH(
      load_bytes(file_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight)),
      Catch::Contains(p) && Catch::Contains("'w'") && Catch::Contains("12 bytes"));
  REQUIRE_THROWS_WITH(
      load_bytes(
          file_bytes(R"({"w":{"dtype":"U8","shape":[1,1,1,1,8],"data_offsets":[0,8]}})", eight)),
      Catch::Contains(p) && Catch::Contains("'w'") && Catch::Contains("dimensions"));
  REQUIRE_THROWS_WITH(
      load_bytes(file_bytes(R"({"w":{"dtype":"U8","shape":[-8],"data_offsets":[0,8]}})", eight)),
      Catch::Contains(p) && Catch::Contains("'w'") && Catch::Contains("non-negative"));
  REQUIRE_THROWS_WITH(
      load_bytes(file_bytes(R"({"w":{"dtype":"U8","shape":[8]}})", eight)),
      Catch::Contains(p) && Catch::Contains("'w'") && Catch::Contains("data_offsets"));
  REQUIRE_THROWS_WITH(
      load_bytes(file_bytes(R"({"__metadata__":{"epoch":3}})", "")),
      Catch::Contains(p) && Catch::Contains("'epoch'") && Catch::Contains("string"));
}

TEST_CASE("safetensors writes atomically", "[safetensors]") {
  const fs::path path = temp_dir() / "atomic.safetensors";
  const std::string tmp = path.string() + ".tmp";
  save_safetensors(path.string(), {{"a", Tensor::full(Shape{4}, 1.0, DType::F32)}});
  CHECK_FALSE(fs::exists(tmp));
  // Overwriting replaces the file whole.
  save_safetensors(path.string(), {{"b", Tensor::full(Shape{2}, 2.0, DType::F64)}});
  CHECK_FALSE(fs::exists(tmp));
  const SafetensorsFile f = load_safetensors(path.string());
  REQUIRE(f.tensors.size() == 1);
  CHECK(f.tensors[0].first == "b");

  // Bad input is rejected before anything is written: the old file survives.
  const std::string before = read_bytes(path);
  REQUIRE_THROWS_WITH(save_safetensors(path.string(), {{"ok", Tensor::zeros(Shape{1})},
                                                       {"bad", Tensor()}}),
                      Catch::Contains("'bad'") && Catch::Contains("undefined"));
  REQUIRE_THROWS_WITH(save_safetensors(path.string(), {{"x", Tensor::zeros(Shape{1})},
                                                       {"x", Tensor::zeros(Shape{1})}}),
                      Catch::Contains("'x'") && Catch::Contains("twice"));
  // (Every minidl dtype has a safetensors name, bfloat16 and float16 included, so no dtype is
  // refused on writing; an int32 tensor asked to be written as I64 is the dtype error left.)
  REQUIRE_THROWS_WITH(
      save_safetensors(path.string(), {{"h", Tensor::zeros(Shape{1}, DType::BF16)}}, {}, {"h"}),
      Catch::Contains("'h'") && Catch::Contains("bfloat16") && Catch::Contains("I64"));
  CHECK(read_bytes(path) == before);
  CHECK_FALSE(fs::exists(tmp));

  const std::string nodir = (temp_dir() / "no_such_dir" / "x.safetensors").string();
  REQUIRE_THROWS_WITH(save_safetensors(nodir, {{"a", Tensor::zeros(Shape{1})}}),
                      Catch::Contains(nodir));
}

TEST_CASE("safetensors reads I64 (torch's integer buffers) into int32 and writes it back as I64",
          "[safetensors][torch]") {
  const fs::path p = temp_dir() / "i64.safetensors";
  // As torch writes BatchNorm's num_batches_tracked: a 0-d I64 tensor, and a 1-d I64 tensor.
  std::string data = le64(391);
  for (int64_t v : {int64_t{-5}, int64_t{2147483647}}) data += le64(static_cast<uint64_t>(v));
  write_bytes(p, file_bytes(R"({"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
                            R"("v":{"dtype":"I64","shape":[2],"data_offsets":[8,24]}})",
                            data));
  const SafetensorsFile f = load_safetensors(p.string());
  REQUIRE(f.find("n") != nullptr);
  CHECK(f.find("n")->dtype() == DType::I32);
  CHECK(f.find("n")->to_vector<int32_t>() == std::vector<int32_t>{391});
  CHECK(f.find("v")->to_vector<int32_t>() == std::vector<int32_t>{-5, 2147483647});
  CHECK(f.read_as_i64 == std::set<std::string>{"n", "v"});

  // Written back as I64: byte for byte the same data region.
  const fs::path q = temp_dir() / "i64_back.safetensors";
  save_safetensors(q.string(), f.tensors, {}, {"n", "v"});
  const std::string back = read_bytes(q);
  CHECK(back.substr(back.size() - 24) == data);
  CHECK_THAT(back, Catch::Contains(R"("dtype":"I64")"));

  // A value int32 cannot hold is refused, naming the tensor.
  write_bytes(p, file_bytes(R"({"big":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})",
                            le64(uint64_t{1} << 40)));
  REQUIRE_THROWS_WITH(load_safetensors(p.string()),
                      Catch::Contains("'big'") && Catch::Contains("1099511627776"));
  // Only int32 tensors can be widened.
  REQUIRE_THROWS_WITH(save_safetensors(q.string(), {{"f", Tensor::zeros(Shape{1})}}, {}, {"f"}),
                      Catch::Contains("'f'") && Catch::Contains("I64"));
}

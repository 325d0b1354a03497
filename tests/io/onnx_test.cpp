// ONNX export (io/onnx.h): the wire-format encoder against hand-encoded bytes, and exported models
// read back by our structural reader (and by the ONNX checker of Debian's python3-onnx when it is
// installed): opset, operators, initializers equal to the parameters, a valid topological order.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>

#include "../engine/engine_test_util.h"
#include "io/onnx.h"
#include "models/models.h"

using namespace minidl;
namespace fs = std::filesystem;

TEST_CASE("onnx: the protobuf encoder writes the wire format", "[onnx][io]") {
  ProtoWriter w;
  w.varint(1, 150);  // the protobuf documentation's example: 08 96 01
  w.string(2, "testing");
  w.int64(3, -1);  // a negative int64 is ten bytes
  w.float32(4, 1.0f);
  w.packed_int64(5, {3, 270});
  w.varint(6, 128);  // the first two-byte varint: 80 01
  const std::string expect =
      std::string("\x08\x96\x01", 3) + "\x12\x07testing" +
      std::string("\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11) +
      std::string("\x25\x00\x00\x80\x3f", 5) + std::string("\x2a\x03\x03\x8e\x02", 5) + std::string("\x30\x80\x01", 3);
  CHECK(w.data() == expect);
  const std::vector<ProtoField> f = parse_proto(w.data(), "test");
  REQUIRE(f.size() == 6);
  CHECK(f[5].value == 128);
  CHECK(f[0].value == 150);
  CHECK(f[1].bytes == "testing");
  CHECK(static_cast<int64_t>(f[2].value) == -1);
  CHECK(f[3].wire_type == 5);
  CHECK_THROWS_WITH(parse_proto(w.data().substr(0, 6), "cut"), Catch::Contains("cut"));
}

namespace {

// Exports `name` and checks the structure; returns the op types used.
std::set<std::string> export_and_read(const std::string& name, bool imagenet_stem, int size,
                                      const fs::path& dir) {
  ModelConfig mc;
  mc.name = name;
  mc.num_classes = 7;
  mc.imagenet_stem = imagenet_stem;
  std::unique_ptr<Module> m = make_model(mc);
  OnnxExportOptions opt;
  opt.image_size = size;
  opt.metadata["class_names"] = "[\"a\"]";
  const std::string bytes = export_onnx(*m, opt);
  const OnnxStructure s = read_onnx_structure(bytes, name);
  CHECK(s.opset == 13);
  CHECK(s.ir_version == 7);
  CHECK(s.metadata.at("class_names") == "[\"a\"]");
  REQUIRE(s.input_dims.size() == 1);
  CHECK(s.input_dims[0] == std::vector<int64_t>{-1, 3, size, size});
  CHECK(s.output_dims[0] == std::vector<int64_t>{-1, 7});
  // Every parameter and BN statistic is an initializer, bit for bit.
  std::map<std::string, const OnnxInitializer*> init;
  for (const OnnxInitializer& t : s.initializers) init[t.name] = &t;
  int64_t values = 0;
  for (const NamedParameter& p : m->named_parameters()) {
    INFO(p.name);
    REQUIRE(init.count(p.name) == 1);
    const Tensor& v = p.param->value;
    REQUIRE(init[p.name]->raw.size() == static_cast<size_t>(v.nbytes()));
    CHECK(std::memcmp(init[p.name]->raw.data(), v.raw_data(), v.nbytes()) == 0);
    values += v.numel();
  }
  CHECK(values == m->parameter_count());
  std::set<std::string> ops;
  for (const OnnxNode& n : s.nodes) ops.insert(n.op_type);
  std::ofstream((dir / (name + ".onnx")).string(), std::ios::binary) << bytes;
  return ops;
}

}  // namespace

TEST_CASE("onnx: ResNet and AlexNet export with their real structure", "[onnx][io]") {
  const fs::path dir = test::scratch_dir("onnx_models");
  const std::set<std::string> r18 = export_and_read("resnet18", true, 64, dir);
  CHECK(r18 == std::set<std::string>{"Conv", "BatchNormalization", "Relu", "MaxPool", "Add",
                                      "GlobalAveragePool", "Flatten", "Gemm", "Identity"});
  const std::set<std::string> r20 = export_and_read("resnet20", false, 32, dir);
  CHECK(r20.count("Add") == 1);
  CHECK(r20.count("MaxPool") == 0);
  const std::set<std::string> alex = export_and_read("alexnet", false, 32, dir);
  CHECK(alex == std::set<std::string>{"Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Identity"});

  // The ONNX project's own checker (with shape inference), when Debian's python3-onnx is there.
  if (std::system("/usr/bin/python3 -c 'import onnx' 2>/dev/null") != 0) {
    WARN("python3-onnx not installed (scripts/setup.sh installs it): ONNX checker skipped");
  } else {
    for (const char* name : {"resnet18", "resnet20", "alexnet"}) {
      const std::string cmd = "/usr/bin/python3 -c \"import onnx, sys; m = onnx.load(sys.argv[1]); "
                              "onnx.checker.check_model(m, full_check=True)\" " +
                              (dir / (std::string(name) + ".onnx")).string();
      INFO(cmd);
      CHECK(std::system(cmd.c_str()) == 0);
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST_CASE("onnx: the reader rejects a graph that reads an undefined value", "[onnx][io][errors]") {
  ProtoWriter node;
  node.string(1, "nowhere");
  node.string(2, "y");
  node.string(3, "n0");
  node.string(4, "Relu");
  ProtoWriter graph;
  graph.message(1, node);
  ProtoWriter model;
  model.int64(1, 7);
  model.message(7, graph);
  CHECK_THROWS_WITH(read_onnx_structure(model.data(), "bad.onnx"),
                    Catch::Contains("bad.onnx") && Catch::Contains("nowhere"));
}

// ONNX export of a model's inference graph, written with a small protobuf wire-format encoder
// (no protobuf library: the few messages of onnx.proto that a model needs, by field number).
//
// The graph has the model's real structure, opset 13: Conv (with its bias when it has one),
// BatchNormalization (the running statistics, eval mode), Relu / LeakyRelu / Sigmoid / Tanh,
// MaxPool, AveragePool (count_include_pad = 1, as minidl's), GlobalAveragePool, Flatten (axis 1),
// Gemm (transB = 1: y = x W^T + b), Add (a residual sum; the shortcut is the input itself or its
// own Conv + BatchNormalization). Dropout is the identity at inference and is left out. The input
// "input" is float (batch, 3, S, S) with a symbolic batch dimension; the output "logits" is
// (batch, classes). Weights are initializers in raw little-endian float32, named by their
// state_dict names. metadata_props carry the class names, the normalisation and the input size, so
// that a runtime can preprocess as training did.
//
// read_onnx_structure parses such a file back (the subset of onnx.proto above) for the tests and
// `export`'s own check: every node's inputs must be the graph input, an initializer or an earlier
// node's output.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "layers/module.h"

namespace minidl {

inline constexpr int64_t kOnnxOpset = 13;
inline constexpr int64_t kOnnxIrVersion = 7;  // the IR version of opset 13 (ONNX 1.8)

struct OnnxExportOptions {
  int image_size = 32;
  std::string graph_name = "minidl";
  std::map<std::string, std::string> metadata;  // metadata_props
};

// Serialises `model` (on any device; its tensors are copied to the host) as an ONNX ModelProto.
// Throws naming the layer when a layer has no ONNX mapping.
std::string export_onnx(Module& model, const OnnxExportOptions& opt);
// Writes it atomically to `path`.
void write_onnx(const std::string& path, Module& model, const OnnxExportOptions& opt);

// ---------------------------------------------------------------- the wire format

// Appends protobuf fields to a byte string (proto3 encoding: varints, length-delimited bytes and
// submessages, packed repeated scalars, fixed 32-bit floats).
class ProtoWriter {
 public:
  void varint(int field, uint64_t v);
  void int64(int field, int64_t v) { varint(field, static_cast<uint64_t>(v)); }
  void bytes(int field, const std::string& b);
  void string(int field, const std::string& s) { bytes(field, s); }
  void message(int field, const ProtoWriter& m) { bytes(field, m.data_); }
  void float32(int field, float f);
  void float64(int field, double d);
  void packed_int64(int field, const std::vector<int64_t>& v);
  const std::string& data() const { return data_; }

 private:
  void tag(int field, int wire_type);
  void raw_varint(uint64_t v);
  std::string data_;
};

// One field as read back: wire type 0 (varint), 1 (64-bit), 2 (bytes), 5 (32-bit).
struct ProtoField {
  int field = 0;
  int wire_type = 0;
  uint64_t value = 0;  // varint, or the fixed-size bits
  std::string bytes;   // wire type 2
};
// Parses a message's fields in order; throws on malformed input (naming `what` and the offset).
std::vector<ProtoField> parse_proto(const std::string& data, const std::string& what);

// ---------------------------------------------------------------- reading back

struct OnnxNode {
  std::string op_type, name;
  std::vector<std::string> inputs, outputs;
  std::map<std::string, std::vector<int64_t>> ints;  // INT and INTS attributes
  std::map<std::string, float> floats;                // FLOAT attributes
};
struct OnnxInitializer {
  std::string name;
  std::vector<int64_t> dims;
  int32_t data_type = 0;  // 1: float
  std::string raw;        // raw_data bytes
};
struct OnnxStructure {
  int64_t ir_version = 0;
  int64_t opset = 0;  // of the default domain
  std::string producer;
  std::vector<OnnxNode> nodes;
  std::vector<OnnxInitializer> initializers;
  std::vector<std::string> inputs, outputs;  // graph input and output names
  std::vector<std::vector<int64_t>> input_dims, output_dims;  // -1: symbolic
  std::map<std::string, std::string> metadata;
};
// Parses a ModelProto; throws naming `what` when it is malformed or a node input is undefined.
OnnxStructure read_onnx_structure(const std::string& bytes, const std::string& what);

}  // namespace minidl

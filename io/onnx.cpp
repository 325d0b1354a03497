// ONNX export (onnx.h). Field numbers are onnx.proto's (ONNX 1.8+, IR version 7):
//   ModelProto:      ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8,
//                    metadata_props 14 (StringStringEntryProto: key 1, value 2)
//   OperatorSetIdProto: domain 1, version 2
//   GraphProto:      node 1, name 2, initializer 5, input 11, output 12
//   NodeProto:       input 1, output 2, name 3, op_type 4, attribute 5
//   AttributeProto:  name 1, f 2, i 3, ints 8, type 20 (FLOAT 1, INT 2, INTS 7)
//   TensorProto:     dims 1, data_type 2 (FLOAT 1), name 8, raw_data 9
//   ValueInfoProto:  name 1, type 2; TypeProto: tensor_type 1; TypeProto.Tensor: elem_type 1,
//                    shape 2; TensorShapeProto: dim 1; Dimension: dim_value 1, dim_param 2
#include "io/onnx.h"

#include <cstring>
#include <set>

#include "io/atomic_file.h"
#include "layers/activation.h"
#include "layers/basic.h"
#include "layers/batchnorm.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/pooling.h"
#include "layers/residual.h"

namespace minidl {

// ---------------------------------------------------------------- ProtoWriter

void ProtoWriter::raw_varint(uint64_t v) {
  while (v >= 0x80) {
    data_.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  data_.push_back(static_cast<char>(v));
}

void ProtoWriter::tag(int field, int wire_type) {
  raw_varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}

void ProtoWriter::varint(int field, uint64_t v) {
  tag(field, 0);
  raw_varint(v);
}

void ProtoWriter::bytes(int field, const std::string& b) {
  tag(field, 2);
  raw_varint(b.size());
  data_ += b;
}

void ProtoWriter::float32(int field, float f) {
  tag(field, 5);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  for (int i = 0; i < 4; ++i) data_.push_back(static_cast<char>(bits >> (8 * i)));
}

void ProtoWriter::float64(int field, double d) {
  tag(field, 1);
  uint64_t bits;
  std::memcpy(&bits, &d, 8);
  for (int i = 0; i < 8; ++i) data_.push_back(static_cast<char>(bits >> (8 * i)));
}

void ProtoWriter::packed_int64(int field, const std::vector<int64_t>& v) {
  ProtoWriter inner;
  for (int64_t x : v) inner.raw_varint(static_cast<uint64_t>(x));
  bytes(field, inner.data_);
}

std::vector<ProtoField> parse_proto(const std::string& d, const std::string& what) {
  std::vector<ProtoField> out;
  size_t pos = 0;
  auto read_varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      MINIDL_CHECK(pos < d.size(), what, ": truncated varint at byte ", pos);
      const uint8_t b = static_cast<uint8_t>(d[pos++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    throw Error(str(what, ": varint longer than 10 bytes at byte ", pos));
  };
  while (pos < d.size()) {
    const uint64_t key = read_varint();
    ProtoField f;
    f.field = static_cast<int>(key >> 3);
    f.wire_type = static_cast<int>(key & 7);
    MINIDL_CHECK(f.field > 0, what, ": field number 0 at byte ", pos);
    switch (f.wire_type) {
      case 0:
        f.value = read_varint();
        break;
      case 1:
      case 5: {
        const size_t n = f.wire_type == 1 ? 8 : 4;
        MINIDL_CHECK(pos + n <= d.size(), what, ": truncated fixed field at byte ", pos);
        for (size_t i = 0; i < n; ++i)
          f.value |= static_cast<uint64_t>(static_cast<uint8_t>(d[pos + i])) << (8 * i);
        pos += n;
        break;
      }
      case 2: {
        const uint64_t n = read_varint();
        MINIDL_CHECK(n <= d.size() - pos, what, ": field ", f.field, " of ", n,
                     " bytes runs past the end (byte ", pos, " of ", d.size(), ")");
        f.bytes = d.substr(pos, n);
        pos += n;
        break;
      }
      default:
        throw Error(str(what, ": unsupported wire type ", f.wire_type, " at byte ", pos));
    }
    out.push_back(std::move(f));
  }
  return out;
}

// ---------------------------------------------------------------- export

namespace {

std::string join_name(const std::string& path, const std::string& name) {
  return path.empty() ? name : path + "." + name;
}

ProtoWriter attr_int(const std::string& name, int64_t v) {
  ProtoWriter a;
  a.string(1, name);
  a.int64(3, v);
  a.varint(20, 2);
  return a;
}

ProtoWriter attr_ints(const std::string& name, const std::vector<int64_t>& v) {
  ProtoWriter a;
  a.string(1, name);
  a.packed_int64(8, v);
  a.varint(20, 7);
  return a;
}

ProtoWriter attr_float(const std::string& name, float v) {
  ProtoWriter a;
  a.string(1, name);
  a.float32(2, v);
  a.varint(20, 1);
  return a;
}

// A float tensor's type with dims (-1: the symbolic "batch").
ProtoWriter value_info(const std::string& name, const std::vector<int64_t>& dims) {
  ProtoWriter shape;
  for (int64_t d : dims) {
    ProtoWriter dim;
    if (d < 0)
      dim.string(2, "batch");
    else
      dim.int64(1, d);
    shape.message(1, dim);
  }
  ProtoWriter tensor;
  tensor.varint(1, 1);  // FLOAT
  tensor.message(2, shape);
  ProtoWriter type;
  type.message(1, tensor);
  ProtoWriter v;
  v.string(1, name);
  v.message(2, type);
  return v;
}

class GraphBuilder {
 public:
  ProtoWriter graph;

  std::string initializer(const std::string& name, const Tensor& t) {
    const Tensor host = t.to(Device::cpu());
    MINIDL_CHECK(host.dtype() == DType::F32, "export_onnx: tensor ", name, " is ",
                 host.describe(), "; ONNX export writes float32 models");
    ProtoWriter init;
    std::vector<int64_t> dims;
    for (int i = 0; i < host.dim(); ++i) dims.push_back(host.size(i));
    init.packed_int64(1, dims);
    init.varint(2, 1);  // FLOAT
    init.string(8, name);
    init.bytes(9, std::string(static_cast<const char*>(host.raw_data()), host.nbytes()));
    graph.message(5, init);
    return name;
  }

  // Adds a node and returns its output's name (derived from the layer path, unique).
  std::string node(const std::string& op, const std::vector<std::string>& inputs,
                   const std::string& path, const std::vector<ProtoWriter>& attrs = {}) {
    std::string out = path.empty() ? op : path;
    for (int k = 1; !used_.insert(out).second; ++k) out = str(path.empty() ? op : path, "_", k);
    ProtoWriter n;
    for (const std::string& in : inputs) n.string(1, in);
    n.string(2, out);
    n.string(3, out);
    n.string(4, op);
    for (const ProtoWriter& a : attrs) n.message(5, a);
    graph.message(1, n);
    return out;
  }

  // Emits `m` on input `x` of shape `in`; returns the output's name and sets `out` to its shape.
  std::string emit(Module& m, const std::string& x, const Shape& in, Shape& out) {
    out = m.output_shape(in);
    const std::string& p = m.path();
    if (auto* c = dynamic_cast<Conv2d*>(&m)) {
      const Conv2dConfig& k = c->config();
      std::vector<std::string> ins{x, initializer(join_name(p, "weight"), c->weight().value)};
      if (c->bias() != nullptr) ins.push_back(initializer(join_name(p, "bias"), c->bias()->value));
      return node("Conv", ins, p,
                  {attr_ints("kernel_shape", {k.kernel, k.kernel}),
                   attr_ints("strides", {k.stride, k.stride}),
                   attr_ints("pads", {k.pad, k.pad, k.pad, k.pad}), attr_ints("dilations", {1, 1}),
                   attr_int("group", 1)});
    }
    if (auto* bn = dynamic_cast<BatchNorm2d*>(&m)) {
      return node("BatchNormalization",
                  {x, initializer(join_name(p, "weight"), bn->weight().value),
                   initializer(join_name(p, "bias"), bn->bias().value),
                   initializer(join_name(p, "running_mean"), bn->running_mean()),
                   initializer(join_name(p, "running_var"), bn->running_var())},
                  p, {attr_float("epsilon", static_cast<float>(bn->config().eps))});
    }
    if (auto* a = dynamic_cast<ActivationLayer*>(&m)) {
      switch (a->activation()) {
        case Activation::ReLU:
          return node("Relu", {x}, p);
        case Activation::LeakyReLU:
          return node("LeakyRelu", {x}, p, {attr_float("alpha", static_cast<float>(a->slope()))});
        case Activation::Sigmoid:
          return node("Sigmoid", {x}, p);
        case Activation::Tanh:
          return node("Tanh", {x}, p);
      }
    }
    if (auto* mp = dynamic_cast<MaxPool2d*>(&m)) {
      const Pool2dParams& q = mp->params();
      return node("MaxPool", {x}, p,
                  {attr_ints("kernel_shape", {q.kernel, q.kernel}),
                   attr_ints("strides", {q.stride, q.stride}),
                   attr_ints("pads", {q.pad, q.pad, q.pad, q.pad})});
    }
    if (auto* ap = dynamic_cast<AvgPool2d*>(&m)) {
      const Pool2dParams& q = ap->params();
      return node("AveragePool", {x}, p,
                  {attr_ints("kernel_shape", {q.kernel, q.kernel}),
                   attr_ints("strides", {q.stride, q.stride}),
                   attr_ints("pads", {q.pad, q.pad, q.pad, q.pad}),
                   attr_int("count_include_pad", 1)});
    }
    if (dynamic_cast<GlobalAvgPool*>(&m) != nullptr) return node("GlobalAveragePool", {x}, p);
    if (dynamic_cast<Flatten*>(&m) != nullptr) return node("Flatten", {x}, p, {attr_int("axis", 1)});
    if (dynamic_cast<Dropout*>(&m) != nullptr) return x;  // the identity at inference
    if (auto* l = dynamic_cast<Linear*>(&m)) {
      std::string in2 = x;
      if (in.dim() != 2) in2 = node("Flatten", {x}, join_name(p, "flatten"), {attr_int("axis", 1)});
      std::vector<std::string> ins{in2, initializer(join_name(p, "weight"), l->weight().value)};
      if (l->bias() != nullptr) ins.push_back(initializer(join_name(p, "bias"), l->bias()->value));
      return node("Gemm", ins, p, {attr_int("transB", 1)});
    }
    if (auto* r = dynamic_cast<Residual*>(&m)) {
      Shape s1, s2;
      const std::string a = emit(r->main(), x, in, s1);
      const std::string b = r->shortcut() != nullptr ? emit(*r->shortcut(), x, in, s2) : x;
      return node("Add", {a, b}, join_name(p, "add"));
    }
    if (auto* seq = dynamic_cast<Sequential*>(&m)) {
      std::string cur = x;
      Shape s = in;
      for (size_t i = 0; i < seq->size(); ++i) {
        Shape next;
        cur = emit((*seq)[i], cur, s, next);
        s = next;
      }
      return cur;
    }
    throw Error(str("export_onnx: ", m.who(), " (", m.describe(),
                    ") has no ONNX mapping; the exporter knows Conv2d, BatchNorm2d, activations, "
                    "pooling, Flatten, Linear, Dropout, Residual and Sequential"));
  }

 private:
  std::set<std::string> used_;
};

}  // namespace

std::string export_onnx(Module& model, const OnnxExportOptions& opt) {
  GraphBuilder g;
  const int64_t S = opt.image_size;
  Shape out;
  const std::string y = g.emit(model, "input", Shape{1, 3, S, S}, out);
  MINIDL_CHECK(out.dim() == 2, "export_onnx: the model's output is ", out,
               " for a (1, 3, ", S, ", ", S, ") input; expected (1, classes) logits");
  // The graph output is called "logits": an Identity names it whatever the last layer was.
  const std::string logits = g.node("Identity", {y}, "logits");
  g.graph.string(2, opt.graph_name);
  g.graph.message(11, value_info("input", {-1, 3, S, S}));
  g.graph.message(12, value_info(logits, {-1, out[1]}));

  ProtoWriter m;
  m.int64(1, kOnnxIrVersion);
  m.string(2, "minidl");
  m.string(3, "0.1.0");
  m.message(7, g.graph);
  ProtoWriter opset;
  opset.string(1, "");
  opset.int64(2, kOnnxOpset);
  m.message(8, opset);
  for (const auto& [k, v] : opt.metadata) {
    ProtoWriter e;
    e.string(1, k);
    e.string(2, v);
    m.message(14, e);
  }
  return m.data();
}

void write_onnx(const std::string& path, Module& model, const OnnxExportOptions& opt) {
  write_file_atomic(path, export_onnx(model, opt));
}

// ---------------------------------------------------------------- reading back

namespace {

// A repeated int64 field: one varint, or a packed run of varints (wire type 2).
std::vector<int64_t> read_int64s(const ProtoField& f) {
  if (f.wire_type == 0) return {static_cast<int64_t>(f.value)};
  std::vector<int64_t> v;
  uint64_t x = 0;
  int shift = 0;
  for (char c : f.bytes) {
    const uint8_t b = static_cast<uint8_t>(c);
    x |= static_cast<uint64_t>(b & 0x7F) << shift;
    shift += 7;
    if ((b & 0x80) == 0) {
      v.push_back(static_cast<int64_t>(x));
      x = 0;
      shift = 0;
    }
  }
  MINIDL_CHECK(shift == 0, "ONNX: a packed int64 field ends inside a varint");
  return v;
}

std::vector<int64_t> read_value_info_dims(const std::string& bytes, std::string& name) {
  std::vector<int64_t> dims;
  for (const ProtoField& f : parse_proto(bytes, "ValueInfoProto")) {
    if (f.field == 1) name = f.bytes;
    if (f.field != 2) continue;
    for (const ProtoField& t : parse_proto(f.bytes, "TypeProto"))
      if (t.field == 1)
        for (const ProtoField& tt : parse_proto(t.bytes, "TypeProto.Tensor"))
          if (tt.field == 2)
            for (const ProtoField& d : parse_proto(tt.bytes, "TensorShapeProto"))
              if (d.field == 1) {
                int64_t v = -1;
                for (const ProtoField& dv : parse_proto(d.bytes, "Dimension"))
                  if (dv.field == 1) v = static_cast<int64_t>(dv.value);
                dims.push_back(v);
              }
  }
  return dims;
}

}  // namespace

OnnxStructure read_onnx_structure(const std::string& bytes, const std::string& what) {
  OnnxStructure s;
  std::string graph;
  for (const ProtoField& f : parse_proto(bytes, what)) {
    if (f.field == 1) s.ir_version = static_cast<int64_t>(f.value);
    if (f.field == 2) s.producer = f.bytes;
    if (f.field == 7) graph = f.bytes;
    if (f.field == 8) {
      std::string domain;
      int64_t version = 0;
      for (const ProtoField& o : parse_proto(f.bytes, what + " opset_import")) {
        if (o.field == 1) domain = o.bytes;
        if (o.field == 2) version = static_cast<int64_t>(o.value);
      }
      if (domain.empty()) s.opset = version;
    }
    if (f.field == 14) {
      std::string k, v;
      for (const ProtoField& e : parse_proto(f.bytes, what + " metadata_props")) {
        if (e.field == 1) k = e.bytes;
        if (e.field == 2) v = e.bytes;
      }
      s.metadata[k] = v;
    }
  }
  MINIDL_CHECK(!graph.empty(), what, ": no graph (ModelProto field 7)");
  for (const ProtoField& f : parse_proto(graph, what + " graph")) {
    if (f.field == 1) {
      OnnxNode n;
      for (const ProtoField& nf : parse_proto(f.bytes, what + " node")) {
        if (nf.field == 1) n.inputs.push_back(nf.bytes);
        if (nf.field == 2) n.outputs.push_back(nf.bytes);
        if (nf.field == 3) n.name = nf.bytes;
        if (nf.field == 4) n.op_type = nf.bytes;
        if (nf.field == 5) {
          std::string name;
          std::vector<int64_t> ints;
          float fv = 0.f;
          bool is_float = false;
          for (const ProtoField& a : parse_proto(nf.bytes, what + " attribute")) {
            if (a.field == 1) name = a.bytes;
            if (a.field == 3 || a.field == 8) {
              const std::vector<int64_t> v = read_int64s(a);
              ints.insert(ints.end(), v.begin(), v.end());
            }
            if (a.field == 2) {
              const uint32_t bits = static_cast<uint32_t>(a.value);
              std::memcpy(&fv, &bits, 4);
              is_float = true;
            }
          }
          if (is_float)
            n.floats[name] = fv;
          else
            n.ints[name] = ints;
        }
      }
      s.nodes.push_back(std::move(n));
    } else if (f.field == 5) {
      OnnxInitializer t;
      for (const ProtoField& tf : parse_proto(f.bytes, what + " initializer")) {
        if (tf.field == 1) {
          const std::vector<int64_t> v = read_int64s(tf);
          t.dims.insert(t.dims.end(), v.begin(), v.end());
        }
        if (tf.field == 2) t.data_type = static_cast<int32_t>(tf.value);
        if (tf.field == 8) t.name = tf.bytes;
        if (tf.field == 9) t.raw = tf.bytes;
      }
      s.initializers.push_back(std::move(t));
    } else if (f.field == 11 || f.field == 12) {
      std::string name;
      const std::vector<int64_t> dims = read_value_info_dims(f.bytes, name);
      (f.field == 11 ? s.inputs : s.outputs).push_back(name);
      (f.field == 11 ? s.input_dims : s.output_dims).push_back(dims);
    }
  }
  // Topological validity: every input defined before use, every output produced once.
  std::set<std::string> defined(s.inputs.begin(), s.inputs.end());
  for (const OnnxInitializer& t : s.initializers) {
    int64_t n = 1;
    for (int64_t d : t.dims) n *= d;
    MINIDL_CHECK(t.data_type == 1 && static_cast<int64_t>(t.raw.size()) == 4 * n, what,
                 ": initializer ", t.name, " has ", t.raw.size(), " bytes for ", n,
                 " float32 values (data_type ", t.data_type, ")");
    defined.insert(t.name);
  }
  for (const OnnxNode& n : s.nodes) {
    for (const std::string& in : n.inputs)
      MINIDL_CHECK(defined.count(in) != 0, what, ": node ", n.name, " (", n.op_type,
                   ") reads ", in, ", which no earlier node, initializer or input defines");
    for (const std::string& o : n.outputs)
      MINIDL_CHECK(defined.insert(o).second, what, ": ", o, " is defined twice");
  }
  for (const std::string& o : s.outputs)
    MINIDL_CHECK(defined.count(o) != 0, what, ": graph output ", o, " is never computed");
  return s;
}

}  // namespace minidl

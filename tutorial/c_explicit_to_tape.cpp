// Tutorial step (c): from explicit layers to the tape (docs/tutorial/c-explicit-to-tape.md).
//
// One ResNet BasicBlock (with its projection shortcut) and a linear head, two ways: the explicit
// layers (layers/residual.h, backward written by hand) and the tape (autograd/, backward derived
// from the recorded graph), with the same weights. It prints the tape's nodes in the order
// backward runs them, compares every gradient (they are equal bit for bit: same kernels, same
// arguments) and writes the graph as DOT (and as SVG when Graphviz's `dot` is installed).
//
//   build/tutorial_c_explicit_to_tape [graph.dot]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "autograd/models.h"
#include "layers/residual.h"

using namespace minidl;

namespace {

double norm(const Tensor& t) {
  double s = 0;
  for (float v : t.to_vector<float>()) s += double(v) * v;
  return std::sqrt(s);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dot_path = argc > 1 ? argv[1] : "block.dot";
  Generator gen(3);
  BasicBlock block(BlockConfig{4, 8, 2, DType::F32}, gen);  // 4 -> 8 channels, stride 2
  Tensor x = Tensor::empty(Shape{2, 4, 6, 6});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = float(gen.uniform(-1.0, 1.0));
  Tensor dout = Tensor::empty(Shape{2, 8, 3, 3});
  for (int64_t i = 0; i < dout.numel(); ++i) dout.data<float>()[i] = float(gen.uniform(-1.0, 1.0));

  // The tape's copy of the weights, taken before the explicit forward (which updates BN's running
  // statistics).
  ag::Parameters P = ag::Parameters::from_module(block);

  // Explicit: forward, then the hand-written backward.
  block.zero_grad();
  block.forward(x, Mode::Train);
  const Tensor dx = block.backward(dout);

  // Tape: only the forward is written (autograd/models.cpp, the same block); backward from the
  // same output gradient. x is a leaf that requires a gradient, so we get dL/dx too.
  ag::Var xv(x, true, "x");
  auto bn = [&](const std::string& p, const ag::Var& h) { return ag::batchnorm(P, p, h, true); };
  auto conv = [&](const std::string& p, const ag::Var& h, int s, int pad) {
    return ag::conv2d(h, P[p + ".weight"], ag::Var(), {s, pad});
  };
  ag::Var h = ag::relu(bn("bn1", conv("conv1", xv, 2, 1)));
  h = bn("bn2", conv("conv2", h, 1, 1));
  ag::Var shortcut = bn("downsample.1", conv("downsample.0", xv, 2, 0));
  ag::Var out = ag::relu(ag::add(h, shortcut));
  out.backward({.seed = dout});

  std::printf("the tape, in the order backward ran it (reverse topological):\n");
  std::printf("  %-4s %-16s %-18s %s\n", "#", "op", "output shape", "|dL/d output|");
  for (ag::Node* n : ag::backward_order(out)) {
    std::string shape;
    for (int d = 0; d < n->out_shape.dim(); ++d) shape += (d ? "x" : "") + std::to_string(n->out_shape[d]);
    std::printf("  %-4lld %-16s %-18s %.6f\n", static_cast<long long>(n->id), n->op.c_str(),
                shape.c_str(), norm(n->out_grad.grad));
  }

  std::printf("\nexplicit layers vs tape, gradient by gradient:\n");
  int equal = 0, total = 0;
  auto compare = [&](const std::string& name, const Tensor& a, const Tensor& b) {
    const bool same = std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
    std::printf("  %-22s |grad| %10.6f  %s\n", name.c_str(), norm(a),
                same ? "bit-equal" : "DIFFERENT");
    equal += same;
    ++total;
  };
  compare("input x", dx, xv.grad());
  for (auto& np : block.named_parameters()) compare(np.name, np.param->grad, P.grad(np.name));
  std::printf("%d of %d gradients equal bit for bit\n", equal, total);

  ag::write_graph(out, dot_path);
  std::printf("\nwrote the graph to %s (render: dot -Tsvg %s -o block.svg)\n", dot_path.c_str(),
              dot_path.c_str());
  if (std::system("command -v dot > /dev/null 2>&1") == 0) {
    const std::string svg = dot_path.substr(0, dot_path.rfind('.')) + ".svg";
    ag::write_graph(out, svg);
    std::printf("wrote %s\n", svg.c_str());
  }
  return equal == total ? 0 : 1;
}

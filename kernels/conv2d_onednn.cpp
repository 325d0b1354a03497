// The oneDNN path of the convolution (CpuKernels::Onednn, float32 or bfloat16 on the CPU):
// forward, backward data and backward weight as oneDNN primitives, the way PyTorch's CPU
// convolutions run. In bfloat16 (mixed precision) x, w, y, dy, dx are bfloat16 and oneDNN
// accumulates in float32; the bias and the weight gradient stay float32 (the master weights' side),
// as PyTorch's autocast gets them.
//
// oneDNN's fast convolutions (jit AVX2/AVX-512 direct kernels) want blocked layouts (nChw16c
// activations, OIhw16i16o weights), so each operand is described to oneDNN as `any`, and when the
// layout it picks differs from our plain NCHW/KCRS tensor the operand is reordered into a scratch
// tensor before the call (inputs) or back after it (outputs), as PyTorch does for NCHW tensors.
// Channels-last activations (conv2d.h) are described with oneDNN's plain `nhwc` tag and given to
// the primitive as they are (oneDNN has direct nhwc convolutions, as PyTorch uses for channels_last
// on the CPU); the weights stay `oihw` in memory (KCRS, in both layouts) and may still be
// reordered. The primitive descriptors, primitives and reorders are created once per shape (N, C,
// H, W, K, R, S, stride, pad, bias, layout, dtype) and cached per thread; the scratch tensors come
// from minidl's caching allocator, so after the first step nothing is allocated from the system and
// the peak-memory report counts them. oneDNN's own scratchpad is requested in user mode for the
// same reason.
//
// Gradient rule as on every path: dx is overwritten, dw accumulates. oneDNN's weight gradient
// overwrites, so it is computed into scratch and added to dw by the reorder back (a sum post-op).
#include "kernels/conv2d.h"

#if MINIDL_HAVE_DNNL

#include <map>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <unordered_map>

namespace minidl::onednn {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;

// One engine and stream per host thread (oneDNN's CPU engine runs on the OpenMP pool).
struct Context {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
};

Context& context() {
  thread_local Context c;
  return c;
}

// A float32 scratch buffer of at least `bytes` from minidl's caching allocator.
Tensor scratch(size_t bytes) {
  return Tensor::empty(Shape{static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float)) + 1});
}

// One operand of a primitive: our plain layout, the layout the primitive chose, and the reorder
// between them (user -> chosen for inputs, chosen -> user for outputs) when they differ.
struct Operand {
  memory::desc user, chosen;
  bool staged = false;
  dnnl::reorder reorder;

  Operand() = default;
  // `force` stages even when the layouts agree (the weight gradient, which must be added, not
  // written). `accumulate` makes the reorder add into its destination.
  Operand(const memory::desc& user_md, const memory::desc& chosen_md, bool is_output,
          bool force = false, bool accumulate = false)
      : user(user_md), chosen(chosen_md), staged(force || user_md != chosen_md) {
    if (!staged) return;
    Context& c = context();
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    reorder = is_output
                  ? dnnl::reorder(dnnl::reorder::primitive_desc(c.eng, chosen, c.eng, user, attr))
                  : dnnl::reorder(dnnl::reorder::primitive_desc(c.eng, user, c.eng, chosen, attr));
  }

  // Memory for the primitive: the user's buffer itself, or a scratch buffer (kept alive by `hold`)
  // filled from the user's buffer for an input.
  memory bind_input(const void* p, Tensor& hold) const {
    Context& c = context();
    memory u(user, c.eng, const_cast<void*>(p));
    if (!staged) return u;
    hold = scratch(chosen.get_size());
    memory m(chosen, c.eng, hold.raw_data());
    reorder.execute(c.strm, u, m);
    return m;
  }
  memory bind_output(void* p, Tensor& hold) const {
    Context& c = context();
    if (!staged) return memory(user, c.eng, p);
    hold = scratch(chosen.get_size());
    return memory(chosen, c.eng, hold.raw_data());
  }
  // After the primitive ran: copy (or add) a staged output back into the user's buffer.
  void finish_output(memory m, void* p) const {
    if (!staged) return;
    Context& c = context();
    memory u(user, c.eng, p);
    reorder.execute(c.strm, m, u);
  }
};

memory::dims dims(int64_t a, int64_t b, int64_t c, int64_t d) { return {a, b, c, d}; }

struct Descs {
  memory::desc x, w, y, b, x_any, w_any, y_any;
  memory::desc dw, dw_any;  // the weight gradient: float32 at every dtype
  memory::dims strides, pad_l, pad_r;
};

memory::data_type data_type(DType t) {
  return t == DType::BF16 ? memory::data_type::bf16 : kF32;
}

// Plain layouts (ours) and `any` layouts (for oneDNN to choose) of the three tensors, x, w and y
// in dtype t, the bias and the weight gradient in float32; channels-last x and y are given as
// their plain nhwc layout instead of `any`. The padding is symmetric as in PyTorch; oneDNN's
// output-size check divides like ConvGeometry::make.
Descs descs(const ConvGeometry& g, DType t) {
  const bool nhwc = g.layout == Layout::NHWC;
  const Tag act = nhwc ? Tag::nhwc : Tag::nchw;
  Descs d;
  const auto xd = dims(g.N, g.C, g.H, g.W), wd = dims(g.K, g.C, g.R, g.S),
             yd = dims(g.N, g.K, g.P, g.Q);
  const auto dt = data_type(t);
  d.x = memory::desc(xd, dt, act);
  d.w = memory::desc(wd, dt, Tag::oihw);
  d.y = memory::desc(yd, dt, act);
  d.b = memory::desc({g.K}, kF32, Tag::x);
  d.x_any = nhwc ? d.x : memory::desc(xd, dt, Tag::any);
  d.w_any = memory::desc(wd, dt, Tag::any);
  d.y_any = nhwc ? d.y : memory::desc(yd, dt, Tag::any);
  d.dw = memory::desc(wd, kF32, Tag::oihw);
  d.dw_any = memory::desc(wd, kF32, Tag::any);
  d.strides = {g.stride, g.stride};
  d.pad_l = {g.pad, g.pad};
  d.pad_r = {g.pad, g.pad};
  return d;
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The forward primitive descriptor, also the hint the backward primitives are created from.
dnnl::convolution_forward::primitive_desc forward_pd(const Descs& d, bool bias,
                                                     dnnl::prop_kind prop) {
  Context& c = context();
  const auto desc =
      bias ? dnnl::convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, d.x_any,
                                             d.w_any, d.b, d.y_any, d.strides, d.pad_l, d.pad_r)
           : dnnl::convolution_forward::desc(prop, dnnl::algorithm::convolution_direct, d.x_any,
                                             d.w_any, d.y_any, d.strides, d.pad_l, d.pad_r);
  return dnnl::convolution_forward::primitive_desc(desc, user_scratchpad(), c.eng);
}

enum class Op { Forward, BackwardData, BackwardWeight };

struct Plan {
  dnnl::primitive prim;
  memory::desc scratchpad;
  Operand a, b, out;  // forward: x, w -> y; backward data: dy, w -> dx; backward weight: x, dy -> dw
};

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int,
                       bool, Op, DType, Layout>;

std::unique_ptr<Plan> make_plan(const ConvGeometry& g, bool bias, Op op, DType t) {
  Context& c = context();
  const Descs d = descs(g, t);
  auto plan = std::make_unique<Plan>();
  switch (op) {
    case Op::Forward: {
      // forward_training: the same kernels as inference for a convolution, and the same hint the
      // backward primitives are created from.
      const auto pd = forward_pd(d, bias, dnnl::prop_kind::forward_training);
      plan->prim = dnnl::convolution_forward(pd);
      plan->scratchpad = pd.scratchpad_desc();
      plan->a = Operand(d.x, pd.src_desc(), false);
      plan->b = Operand(d.w, pd.weights_desc(), false);
      plan->out = Operand(d.y, pd.dst_desc(), true);
      break;
    }
    case Op::BackwardData: {
      const auto hint = forward_pd(d, false, dnnl::prop_kind::forward_training);
      const dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct,
                                                       d.x_any, d.w_any, d.y_any, d.strides,
                                                       d.pad_l, d.pad_r);
      const dnnl::convolution_backward_data::primitive_desc pd(desc, user_scratchpad(), c.eng,
                                                               hint);
      plan->prim = dnnl::convolution_backward_data(pd);
      plan->scratchpad = pd.scratchpad_desc();
      plan->a = Operand(d.y, pd.diff_dst_desc(), false);
      plan->b = Operand(d.w, pd.weights_desc(), false);
      plan->out = Operand(d.x, pd.diff_src_desc(), true);
      break;
    }
    case Op::BackwardWeight: {
      const auto hint = forward_pd(d, false, dnnl::prop_kind::forward_training);
      const dnnl::convolution_backward_weights::desc desc(dnnl::algorithm::convolution_direct,
                                                          d.x_any, d.dw_any, d.y_any, d.strides,
                                                          d.pad_l, d.pad_r);
      const dnnl::convolution_backward_weights::primitive_desc pd(desc, user_scratchpad(), c.eng,
                                                                  hint);
      plan->prim = dnnl::convolution_backward_weights(pd);
      plan->scratchpad = pd.scratchpad_desc();
      plan->a = Operand(d.x, pd.src_desc(), false);
      plan->b = Operand(d.y, pd.diff_dst_desc(), false);
      plan->out = Operand(d.dw, pd.diff_weights_desc(), true, /*force=*/true, /*accumulate=*/true);
      break;
    }
  }
  return plan;
}

const Plan& plan_for(const ConvGeometry& g, bool bias, Op op, DType t) {
  thread_local std::map<Key, std::unique_ptr<Plan>> cache;
  const Key key{g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.stride, g.pad, bias, op, t, g.layout};
  auto it = cache.find(key);
  if (it == cache.end()) {
    try {
      it = cache.emplace(key, make_plan(g, bias, op, t)).first;
    } catch (const dnnl::error& e) {
      throw_error(str("conv2d (oneDNN): cannot create a ", dtype_name(t), " ",
                      layout_name(g.layout), " primitive for input (", g.N, ", ", g.C, ", ", g.H,
                      ", ", g.W, "), weight (", g.K, ", ", g.C, ", ", g.R, ", ", g.S, "), stride ",
                      g.stride, ", padding ", g.pad, ": ", e.what(),
                      " (use --cpu-kernels handwritten)"));
    }
  }
  return *it->second;
}

// Runs a backward `plan` with inputs a, b into out, staging operands as the plan says.
void run(const Plan& plan, const void* a, const void* b, void* out, int arg_a, int arg_b,
         int arg_out) {
  Context& c = context();
  Tensor hold_a, hold_b, hold_out, hold_sp;
  const memory ma = plan.a.bind_input(a, hold_a);
  const memory mb = plan.b.bind_input(b, hold_b);
  const memory mo = plan.out.bind_output(out, hold_out);
  hold_sp = scratch(plan.scratchpad.get_size());
  std::unordered_map<int, memory> args{{arg_a, ma}, {arg_b, mb}, {arg_out, mo},
                                       {DNNL_ARG_SCRATCHPAD,
                                        memory(plan.scratchpad, c.eng, hold_sp.raw_data())}};
  plan.prim.execute(c.strm, args);
  plan.out.finish_output(mo, out);
  c.strm.wait();
}

}  // namespace

void conv2d_forward(void* y, const void* x, const void* w, const float* bias,
                    const ConvGeometry& g, DType t) {
  Context& c = context();
  const Plan& plan = plan_for(g, bias != nullptr, Op::Forward, t);
  Tensor hold_a, hold_b, hold_out;
  const memory mx = plan.a.bind_input(x, hold_a);
  const memory mw = plan.b.bind_input(w, hold_b);
  const memory my = plan.out.bind_output(y, hold_out);
  Tensor hold_sp = scratch(plan.scratchpad.get_size());
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, mx},
      {DNNL_ARG_WEIGHTS, mw},
      {DNNL_ARG_DST, my},
      {DNNL_ARG_SCRATCHPAD, memory(plan.scratchpad, c.eng, hold_sp.raw_data())}};
  if (bias)
    args.emplace(DNNL_ARG_BIAS,
                 memory(memory::desc({g.K}, kF32, Tag::x), c.eng, const_cast<float*>(bias)));
  plan.prim.execute(c.strm, args);
  plan.out.finish_output(my, y);
  c.strm.wait();
}

void conv2d_backward_data(void* dx, const void* dy, const void* w, const ConvGeometry& g,
                          DType t) {
  const Plan& plan = plan_for(g, false, Op::BackwardData, t);
  run(plan, dy, w, dx, DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC);
}

void conv2d_backward_weight(float* dw, const void* dy, const void* x, const ConvGeometry& g,
                            DType t) {
  const Plan& plan = plan_for(g, false, Op::BackwardWeight, t);
  run(plan, x, dy, dw, DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS);
}

}  // namespace minidl::onednn

#endif  // MINIDL_HAVE_DNNL

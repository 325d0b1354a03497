// `train --trace-steps N`: what each layer does in the first N optimizer steps, the numbers that
// tell a vanishing or exploding gradient, a dead layer or a too-large learning rate apart
// (docs/tutorial/e-why-training-fails.md):
//
//   layer                    act mean   act std   |grad|      |update|/|w|
//   conv1                    ...                                              one row per layer
//
//   act mean, act std  of the layer's output in this step's forward (every leaf layer)
//   |grad|             the L2 norm of the layer's parameter gradients (layers with parameters)
//   |update|/|w|       the L2 norm of the optimizer's change to the layer's parameters over their
//                      norm before it (around 1e-3 is healthy for SGD; 1e-1 means lr is too large,
//                      1e-6 that the layer barely learns)
//
// Tracing copies activations and parameters to the host, so it synchronises the device: it is for
// the first few steps, not for whole runs. The per-layer gradient norms of the last step of every
// epoch (layer_grad_norms) are cheap enough to take always; report.html draws them as curves.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/report.h"
#include "layers/module.h"

namespace minidl {

class StepTracer {
 public:
  explicit StepTracer(Module& model);
  ~StepTracer();
  StepTracer(const StepTracer&) = delete;
  StepTracer& operator=(const StepTracer&) = delete;

  // Around one optimizer step: watch the forward (activation statistics), then read the
  // gradients and remember the parameters, then measure the update.
  void before_forward();
  void after_backward();
  void after_step();
  // The table of the step just traced, headed "trace: step <step>".
  std::string table(int64_t step) const;
  // Its rows: every leaf layer in the model's order.
  struct LayerTrace {
    std::string layer;  // path and type: "layer1.0.conv1 Conv2d"
    bool has_act = false, has_params = false;
    double act_mean = 0, act_std = 0, grad_norm = 0, update_ratio = 0;
  };
  std::vector<LayerTrace> rows() const;

 private:
  struct Row {
    const Module* layer;
    double act_mean = 0, act_std = 0;
    bool has_act = false;
    double grad_norm = 0, update_ratio = 0;
    std::vector<Tensor> before;  // the parameters before the optimizer step (host copies)
  };
  Module& model_;
  std::vector<Row> rows_;  // the model's leaf layers, in forward order once seen
  std::unordered_map<const Module*, size_t> index_;
};

// The L2 norm of the parameter gradients of every leaf layer that has parameters, by path.
std::vector<std::pair<std::string, double>> layer_grad_norms(Module& model);

// The report's chart of per-layer gradient norms over the epochs (log10 scale), from
// ReportData::layer_grad_norms; at most 12 layers, spread over the depth, so the chart stays
// readable ("" when there is nothing to draw).
std::string grad_norm_chart(const ReportData& r);

}  // namespace minidl

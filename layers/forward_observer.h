// Watching a forward pass (train --trace-steps, engine/trace.h): while an observer is set,
// Sequential::forward calls it with each child and the child's output, so every layer of a model
// built from Sequentials (all of models/) is seen once per forward, in order. One observer per
// process; an empty function removes it. Costs one test of an empty std::function per layer when
// none is set.
#pragma once

#include <functional>

#include "layers/module.h"

namespace minidl {

using ForwardObserver = std::function<void(const Module& layer, const Tensor& output)>;
void set_forward_observer(ForwardObserver observer);
const ForwardObserver& forward_observer();

}  // namespace minidl

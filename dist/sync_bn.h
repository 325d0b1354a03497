// --sync-bn: every BatchNorm2d of a model normalises with the statistics of the global batch
// (layers/batchnorm.h, "Synchronised"; docs/backprop/sync_batchnorm.md).
#pragma once

#include "dist/comm.h"
#include "layers/module.h"

namespace minidl::dist {

// Makes every BatchNorm2d in `model` sum its channel statistics over `comm` (which must outlive
// the model's training). Returns how many layers it changed.
int enable_sync_batchnorm(Module& model, Comm& comm);

}  // namespace minidl::dist

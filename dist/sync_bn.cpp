// --sync-bn (dist/sync_bn.h).
#include "dist/sync_bn.h"

#include "layers/batchnorm.h"

namespace minidl::dist {

int enable_sync_batchnorm(Module& model, Comm& comm) {
  int n = 0;
  if (auto* bn = dynamic_cast<BatchNorm2d*>(&model)) {
    bn->set_sync([&comm](std::vector<double>& v) { comm.allreduce(v, Reduce::Sum); });
    ++n;
  }
  for (const auto& [name, child] : model.children()) n += enable_sync_batchnorm(*child, comm);
  return n;
}

}  // namespace minidl::dist

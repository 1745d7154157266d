// Plan lookups.
#include "exec/plan.h"

namespace ktx::exec {

const Placement* Plan::find(std::string_view module) const {
  for (const Placement& p : placements) {
    if (p.module == module) return &p;
  }
  return nullptr;
}

}  // namespace ktx::exec

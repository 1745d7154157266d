// What the session tests over the golden models share: the models' paths, loading one (on
// ref:0 too, with a rule file), and comparing logits.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/model.h"

namespace ktx::test {

inline std::string golden(const std::string& name) {
  return std::string(KTX_SOURCE_DIR) + "/tests/data/golden/" + name + ".gguf";
}

// The golden model `name` on 2 threads; with `rules`, placed by them with the ref backend loaded.
inline std::shared_ptr<runtime::Model> load_golden(const std::string& name,
                                                   const std::string& rules = "") {
  runtime::ModelOptions o;
  o.n_threads = 2;
  if (!rules.empty()) {
    o.rules_path = rules;
    o.backend_paths = {KTX_REF_BACKEND};
  }
  return runtime::Model::load(golden(name), o);
}

inline std::vector<float> copy(std::span<const float> s) { return {s.begin(), s.end()}; }

inline float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace ktx::test

// Sampling options (validated on every set) and samplers.
#include <limits>
#include <string>

#include "abi_internal.h"
#include "ktx/error.h"

using ktx::abi::invalid_argument;
using ktx::abi::null_argument;

namespace {

// Sets one parameter if the whole set stays valid; the options are unchanged otherwise.
template <class Set>
ktx_status* update(const char* function, ktx_sampling_options* options, Set set) {
  if (options == nullptr) return null_argument(function, "options");
  ktx::runtime::SamplingParams next = options->params;
  set(next);
  try {
    next.validate();
  } catch (const ktx::Error& e) {
    return invalid_argument(function, e.what());
  }
  options->params = next;
  return nullptr;
}

}  // namespace

extern "C" {

ktx_status* ktx_sampling_options_create(ktx_sampling_options** options) {
  KTX_API_BEGIN
  if (options == nullptr) return null_argument(__func__, "options");
  *options = new ktx_sampling_options();
  return nullptr;
  KTX_API_END
}

void ktx_sampling_options_release(ktx_sampling_options* options) { delete options; }

ktx_status* ktx_sampling_options_set_temperature(ktx_sampling_options* options, float temperature) {
  KTX_API_BEGIN
  return update(__func__, options, [&](auto& p) { p.temperature = temperature; });
  KTX_API_END
}

ktx_status* ktx_sampling_options_set_top_k(ktx_sampling_options* options, int32_t top_k) {
  KTX_API_BEGIN
  return update(__func__, options, [&](auto& p) { p.top_k = top_k; });
  KTX_API_END
}

ktx_status* ktx_sampling_options_set_top_p(ktx_sampling_options* options, float top_p) {
  KTX_API_BEGIN
  return update(__func__, options, [&](auto& p) { p.top_p = top_p; });
  KTX_API_END
}

ktx_status* ktx_sampling_options_set_min_p(ktx_sampling_options* options, float min_p) {
  KTX_API_BEGIN
  return update(__func__, options, [&](auto& p) { p.min_p = min_p; });
  KTX_API_END
}

ktx_status* ktx_sampling_options_set_repeat_penalty(ktx_sampling_options* options,
                                                    float repeat_penalty) {
  KTX_API_BEGIN
  return update(__func__, options, [&](auto& p) { p.repeat_penalty = repeat_penalty; });
  KTX_API_END
}

ktx_status* ktx_sampling_options_set_presence_penalty(ktx_sampling_options* options,
                                                      float presence_penalty) {
  KTX_API_BEGIN
  return update(__func__, options, [&](auto& p) { p.presence_penalty = presence_penalty; });
  KTX_API_END
}

ktx_status* ktx_sampling_options_set_frequency_penalty(ktx_sampling_options* options,
                                                       float frequency_penalty) {
  KTX_API_BEGIN
  return update(__func__, options, [&](auto& p) { p.frequency_penalty = frequency_penalty; });
  KTX_API_END
}

ktx_status* ktx_sampling_options_set_penalty_last_n(ktx_sampling_options* options,
                                                    int32_t penalty_last_n) {
  KTX_API_BEGIN
  return update(__func__, options, [&](auto& p) { p.penalty_last_n = penalty_last_n; });
  KTX_API_END
}

ktx_status* ktx_sampling_options_set_seed(ktx_sampling_options* options, uint64_t seed) {
  KTX_API_BEGIN
  return update(__func__, options, [&](auto& p) { p.seed = seed; });
  KTX_API_END
}

ktx_status* ktx_sampler_create(const ktx_sampling_options* options, ktx_sampler** sampler) {
  KTX_API_BEGIN
  if (sampler == nullptr) return null_argument(__func__, "sampler");
  const ktx::runtime::SamplingParams params =
      options != nullptr ? options->params : ktx::runtime::SamplingParams{};
  *sampler = new ktx_sampler{ktx::runtime::Sampler(params)};
  return nullptr;
  KTX_API_END
}

void ktx_sampler_release(ktx_sampler* sampler) { delete sampler; }

ktx_status* ktx_sampler_sample(ktx_sampler* sampler, const float* logits, size_t n_logits,
                               int32_t* token) {
  KTX_API_BEGIN
  if (sampler == nullptr) return null_argument(__func__, "sampler");
  if (logits == nullptr) return null_argument(__func__, "logits");
  if (token == nullptr) return null_argument(__func__, "token");
  if (n_logits == 0 || n_logits > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return invalid_argument(
        __func__, "n_logits is " + std::to_string(n_logits) + ", expected 1 to INT32_MAX");
  }
  *token = sampler->sampler.sample({logits, n_logits});
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_sampler_accept(ktx_sampler* sampler, int32_t token) {
  KTX_API_BEGIN
  if (sampler == nullptr) return null_argument(__func__, "sampler");
  if (token < 0) return invalid_argument(__func__, "token " + std::to_string(token) + " is < 0");
  sampler->sampler.accept(token);
  return nullptr;
  KTX_API_END
}

void ktx_sampler_reset(ktx_sampler* sampler) {
  if (sampler != nullptr) sampler->sampler.reset();
}

}  // extern "C"

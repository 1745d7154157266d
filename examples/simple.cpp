// The C example (simple.c) in C++ over ktx.hpp: RAII handles, errors as ktx::AbiError, the buffer
// protocol behind std::vector and std::string, callbacks as lambdas.
//
// usage: simple_cpp MODEL.gguf ["prompt"] [n_predict]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ktx/ktx.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [\"prompt\"] [n_predict]\n", argv[0]);
    return 2;
  }
  const std::string prompt = argc > 2 ? argv[2] : "Write one sentence about the sea.";
  const int64_t n_predict = argc > 3 ? std::strtoll(argv[3], nullptr, 10) : 64;
  if (!ktx::abi_compatible()) {
    std::fprintf(stderr, "libktx %s does not serve the ABI this program was built for\n",
                 ktx::version_string().c_str());
    return 1;
  }
  try {
    ktx::ModelOptions options;
    options.progress([](float progress) {
      std::fprintf(stderr, "\rloading %3d%%%s", static_cast<int>(progress * 100.0f + 0.5f),
                   progress >= 1.0f ? "\n" : "");
      return true;
    });
    const ktx::Model model = ktx::Model::load(argv[1], options);

    // A chat model gets its template, which writes the special tokens itself.
    std::vector<int32_t> tokens;
    try {
      const std::string chat = model.apply_chat_template({{"user", prompt}});
      tokens = model.tokenize(chat, KTX_TOKENIZE_PARSE_SPECIAL);
    } catch (const ktx::AbiError& e) {
      if (e.code() != KTX_STATUS_UNSUPPORTED) throw;
      tokens = model.tokenize(prompt, KTX_TOKENIZE_ADD_SPECIAL);
    }

    ktx::Session session(model);
    ktx::Sampler sampler(ktx::SamplingOptions().temperature(0.7f).seed(1));
    const ktx_generate_stats stats =
        session.generate(sampler, tokens, n_predict, [](int32_t, std::string_view piece) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
          return true;
        });
    std::fprintf(stderr, "\n%lld prompt tokens, %lld generated in %.2f s%s\n",
                 static_cast<long long>(stats.n_prompt), static_cast<long long>(stats.n_generated),
                 stats.decode_seconds,
                 stats.stop_reason == KTX_STOP_EOG ? ", stopped at end of generation" : "");
  } catch (const ktx::AbiError& e) {
    std::fprintf(stderr, "%s: %s\n", e.code_name(), e.what());
    return 1;
  }
  return 0;
}

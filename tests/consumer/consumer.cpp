// Uses the installed package: the C ABI (ktx::ktx) and the C++ core (ktx::core) — writes a GGUF
// file with one tensor, reads it back, and checks the bytes.
#include <cstdio>
#include <cstring>
#include <vector>

#include "ktx/gguf.h"
#include "ktx/ktx.h"

extern "C" uint32_t consumer_abi_from_c(void);

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  if (consumer_abi_from_c() != ktx_abi_version()) return 1;
  const std::vector<float> data = {1.0f, 2.0f, 3.0f, 4.0f};
  ktx::gguf::Writer w;
  w.set_metadata("general.architecture", ktx::gguf::Value::string("consumer"));
  w.add_tensor("t", ktx::TensorType::F32, {4}, data.data(), data.size() * sizeof(float));
  w.write(argv[1]);
  const auto f = ktx::gguf::File::open(argv[1]);
  const auto& t = f.tensor("t");
  if (t.n_bytes != 16 || std::memcmp(t.data, data.data(), 16) != 0) return 1;
  std::printf("consumer: ktx %s ok\n", ktx_version_string());
  return 0;
}

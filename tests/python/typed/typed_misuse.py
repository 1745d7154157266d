"""Wrong uses that mypy must reject: proof that the stubs, not Any, describe the package."""

import ktx

model = ktx.Model("m.gguf")
arch: int = model.arch  # str, not int
session = model.session(512)  # n_ctx is keyword-only
tokens: list[str] = model.tokenizer.encode("x")  # ids are ints
model.session().generate("x", max_tokens="8")  # an int

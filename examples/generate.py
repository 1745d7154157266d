"""Chat with a model through the ktx package: load it (with a progress bar), stream the answer to
one question as it is generated, and report the speed. Usage:

    python3 examples/generate.py [MODEL.gguf] ["question"] [--max-tokens N] [--temperature T]

With no model argument (or one argument that is not a file: then it is the question) it uses
the default model, SmolLM2-135M-Instruct (scripts/setup.sh installs it). Ctrl-C stops loading
or generating cleanly.
"""

import argparse
import pathlib
import subprocess
import sys

import ktx


def default_model() -> str:
    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "default_model.py"
    return subprocess.run([sys.executable, str(script)], check=True, capture_output=True,
                          text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a GGUF file (default: SmolLM2-135M-Instruct)")
    parser.add_argument("question", nargs="?", default=None,
                        help="default: What is the capital of France?")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    # One argument that is not a file is the question, asked of the default model.
    if args.question is None and args.model and not pathlib.Path(args.model).exists() \
            and not args.model.endswith(".gguf"):
        args.model, args.question = None, args.model
    if args.question is None:
        args.question = "What is the capital of France?"

    model = ktx.Model(args.model or default_model(), threads=args.threads)
    print(f"{model.name or model.arch}: {model.n_layer} layers, {model.n_vocab} tokens, "
          f"{model.n_threads} threads", file=sys.stderr)

    session = model.session()
    generation = session.generate(args.question, chat=True, max_tokens=args.max_tokens,
                                  temperature=args.temperature)
    try:
        for piece in generation:
            print(piece, end="", flush=True)
    except KeyboardInterrupt:
        generation.close()
    print()
    rate = generation.n_generated / generation.decode_seconds if generation.decode_seconds else 0
    print(f"prompt: {generation.n_prompt} tokens in {generation.prefill_seconds:.2f} s; "
          f"generated {generation.n_generated} tokens at {rate:.1f} tok/s "
          f"(stopped: {generation.stop_reason})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

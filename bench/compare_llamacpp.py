#!/usr/bin/env python3
"""ktx against llama.cpp on one GGUF file, in one run: prefill and decode speed, and whether the
two give the same next-token logits.

llama.cpp is driven through llama-cpp-python's low-level API (its own C functions, no sampling or
chat layer in between), which is not a dependency of ktx. Install it into a separate environment
first; it compiles llama.cpp from source (about 15 minutes on 2 cores):

    python3 -m venv --system-site-packages ~/venv-llamacpp
    CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" \\
        ~/venv-llamacpp/bin/pip install --no-deps llama-cpp-python==0.3.36
    ~/venv-llamacpp/bin/pip install diskcache   # imported by llama_cpp, not pulled in above
    ~/venv-llamacpp/bin/python bench/compare_llamacpp.py -m MODEL.gguf -p 512 -n 128 -t 2

Both engines prefill a random in-vocabulary prompt of -p tokens as one batch, then decode -n tokens
greedily; the logits check feeds both the very same prompt. Random-weight files written by `ktx make-model` carry no vocabulary; llama.cpp
refuses a file without `tokenizer.ggml.model`, so a copy with `tokenizer.ggml.model = "none"`
(llama.cpp's "no vocabulary" type) is written next to it once, by the gguf package.

The runs alternate (llama.cpp, ktx, llama.cpp, ktx …) and the best of --repeats is kept for each,
so both see the same machine load. Prints one JSON object; docs/COMPARISON.md has the results.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def llamacpp_copy(path: pathlib.Path) -> pathlib.Path:
    """The file itself when it has a tokenizer, else a copy with tokenizer.ggml.model = none."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    if "tokenizer.ggml.model" in reader.fields:
        return path
    out = path.with_suffix(".llamacpp.gguf")
    if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
        return out
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    writer = gguf.GGUFWriter(str(out), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value_type = field.types[0]
        if value_type == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                value = [str(bytes(field.parts[i]), "utf-8") for i in field.data]
            else:
                value = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_key_value(name, value, value_type, sub_type=sub)
        elif value_type == gguf.GGUFValueType.STRING:
            writer.add_key_value(name, str(bytes(field.parts[-1]), "utf-8"), value_type)
        else:
            writer.add_key_value(name, field.parts[-1].tolist()[0], value_type)
    writer.add_string("tokenizer.ggml.model", "none")
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


class LlamaCpp:
    """One llama.cpp model + context, through the C functions llama-cpp-python exposes."""

    def __init__(self, path: pathlib.Path, threads: int, n_ctx: int, n_batch: int,
                 verbose: bool = False):
        import llama_cpp as L

        self.L = L
        # llama.cpp logs every graph it builds; printing that on each decode step would be
        # measured as llama.cpp's time.
        if not verbose:
            self._quiet = L.llama_log_callback(lambda level, text, user_data: None)
            L.llama_log_set(self._quiet, ctypes.c_void_p())
        L.llama_backend_init()
        mparams = L.llama_model_default_params()
        mparams.use_mmap = True
        self.model = L.llama_model_load_from_file(str(path).encode(), mparams)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        cparams = L.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        self.ctx = L.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))

    def reset(self) -> None:
        L = self.L
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)

    def eval(self, tokens: list[int]) -> np.ndarray:
        """Evaluates tokens as one batch; returns the last token's logits."""
        L = self.L
        arr = (L.llama_token * len(tokens))(*tokens)
        rc = L.llama_decode(self.ctx, L.llama_batch_get_one(arr, len(tokens)))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        ptr = L.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()


def run_llamacpp(engine: LlamaCpp, prompt: list[int], n_gen: int) -> dict:
    engine.reset()
    t0 = time.perf_counter()
    logits = engine.eval(prompt)
    t1 = time.perf_counter()
    first_logits = logits
    token = int(np.argmax(logits))
    for _ in range(n_gen):
        logits = engine.eval([token])
        token = int(np.argmax(logits))
    t2 = time.perf_counter()
    return {
        "prefill_tok_s": len(prompt) / (t1 - t0),
        "decode_tok_s": n_gen / (t2 - t1),
        "first_logits": first_logits,
    }


def rules_args(rules: pathlib.Path | None) -> list[str]:
    return ["--rules", str(rules)] if rules else []


def run_ktx(ktx: pathlib.Path, model: pathlib.Path, n_prompt: int, n_gen: int,
            threads: int, rules: pathlib.Path | None) -> dict:
    # ktx bench draws its own random in-vocabulary prompt of the same length: speed does not
    # depend on which tokens they are beyond the experts they route to, which are random in both.
    out = subprocess.run(
        [str(ktx), "bench", "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen), "--threads",
         str(threads), "--bandwidth", "1", "--json", *rules_args(rules)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def ktx_logits(ktx: pathlib.Path, model: pathlib.Path, prompt: list[int], threads: int,
               n_vocab: int, scratch: pathlib.Path, rules: pathlib.Path | None) -> np.ndarray:
    subprocess.run([str(ktx), "logits", "-m", str(model), "--tokens", ",".join(map(str, prompt)),
                    "--threads", str(threads), "-o", str(scratch), *rules_args(rules)],
                   check=True, capture_output=True)
    return np.fromfile(scratch, dtype=np.float32).reshape(-1, n_vocab)[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True, type=pathlib.Path)
    ap.add_argument("-p", type=int, default=512, help="prompt tokens (one batch)")
    ap.add_argument("-n", type=int, default=128, help="tokens decoded")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ktx", type=pathlib.Path, default=ROOT / "build/bin/ktx")
    ap.add_argument("--rules", type=pathlib.Path,
                    help="ktx's rules file (e.g. rules/deepseek-v2-cpu-repack.yaml); default: "
                         "the one ktx picks for the model")
    ap.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    args = ap.parse_args()

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama-cpp-python is not installed here; see this script's docstring",
              file=sys.stderr)
        return 2

    path = llamacpp_copy(args.model)
    engine = LlamaCpp(path, args.threads, args.p + args.n + 16, args.p, args.verbose)
    rng = np.random.default_rng(args.seed)
    # Ids 1.. : some vocabularies reserve 0; both engines get exactly these.
    prompt = [int(t) for t in rng.integers(1, engine.n_vocab, size=args.p)]

    best_l: dict = {}
    best_k: dict = {}
    for _ in range(args.repeats):
        r = run_llamacpp(engine, prompt, args.n)
        for key in ("prefill_tok_s", "decode_tok_s"):
            best_l[key] = max(best_l.get(key, 0.0), r[key])
        first = r["first_logits"]
        k = run_ktx(args.ktx, args.model, args.p, args.n, args.threads, args.rules)
        for key in ("prefill_tok_s", "decode_tok_s"):
            best_k[key] = max(best_k.get(key, 0.0), k[key])

    scratch = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "ktx-compare-logits.f32"
    mine = ktx_logits(args.ktx, args.model, prompt, args.threads, engine.n_vocab, scratch,
                      args.rules)
    scale = float(np.max(np.abs(first)))
    report = {
        "model": str(args.model),
        "threads": args.threads,
        "ktx_rules": str(args.rules) if args.rules else None,
        "prompt_tokens": args.p,
        "decode_tokens": args.n,
        "load_average": os.getloadavg()[0],
        "llama_cpp": {"version": llama_cpp.__version__, **best_l},
        "ktx": best_k,
        "ratio_ktx_over_llama_cpp": {key: best_k[key] / best_l[key] for key in best_l},
        "last_prompt_token_logits": {
            "max_abs_diff": float(np.max(np.abs(mine - first))),
            "max_abs_logit": scale,
            "same_argmax": bool(np.argmax(mine) == np.argmax(first)),
            "top10_overlap": len(set(np.argsort(-mine)[:10]) & set(np.argsort(-first)[:10])),
        },
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

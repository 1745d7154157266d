"""Typed use of the ktx package: mypy --strict must accept this file as it is (it is checked,
never run: tests/python/test_package_typing.py)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

import ktx


def top_tokens(model: ktx.Model, prompt: str, k: int = 5) -> list[tuple[str, float]]:
    session: ktx.Session = model.session(n_ctx=256)
    logits: npt.NDArray[np.float32] = session.eval(model.tokenizer.encode(prompt))
    best = np.argsort(logits)[::-1][:k]
    return [(model.tokenizer.decode([int(t)]), float(logits[t])) for t in best]


def stream(model: ktx.Model, question: str) -> tuple[str, float]:
    session = model.session()
    generation: ktx.Generation = session.generate(question, chat=True, max_tokens=16, seed=1,
                                                  stop=["\n\n"])
    text = "".join(piece for piece in generation)
    rate = generation.n_generated / max(generation.decode_seconds, 1e-9)
    reason: str | None = generation.stop_reason
    assert reason in (None, "length", "eog", "stop", "context_full", "cancelled")
    return text, rate


def describe(model: ktx.Model) -> dict[str, object]:
    plan: ktx.Plan = model.plan()
    devices = {p["generate_device"] for p in plan["placements"]}
    backends: list[ktx.BackendInfo] = model.backends()
    free = [d["free_bytes"] for b in backends for d in b["devices"]]
    completion: ktx.Completion = model.session().complete([1, 2, 3], max_tokens=2)
    return {"devices": devices, "free": free, "arch": model.arch, "n_vocab": model.n_vocab,
            "text": completion.text, "metadata": model.metadata.get("general.name")}


def load(path: str) -> ktx.Model | None:
    def on_progress(fraction: float) -> bool:
        return fraction < 2.0

    try:
        return ktx.Model(path, threads=2, progress=on_progress, backend_paths=["/opt/ktx"])
    except ktx.IoError as e:
        print(e.code, e.code_name)
        return None
    except ktx.Error:
        raise

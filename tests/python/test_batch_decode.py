"""Batched decode steps (ktx.decode_batch) against each session's own steps, bit for bit, on a
Q4_K_M DeepSeek file written by `ktx make-model` (so not a package test: it needs the tool), with
and without option repack's row tiles."""

import pathlib
import subprocess

import numpy as np
import pytest

import ktx


@pytest.mark.parametrize("rules", [None, "rules/deepseek-v2-cpu-repack.yaml"])
def test_decode_batch_is_bit_for_bit_with_and_without_repack(ktx_bin, tmp_path, rules):
    """A Q4_K_M DeepSeek file wide enough for row tiles: every batch size, one token's numbers."""
    path = tmp_path / "wide.gguf"
    r = subprocess.run([str(ktx_bin), "make-model", str(path), "--model", "tiny-deepseek2",
                        "--hidden", "256", "--expert-ff", "256", "--ff", "512",
                        "--kv-lora-rank", "256", "--vocab", "512", "--experts", "8",
                        "--experts-used", "2", "--preset", "Q4_K_M"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    source = pathlib.Path(__file__).resolve().parents[2]
    m = ktx.Model(path, threads=2, progress=False,
                  rules=None if rules is None else source / rules)
    rng = np.random.default_rng(7)
    for b in (2, 3, 4, 9):
        sessions = [m.session(n_ctx=32) for _ in range(b)]
        for s in sessions:
            s.eval(rng.integers(0, m.n_vocab, size=int(rng.integers(1, 6))).tolist())
        alone = [s.fork() for s in sessions]
        for _ in range(3):
            tokens = rng.integers(0, m.n_vocab, size=b).tolist()
            got = ktx.decode_batch(sessions, tokens)
            for i in range(b):
                np.testing.assert_array_equal(got[i], alone[i].decode(tokens[i]))

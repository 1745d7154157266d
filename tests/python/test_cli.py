"""`ktx inspect` and `ktx quantize` as a user runs them, checked against the gguf package."""

import json
import subprocess

import gguf
import numpy as np
import pytest

import ktx


def run(ktx_bin, *args):
    return subprocess.run([str(ktx_bin), *map(str, args)], capture_output=True, text=True)


def write_model(path, rng):
    """A small file with several tensor types and metadata of every kind, written by gguf-py."""
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_uint32("llama.block_count", 1)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("test.flag", True)
    w.add_array("test.ints", [1, 2, 3])
    w.add_array("test.tokens", [f"tok{i}" for i in range(100)])
    w.add_string("test.text", 'quote " and unicode ✓')
    a = rng.standard_normal((4, 64)).astype(np.float32)
    w.add_tensor("a.weight", a)
    q = gguf.quants.quantize(rng.standard_normal((3, 64)).astype(np.float32),
                             gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return a


def test_inspect_json_names_every_tensor(tmp_path, ktx_bin, rng):
    path = tmp_path / "m.gguf"
    write_model(path, rng)
    r = run(ktx_bin, "inspect", path, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    reader = gguf.GGUFReader(str(path))
    assert [t["name"] for t in doc["tensors"]] == [t.name for t in reader.tensors]
    for t, rt in zip(doc["tensors"], reader.tensors):
        assert t["type"] == rt.tensor_type.name
        assert t["shape"] == [int(d) for d in rt.shape]
        assert t["n_bytes"] == int(rt.n_bytes)
    assert doc["metadata"]["llama.block_count"] == 1
    assert doc["metadata"]["test.flag"] is True
    assert doc["metadata"]["test.ints"] == [1, 2, 3]
    assert doc["metadata"]["test.text"] == 'quote " and unicode ✓'
    # Long arrays are summarised, not dumped.
    assert doc["metadata"]["test.tokens"] == {"array_of": "STRING", "length": 100}
    assert doc["totals_by_type"]["Q8_0"]["tensors"] == 1
    assert doc["total_n_bytes"] == sum(int(t.n_bytes) for t in reader.tensors)


def test_inspect_text_lists_tensors_and_totals(tmp_path, ktx_bin, rng):
    path = tmp_path / "m.gguf"
    write_model(path, rng)
    r = run(ktx_bin, "inspect", path)
    assert r.returncode == 0, r.stderr
    assert "a.weight" in r.stdout and "q.weight" in r.stdout
    assert "totals by type" in r.stdout and "Q8_0" in r.stdout


def test_inspect_errors_are_clear(tmp_path, ktx_bin):
    missing = tmp_path / "nope.gguf"
    r = run(ktx_bin, "inspect", missing)
    assert r.returncode == 1
    assert str(missing) in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUX" + bytes(60))
    r = run(ktx_bin, "inspect", bad)
    assert r.returncode == 1 and str(bad) in r.stderr and "magic" in r.stderr.lower()
    r = run(ktx_bin, "inspect", bad, "--jsn")
    assert r.returncode == 2 and "--jsn" in r.stderr
    r = run(ktx_bin, "inspect")
    assert r.returncode == 2 and "FILE" in r.stderr
    r = run(ktx_bin, "frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


@pytest.mark.parametrize("preset", ["Q8_0", "Q4_K_M"])
def test_quantize_preset_round_trip(tmp_path, ktx_bin, rng, preset):
    src = tmp_path / "f32.gguf"
    dst = tmp_path / f"{preset}.gguf"
    w = gguf.GGUFWriter(str(src), arch="llama")
    w.add_uint32("llama.block_count", 1)
    weights = {
        "token_embd.weight": rng.standard_normal((64, 256)).astype(np.float32),
        "blk.0.attn_norm.weight": rng.standard_normal(256).astype(np.float32),
        "blk.0.attn_q.weight": rng.standard_normal((256, 256)).astype(np.float32),
        "blk.0.ffn_down.weight": rng.standard_normal((256, 1408)).astype(np.float32),
        "output.weight": rng.standard_normal((64, 256)).astype(np.float32),
    }
    for name, x in weights.items():
        w.add_tensor(name, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = run(ktx_bin, "quantize", src, dst, preset)
    assert r.returncode == 0, r.stderr
    reader = gguf.GGUFReader(str(dst))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32"  # 1-D tensors stay F32
    if preset == "Q8_0":
        assert types["blk.0.attn_q.weight"] == "Q8_0"
    else:
        assert types["blk.0.attn_q.weight"] == "Q4_K"
        assert types["output.weight"] == "Q6_K"
        # 1408 is not a multiple of 256: the K-quant falls back as llama.cpp's does.
        assert types["blk.0.ffn_down.weight"] in ("Q5_0", "Q8_0", "Q6_K")
    for t in reader.tensors:
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(weights[t.name].shape)
        want = weights[t.name]
        rel = np.sqrt(np.mean((got - want) ** 2) / np.mean(want**2))
        assert rel < 0.12, (t.name, t.tensor_type.name, rel)
    # ktx reads its own output identically to gguf-py.
    f = ktx.GGUFFile(str(dst))
    for t in reader.tensors:
        assert f.tensor_info(t.name)["type"] == t.tensor_type.name
        assert np.array_equal(f.raw(t.name), np.asarray(t.data).view(np.uint8).reshape(-1))


def test_quantize_refuses_bad_arguments(tmp_path, ktx_bin):
    r = run(ktx_bin, "quantize", tmp_path / "a.gguf", tmp_path / "b.gguf", "Q9_X")
    assert r.returncode != 0 and "Q9_X" in r.stderr
    r = run(ktx_bin, "quantize", tmp_path / "a.gguf", tmp_path / "a.gguf", "Q8_0")
    assert r.returncode != 0

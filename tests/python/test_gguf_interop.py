"""GGUF interop between ktx and the independent `gguf` package (gguf-py, from llama.cpp).

ktx reads what gguf-py writes and gguf-py reads what ktx writes: metadata, tensor directory and
tensor bytes must agree, and dequantized tensors must match gguf-py's own dequantization. Where
both write the same content in the same order, the files must be byte-identical.

Binding surface used (built separately):
  ktx.GGUFFile(path): .metadata (dict key -> int/float/bool/str/list), .tensor_names(),
    .tensor_info(name) -> dict(name, type, shape [GGUF order], offset, n_bytes),
    .tensor(name) -> float32 ndarray in numpy order, .raw(name) -> uint8 ndarray.
  ktx.write_gguf(path, metadata, tensors): metadata is an ordered dict key -> (type_name, value)
    with type_name one of ktx's value type names ("UINT8" … "FLOAT64", "BOOL", "STRING"), and
    for arrays ("ARRAY", (element_type_name, [items])); tensors is a list of
    (name, type_name, shape in GGUF order, uint8 ndarray of the stored bytes), written in order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
ktx = pytest.importorskip("ktx")

from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf import GGUFValueType as VT  # noqa: E402

ARCH = "deepseek2"
RNG_SEED = 20240601

# (key, value type, value) for every scalar type and an array of each element type; values sit at
# the edges of their types. gguf-py takes arrays as lists plus the element type.
SCALARS = [
    ("ktx.test.uint8", VT.UINT8, 255),
    ("ktx.test.int8", VT.INT8, -128),
    ("ktx.test.uint16", VT.UINT16, 65535),
    ("ktx.test.int16", VT.INT16, -32768),
    ("ktx.test.uint32", VT.UINT32, 4_000_000_000),
    ("ktx.test.int32", VT.INT32, -2_000_000_000),
    ("ktx.test.float32", VT.FLOAT32, 0.1),  # not exact in float32: compared as float32
    ("ktx.test.bool", VT.BOOL, True),
    ("ktx.test.string", VT.STRING, "deepseek2 — ünïcødé"),
    ("ktx.test.uint64", VT.UINT64, 2**64 - 1),
    ("ktx.test.int64", VT.INT64, -(2**63)),
    ("ktx.test.float64", VT.FLOAT64, math.pi),
]
ARRAYS = [
    ("ktx.test.arr.uint8", VT.UINT8, [0, 1, 255]),
    ("ktx.test.arr.int8", VT.INT8, [-128, 0, 127]),
    ("ktx.test.arr.uint16", VT.UINT16, [1, 65535]),
    ("ktx.test.arr.int16", VT.INT16, [-5, 5]),
    ("ktx.test.arr.uint32", VT.UINT32, [7, 8, 4_000_000_000]),
    ("ktx.test.arr.int32", VT.INT32, [-1, 2, -3, 4]),
    ("ktx.test.arr.float32", VT.FLOAT32, [0.25, -8.0, 0.1]),
    ("ktx.test.arr.bool", VT.BOOL, [True, False, True]),
    ("ktx.test.arr.string", VT.STRING, ["<s>", "</s>", "Ġthe", "ü"]),
    ("ktx.test.arr.uint64", VT.UINT64, [2**63, 1]),
    ("ktx.test.arr.int64", VT.INT64, [-1, 2**40]),
    ("ktx.test.arr.float64", VT.FLOAT64, [-0.5, 1e300]),
]

# Byte offsets of the float16 scale fields inside one block, for the types gguf-py cannot
# quantize: random bytes with sane scales there dequantize to finite numbers.
F16_FIELDS = {
    QT.Q2_K: (80, 82),
    QT.Q3_K: (108,),
    QT.Q4_K: (0, 2),
    QT.Q5_K: (0, 2),
    QT.Q6_K: (208,),
    QT.IQ4_NL: (0,),
    QT.IQ4_XS: (0,),
}
QUANTIZABLE = (QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0, QT.BF16)

# (name, type, numpy shape) — DeepSeek-like names, every type a Lite Q4_K_M file mixes and more.
TENSORS = [
    ("token_embd.weight", QT.F32, (3, 40)),
    ("blk.0.attn_norm.weight", QT.F16, (7,)),  # 14 bytes: padding follows
    ("output.weight", QT.BF16, (2, 64)),
    ("blk.0.attn_q.weight", QT.Q4_0, (2, 64)),
    ("blk.0.attn_k.weight", QT.Q4_1, (1, 32)),
    ("blk.0.ffn_gate_exps.weight", QT.Q5_0, (2, 3, 32)),
    ("blk.0.ffn_up_exps.weight", QT.Q5_1, (3, 32)),
    ("blk.0.attn_kv_b.weight", QT.Q8_0, (5, 96)),
    ("blk.1.ffn_gate_exps.weight", QT.Q2_K, (2, 256)),
    ("blk.1.ffn_up_exps.weight", QT.Q3_K, (1, 256)),
    ("blk.1.ffn_down_exps.weight", QT.Q4_K, (2, 2, 512)),
    ("blk.1.ffn_gate_shexp.weight", QT.Q5_K, (1, 256)),
    ("blk.1.ffn_down_shexp.weight", QT.Q6_K, (3, 256)),
    ("blk.1.attn_output.weight", QT.IQ4_NL, (2, 64)),
    ("blk.1.attn_q_b.weight", QT.IQ4_XS, (1, 256)),
]


def stored_bytes(qtype: QT, np_shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """The stored bytes of a tensor of `qtype`, as a uint8 array shaped (rows..., row bytes)."""
    if qtype == QT.F32:
        return rng.standard_normal(np_shape).astype(np.float32).view(np.uint8)
    if qtype == QT.F16:
        return rng.standard_normal(np_shape).astype(np.float16).view(np.uint8)
    if qtype in QUANTIZABLE:
        return gguf.quants.quantize(rng.standard_normal(np_shape).astype(np.float32), qtype)
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    byte_shape = (*np_shape[:-1], np_shape[-1] // block_size * type_size)
    raw = rng.integers(0, 256, size=byte_shape, dtype=np.uint8)
    blocks = raw.reshape(-1, type_size)
    for off in F16_FIELDS[qtype]:
        scales = rng.uniform(0.001, 0.1, size=blocks.shape[0]).astype(np.float16)
        blocks[:, off:off + 2] = scales.view(np.uint8).reshape(-1, 2)
    return raw


def make_tensors():
    rng = np.random.default_rng(RNG_SEED)
    return [(name, qtype, shape, stored_bytes(qtype, shape, rng)) for name, qtype, shape in TENSORS]


def write_with_gguf_py(path, tensors, alignment=None):
    w = gguf.GGUFWriter(str(path), ARCH)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, vtype, value in SCALARS:
        w.add_key_value(key, value, vtype)
    for key, vtype, items in ARRAYS:
        w.add_key_value(key, items, VT.ARRAY, sub_type=vtype)
    for name, qtype, _shape, raw in tensors:
        if qtype == QT.F32:
            w.add_tensor(name, raw.view(np.float32))
        elif qtype == QT.F16:
            w.add_tensor(name, raw.view(np.float16))
        else:
            w.add_tensor(name, raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def ktx_metadata_spec(alignment=None):
    """The metadata write_with_gguf_py writes, in the same order, as ktx.write_gguf takes it."""
    spec = {"general.architecture": ("STRING", ARCH)}
    if alignment is not None:
        spec["general.alignment"] = ("UINT32", alignment)
    for key, vtype, value in SCALARS:
        spec[key] = (vtype.name, value)
    for key, vtype, items in ARRAYS:
        spec[key] = ("ARRAY", (vtype.name, items))
    return spec


def ktx_tensor_spec(tensors):
    return [(name, qtype.name, list(reversed(shape)), raw.reshape(-1)) for name, qtype, shape, raw in tensors]


def gguf_py_metadata(reader) -> dict:
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header
        out[key] = field.contents()
    return out


def assert_value_equal(key, got, expected, vtype):
    if vtype == VT.FLOAT32:
        assert np.float32(got) == np.float32(expected), key
    elif vtype == VT.FLOAT64:
        assert got == expected, key
    elif vtype == VT.BOOL:
        assert got is expected or got == expected, key
        assert isinstance(got, bool), f"{key}: BOOL should come back as bool, not {type(got)}"
    else:
        assert got == expected, key
        if vtype != VT.STRING:
            assert isinstance(got, int) and not isinstance(got, bool), key


def check_metadata(meta: dict, alignment=None):
    assert meta["general.architecture"] == ARCH
    if alignment is not None:
        assert meta["general.alignment"] == alignment
    for key, vtype, value in SCALARS:
        assert_value_equal(key, meta[key], value, vtype)
    for key, vtype, items in ARRAYS:
        got = meta[key]
        assert isinstance(got, list) and len(got) == len(items), key
        for g, e in zip(got, items):
            assert_value_equal(key, g, e, vtype)


def dequantized(qtype: QT, raw: np.ndarray, np_shape) -> np.ndarray:
    if qtype == QT.F32:
        return raw.view(np.float32).reshape(np_shape)
    if qtype == QT.F16:
        return raw.view(np.float16).astype(np.float32).reshape(np_shape)
    return gguf.quants.dequantize(raw, qtype).reshape(np_shape)


@pytest.mark.parametrize("alignment", [None, 64])
def test_ktx_reads_what_gguf_py_writes(tmp_path, alignment):
    tensors = make_tensors()
    path = tmp_path / "from_gguf_py.gguf"
    write_with_gguf_py(path, tensors, alignment)

    f = ktx.GGUFFile(str(path))
    check_metadata(f.metadata, alignment)
    reference = gguf.GGUFReader(str(path))
    assert set(f.metadata) == set(gguf_py_metadata(reference))
    assert list(f.metadata) == list(gguf_py_metadata(reference))  # file order

    assert list(f.tensor_names()) == [t[0] for t in tensors]
    ref_tensors = {t.name: t for t in reference.tensors}
    for name, qtype, shape, raw in tensors:
        info = f.tensor_info(name)
        ref = ref_tensors[name]
        assert info["name"] == name
        assert info["type"] == qtype.name
        assert list(info["shape"]) == list(reversed(shape)) == [int(d) for d in ref.shape]
        assert info["n_bytes"] == raw.nbytes == ref.n_bytes
        assert info["offset"] % (alignment or 32) == 0
        assert info["offset"] == ref.data_offset - reference.data_offset
        got_raw = f.raw(name)
        assert got_raw.dtype == np.uint8
        assert np.array_equal(got_raw.reshape(-1), raw.reshape(-1))
        values = f.tensor(name)
        assert values.dtype == np.float32
        assert values.shape == shape
        expected = dequantized(qtype, raw, shape)
        assert np.all(np.isfinite(expected)), name
        np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("alignment", [None, 64])
def test_gguf_py_reads_what_ktx_writes(tmp_path, alignment):
    tensors = make_tensors()
    path = tmp_path / "from_ktx.gguf"
    ktx.write_gguf(str(path), ktx_metadata_spec(alignment), ktx_tensor_spec(tensors))

    reader = gguf.GGUFReader(str(path))
    assert reader.alignment == (alignment or 32)
    meta = gguf_py_metadata(reader)
    check_metadata(meta, alignment)
    # Stored types are the ones asked for, not widened or narrowed.
    for key, vtype, _ in SCALARS:
        assert reader.fields[key].types == [vtype], key
    for key, vtype, _ in ARRAYS:
        assert reader.fields[key].types == [VT.ARRAY, vtype], key

    assert [t.name for t in reader.tensors] == [t[0] for t in tensors]
    for (name, qtype, shape, raw), ref in zip(tensors, reader.tensors):
        assert ref.tensor_type == qtype, name
        assert [int(d) for d in ref.shape] == list(reversed(shape)), name
        assert ref.n_bytes == raw.nbytes, name
        assert ref.data_offset % (alignment or 32) == 0, name
        assert np.array_equal(np.asarray(ref.data).view(np.uint8).reshape(-1), raw.reshape(-1)), name


@pytest.mark.parametrize("alignment", [None, 64])
def test_same_content_same_bytes(tmp_path, alignment):
    """gguf-py and ktx lay a file out identically: header, keys, infos, aligned zero-padded data."""
    tensors = make_tensors()
    a = tmp_path / "gguf_py.gguf"
    b = tmp_path / "ktx.gguf"
    write_with_gguf_py(a, tensors, alignment)
    ktx.write_gguf(str(b), ktx_metadata_spec(alignment), ktx_tensor_spec(tensors))
    assert a.read_bytes() == b.read_bytes()


def test_round_trip_through_both(tmp_path):
    """gguf-py -> ktx (read, write back) -> gguf-py reads the same file again."""
    tensors = make_tensors()
    src = tmp_path / "src.gguf"
    write_with_gguf_py(src, tensors)
    f = ktx.GGUFFile(str(src))
    spec = ktx_metadata_spec()
    assert list(f.metadata) == list(spec)
    names = f.tensor_names()
    again = [(n, f.tensor_info(n)["type"], list(f.tensor_info(n)["shape"]), f.raw(n).reshape(-1))
             for n in names]
    dst = tmp_path / "dst.gguf"
    ktx.write_gguf(str(dst), spec, again)
    assert dst.read_bytes() == src.read_bytes()

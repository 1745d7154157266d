"""The Python module's own contract: errors, views, shapes, writing."""

import numpy as np
import pytest

import ktx


def test_error_carries_code_and_path(tmp_path):
    missing = tmp_path / "missing.gguf"
    with pytest.raises(ktx.Error) as info:
        ktx.GGUFFile(str(missing))
    assert str(missing) in str(info.value)
    assert info.value.code == 3  # ErrorCode::kIo
    assert isinstance(info.value, RuntimeError)


def test_write_read_round_trip(tmp_path, rng):
    x = rng.standard_normal((3, 64)).astype(np.float32)
    q = ktx.quantize(x.reshape(-1), "Q8_0")
    path = tmp_path / "t.gguf"
    ktx.write_gguf(
        str(path),
        {
            "general.architecture": ("STRING", "test"),
            "test.u16": ("UINT16", 65535),
            "test.big": ("UINT64", 2**64 - 1),
            "test.floats": ("ARRAY[FLOAT32]", [0.5, -1.25]),
            "test.words": ("ARRAY[STRING]", ["a", "β", ""]),
        },
        [("x", "F32", [64, 3], x.view(np.uint8).reshape(-1)), ("q", "Q8_0", [64, 3], q)],
    )
    f = ktx.GGUFFile(str(path))
    assert f.metadata["test.u16"] == 65535
    assert f.metadata["test.big"] == 2**64 - 1
    assert f.metadata["test.floats"] == [0.5, -1.25]
    assert f.metadata["test.words"] == ["a", "β", ""]
    assert f.metadata_types["test.u16"] == "UINT16"
    assert f.metadata_types["test.words"] == "ARRAY[STRING]"
    assert f.tensor_names() == ["x", "q"]
    assert f.tensor_info("q")["shape"] == [64, 3]
    np.testing.assert_array_equal(f.tensor("x"), x)  # numpy order: GGUF shape reversed
    want = ktx.dequantize(q, "Q8_0", x.size).reshape(3, 64)
    np.testing.assert_array_equal(f.tensor("q"), want)
    raw = f.raw("q")
    assert raw.dtype == np.uint8 and not raw.flags.writeable
    np.testing.assert_array_equal(raw, q)
    for method in (f.tensor_info, f.raw, f.tensor):  # the file is fine; the name is not
        with pytest.raises(ktx.NotFoundError, match="no tensor named 'bogus'"):
            method("bogus")
    del f  # the view keeps the mapping alive
    assert int(raw.sum()) == int(q.sum())


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ktx.Error, match="Q9_X"):
        ktx.quantize(np.zeros(32, np.float32), "Q9_X")
    with pytest.raises(ktx.Error, match="multiple"):
        ktx.quantize(np.zeros(33, np.float32), "Q8_0")
    with pytest.raises(ktx.Error, match="bytes"):
        ktx.dequantize(np.zeros(10, np.uint8), "Q8_0", 32)
    with pytest.raises(ktx.Error):
        ktx.write_gguf(str(tmp_path / "x.gguf"), {}, [("t", "Q8_0", [33], np.zeros(34, np.uint8))])
    assert not (tmp_path / "x.gguf").exists()


def test_type_tables():
    assert ktx.type_size("Q4_K") == (256, 144)
    assert ktx.vec_dot_type("Q4_K") == "Q8_K"
    assert ktx.vec_dot_type("Q4_1") == "Q8_1"
    assert ktx.vec_dot_type("IQ4_NL") == "Q8_0"

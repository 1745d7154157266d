"""ktx's reference block formats against the gguf package, bit for bit.

Dequantization of every type ktx implements must equal gguf.quants.dequantize exactly (Q8_1 and
Q8_K, which gguf lacks, against the numpy formula d * q). Quantization to BF16, F16, Q4_0, Q4_1,
Q5_0, Q5_1 and Q8_0 must produce the same bytes as gguf.quants.quantize. Inputs are fresh random
valid blocks each run (the `rng` fixture prints its seed), in rows of 1, 3 and 7 blocks.
"""

import numpy as np
import pytest
from gguf import quants as gguf_quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

import ktx

DEQUANT_TYPES = [
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ4_NL", "IQ4_XS",
]  # fmt: skip
GGUF_QUANTIZE_TYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
BLOCK_COUNTS = [1, 3, 7]

# Byte offsets, inside one block, of the f16 fields (scales, minimums, Q8_1's s), as ggml lays
# them out; everything else in a block is free bits.
HALF_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0, 2],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0],
}  # fmt: skip
# The fields that scale separate terms of the dequantized value (d and m, d and dmin).
SCALE_FIELDS = {**HALF_FIELDS, "Q8_1": [0]}


def sizes(type_name):
    """(block_size, bytes per block). gguf's table gives Q8_1 40 bytes (f32 d and s, an old
    layout); ggml's block_q8_1, which ktx follows, has f16 d and s: 36 bytes."""
    if type_name == "Q8_1":
        return 32, 36
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
    return block_size, type_size


def finite_halves(rng, count):
    """Random f16 bit patterns, any finite value: subnormals, ±0 and 65504 included."""
    h = rng.integers(0, 1 << 16, size=count, dtype=np.uint32).astype(np.uint16)
    while True:
        bad = (h & 0x7C00) == 0x7C00
        if not bad.any():
            return h
        h[bad] = rng.integers(0, 1 << 16, size=int(bad.sum()), dtype=np.uint32).astype(np.uint16)


def finite_bits(rng, count, exp_mask, exp_all_ones, dtype):
    """Random bit patterns of a float type, redrawn while the exponent is all ones (inf, NaN)."""
    bits = np.iinfo(dtype).max + 1
    h = rng.integers(0, bits, size=count, dtype=np.uint64).astype(dtype)
    while True:
        bad = (h & exp_mask) == exp_all_ones
        if not bad.any():
            return h
        h[bad] = rng.integers(0, bits, size=int(bad.sum()), dtype=np.uint64).astype(dtype)


def random_row(rng, type_name, n):
    """n elements of random valid `type_name` data, as a uint8 array."""
    if type_name == "F32":
        return finite_bits(rng, n, 0x7F800000, 0x7F800000, np.uint32).view(np.uint8)
    if type_name == "F16":
        return finite_halves(rng, n).view(np.uint8)
    if type_name == "BF16":
        return finite_bits(rng, n, 0x7F80, 0x7F80, np.uint16).view(np.uint8)
    block_size, type_size = sizes(type_name)
    blocks = rng.integers(0, 256, size=(n // block_size, type_size), dtype=np.uint8)
    if type_name == "Q8_K":
        # f32 d with a moderate exponent (2^-63 .. 2^63: d * 127 stays finite), bsums = Σ qs.
        exponent = rng.integers(64, 191, size=len(blocks), dtype=np.uint32)
        mantissa = rng.integers(0, 1 << 23, size=len(blocks), dtype=np.uint32)
        sign = rng.integers(0, 2, size=len(blocks), dtype=np.uint32)
        d = (sign << 31) | (exponent << 23) | mantissa
        blocks[:, 0:4] = d.view(np.uint8).reshape(-1, 4)
        qs = blocks[:, 4:260].view(np.int8).astype(np.int16)
        bsums = qs.reshape(-1, 16, 16).sum(axis=-1).astype(np.int16)
        blocks[:, 260:292] = bsums.view(np.uint8).reshape(-1, 32)
        return blocks.reshape(-1)
    for offset in HALF_FIELDS[type_name]:
        blocks[:, offset : offset + 2] = finite_halves(rng, len(blocks)).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(-1)


def reference_dequantize(data, type_name, n):
    """gguf's dequantize, or d * q for the two activation types gguf does not implement."""
    if type_name == "Q8_1":
        blocks = data.reshape(-1, 36)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        return (d * blocks[:, 4:36].view(np.int8).astype(np.float32)).reshape(-1)
    if type_name == "Q8_K":
        blocks = data.reshape(-1, 292)
        d = blocks[:, 0:4].copy().view(np.float32)
        return (d * blocks[:, 4:260].view(np.int8).astype(np.float32)).reshape(-1)
    out = gguf_quants.dequantize(data, GGMLQuantizationType[type_name])
    return np.asarray(out, dtype=np.float32).reshape(-1)


def assert_bits_equal(got, want, what):
    got = np.asarray(got, dtype=np.float32)
    want = np.asarray(want, dtype=np.float32)
    assert got.shape == want.shape, what
    diff = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    if diff.size:
        i = int(diff[0])
        pytest.fail(f"{what}: {diff.size} elements differ, first at {i}: ktx {got[i]!r} "
                    f"({got.view(np.uint32)[i]:#010x}) vs reference {want[i]!r} "
                    f"({want.view(np.uint32)[i]:#010x})")


def activations(rng, n):
    """f32 rows with a different magnitude per 32 elements, as real activations have."""
    scale = np.exp2(rng.integers(-8, 9, size=(n + 31) // 32)).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32) * np.repeat(scale, 32)[:n]
    return x.astype(np.float32)


@pytest.mark.parametrize("type_name", DEQUANT_TYPES)
@pytest.mark.parametrize("blocks", BLOCK_COUNTS)
def test_dequantize_is_bit_exact(rng, type_name, blocks):
    block_size, _ = sizes(type_name)
    n = blocks * max(block_size, 32)  # float types: 32, 96, 224 elements
    data = random_row(rng, type_name, n)
    got = ktx.dequantize(data, type_name, n)
    assert got.dtype == np.float32 and got.shape == (n,)
    assert_bits_equal(got, reference_dequantize(data, type_name, n), f"{type_name} n={n}")


@pytest.mark.parametrize("type_name", GGUF_QUANTIZE_TYPES)
@pytest.mark.parametrize("blocks", BLOCK_COUNTS)
def test_quantize_bytes_match_gguf(rng, type_name, blocks):
    block_size, _ = sizes(type_name)
    n = blocks * max(block_size, 32)
    x = activations(rng, n)
    # One block of half-integers up to ±127 puts exact ties in front of the rounding (Q8_0's
    # d = 1 then), and one all-zero block takes the zero-scale path.
    if blocks >= 3:
        x[32:64] = rng.integers(-254, 255, size=32).astype(np.float32) / 2
        x[32] = 127.0
        x[64:96] = 0.0
    got = ktx.quantize(x, type_name)
    if type_name == "F16":
        want = x.astype(np.float16).view(np.uint8)
    else:
        want = gguf_quants.quantize(x, GGMLQuantizationType[type_name]).reshape(-1)
    assert got.dtype == np.uint8
    assert got.shape == want.shape
    diff = np.flatnonzero(got != want)
    assert diff.size == 0, f"{type_name}: {diff.size} bytes differ, first at byte {diff[0]}"


@pytest.mark.parametrize("type_name", ["Q8_1", "Q8_K", "IQ4_NL"])
def test_quantize_round_trips_through_the_reference_dequantizer(rng, type_name):
    """The types gguf cannot quantize: at least their bytes decode (with gguf where it can) to
    values near the input: within half a step for Q8_1 / Q8_K, a fifth of the block's absmax for
    the non-linear IQ4_NL."""
    block_size, _ = sizes(type_name)
    n = 3 * block_size
    x = activations(rng, n)
    data = ktx.quantize(x, type_name)
    y = reference_dequantize(data, type_name, n)
    amax = np.repeat(np.abs(x).reshape(-1, block_size).max(axis=1), block_size)
    if type_name == "IQ4_NL":
        bound = 0.2 * amax
    else:
        bound = amax / 127 * (0.5 + 127 / 2048) + 1e-6 * amax
    assert np.all(np.abs(x - y) <= bound)


@pytest.mark.parametrize("type_name", [
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS",
])  # fmt: skip
def test_vec_dot_matches_double_dot_of_gguf_dequantized_rows(rng, type_name):
    """vec_dot against Σ x_i y_i in double, x dequantized by gguf. The tolerance is relative to
    Σ_terms Σ_i |term_i y_i|, each term being x with the other scale fields zeroed (d·q and m for
    Q4_1, the scale and minimum parts of the K-quants), because vec_dot rounds each of them
    separately; plus, for Q8_1 activations, the f16 rounding of their s = d·Σq."""
    y_type = ktx.vec_dot_type(type_name)
    block_size, type_size = sizes(type_name)
    blocks = 7
    n = blocks * max(block_size, 32)
    x = random_row(rng, type_name, n)
    if type_name in HALF_FIELDS:  # moderate scales, so no block is negligible beside the others
        view = x.reshape(-1, type_size)
        for offset in HALF_FIELDS[type_name]:
            d = rng.uniform(0.5, 1, len(view)) * np.exp2(rng.integers(-9, 1, len(view)))
            d *= rng.choice([-1.0, 1.0], len(view))
            view[:, offset : offset + 2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    elif type_name in ("F16", "BF16", "F32"):
        x = ktx.quantize(activations(rng, n), type_name)
    y = ktx.quantize(activations(rng, n), y_type)
    xf = reference_dequantize(x, type_name, n).astype(np.float64)
    yf = reference_dequantize(y, y_type, n).astype(np.float64)
    exact = float(np.dot(xf, yf))

    terms = [xf]
    fields = SCALE_FIELDS.get(type_name, [])
    if len(fields) > 1:
        terms = []
        for keep in fields:
            only = x.copy().reshape(-1, type_size)
            for f in fields:
                if f != keep:
                    only[:, f : f + 2] = 0
            terms.append(reference_dequantize(only.reshape(-1), type_name, n).astype(np.float64))
    mag = sum(float(np.abs(t * yf).sum()) for t in terms)
    tol = 4 * (blocks + 4) * np.finfo(np.float32).eps * mag
    if y_type == "Q8_1":
        m = terms[1].reshape(-1, 32)[:, 0]
        tol += float(np.abs(m * yf.reshape(-1, 32).sum(axis=1)).sum()) * 4 / 2048

    got = ktx.vec_dot(type_name, x, y, n)
    assert abs(got - exact) <= tol, f"vec_dot {got} vs exact {exact}, tolerance {tol}"


def test_unsupported_and_bad_lengths_are_refused():
    with pytest.raises(ktx.Error) as info:
        ktx.dequantize(np.zeros(66, np.uint8), "IQ2_XXS", 256)
    assert "IQ2_XXS" in str(info.value)
    with pytest.raises(ktx.Error) as info:
        ktx.quantize(np.zeros(48, np.float32), "Q4_K")
    assert "Q4_K" in str(info.value) and "48" in str(info.value)

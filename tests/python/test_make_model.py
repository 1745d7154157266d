"""`ktx make-model` as a user runs it, its files read back by the gguf package (an independent
reader): tensor names, shapes and types as llama.cpp names them, keys, value scales, determinism
and the refusals."""

import subprocess

import gguf
import numpy as np
import pytest

T = gguf.GGMLQuantizationType


def run(ktx_bin, *args):
    return subprocess.run([str(ktx_bin), "make-model", *map(str, args)],
                          capture_output=True, text=True)


def make(ktx_bin, path, *args):
    r = run(ktx_bin, path, *args)
    assert r.returncode == 0, r.stderr
    assert f"wrote {path}" in r.stdout
    return gguf.GGUFReader(str(path))


def field(reader, key):
    return reader.fields[key].contents()


def tensors(reader):
    return {t.name: t for t in reader.tensors}


# A V2-Lite-shaped model, narrowed: no q compression, attn_kv_b, 1 dense layer, shared experts
# (16 experts: with 8, llama.cpp treats the model as Mixtral and changes the mix).
DEEPSEEK2 = ["--model", "deepseek-v2-lite", "--layers", "3", "--hidden", "256", "--heads", "4",
             "--kv-lora-rank", "64", "--qk-nope", "32", "--qk-rope", "16", "--v-head", "32",
             "--experts", "16", "--experts-used", "2", "--expert-ff", "96", "--ff", "352",
             "--vocab", "512"]


def deepseek2_names(n_layer, dense_lead):
    names = ["token_embd.weight"]
    for i in range(n_layer):
        b = f"blk.{i}."
        names += [b + n for n in ("attn_norm.weight", "attn_q.weight", "attn_kv_a_mqa.weight",
                                  "attn_kv_a_norm.weight", "attn_kv_b.weight",
                                  "attn_output.weight", "ffn_norm.weight")]
        if i < dense_lead:
            names += [b + "ffn_gate.weight", b + "ffn_up.weight", b + "ffn_down.weight"]
        else:
            names += [b + n for n in ("ffn_gate_inp.weight", "ffn_gate_exps.weight",
                                      "ffn_up_exps.weight", "ffn_down_exps.weight",
                                      "ffn_gate_shexp.weight", "ffn_up_shexp.weight",
                                      "ffn_down_shexp.weight")]
    return names + ["output_norm.weight", "output.weight"]


def test_deepseek2_q4_k_m(tmp_path, ktx_bin):
    r = make(ktx_bin, tmp_path / "ds.gguf", *DEEPSEEK2, "--preset", "Q4_K_M", "--seed", "7")
    assert field(r, "general.architecture") == "deepseek2"
    assert field(r, "general.file_type") == 15
    for key, value in {"block_count": 3, "embedding_length": 256, "attention.head_count": 4,
                       "attention.head_count_kv": 4, "attention.kv_lora_rank": 64,
                       "attention.key_length": 48, "attention.value_length": 32,
                       "rope.dimension_count": 16, "expert_count": 16, "expert_used_count": 2,
                       "expert_shared_count": 2, "expert_feed_forward_length": 96,
                       "feed_forward_length": 352, "leading_dense_block_count": 1,
                       "expert_gating_func": 1, "rope.scaling.type": "yarn",
                       "rope.scaling.factor": 40.0, "vocab_size": 512}.items():
        assert field(r, "deepseek2." + key) == pytest.approx(value), key
    assert "deepseek2.attention.q_lora_rank" not in r.fields
    # No vocabulary, said the way llama.cpp reads it; nothing else of a tokenizer.
    assert field(r, "tokenizer.ggml.model") == "none"
    assert [k for k in r.fields if k.startswith("tokenizer.")] == ["tokenizer.ggml.model"]

    ts = tensors(r)
    assert [t.name for t in r.tensors] == deepseek2_names(3, 1)
    shapes = {"token_embd.weight": [256, 512], "blk.0.attn_q.weight": [256, 4 * 48],
              "blk.0.attn_kv_a_mqa.weight": [256, 64 + 16], "blk.0.attn_kv_a_norm.weight": [64],
              "blk.0.attn_kv_b.weight": [64, 4 * (32 + 32)],
              "blk.0.attn_output.weight": [4 * 32, 256], "blk.0.ffn_down.weight": [352, 256],
              "blk.1.ffn_gate_inp.weight": [256, 16], "blk.1.ffn_gate_exps.weight": [256, 96, 16],
              "blk.1.ffn_down_exps.weight": [96, 256, 16],
              "blk.2.ffn_up_shexp.weight": [256, 2 * 96], "output.weight": [256, 512]}
    for name, shape in shapes.items():
        assert [int(d) for d in ts[name].shape] == shape, name

    # llama-quantize's Q4_K_M: F32 norms and router, Q6_K output, Q4_K elsewhere with Q6_K for
    # the "more bits" layers and llama.cpp's substitutes where a row is not 256 wide.
    for name, t in ts.items():
        if name.endswith("norm.weight") or "ffn_gate_inp" in name:
            assert t.tensor_type == T.F32, name
        else:
            assert t.tensor_type in (T.Q4_K, T.Q5_0, T.Q6_K, T.Q8_0), name
    assert ts["token_embd.weight"].tensor_type == T.Q4_K
    assert ts["output.weight"].tensor_type == T.Q6_K
    assert ts["blk.1.ffn_gate_exps.weight"].tensor_type == T.Q4_K
    assert ts["blk.1.ffn_down_exps.weight"].tensor_type in (T.Q5_0, T.Q8_0)  # row 96
    assert ts["blk.0.attn_kv_b.weight"].tensor_type in (T.Q5_0, T.Q8_0)  # row 64

    # Values: matrices of std 1/sqrt(row), norms near 1, all finite.
    for name in ("blk.0.attn_q.weight", "blk.1.ffn_gate_exps.weight",
                 "blk.2.ffn_down_exps.weight", "blk.1.ffn_gate_inp.weight"):
        t = ts[name]
        v = gguf.quants.dequantize(t.data, t.tensor_type)
        assert np.isfinite(v).all()
        assert v.std() == pytest.approx(1 / np.sqrt(int(t.shape[0])), rel=0.08), name
        assert abs(v.mean()) < 0.05 * v.std()
    norm = ts["blk.2.ffn_norm.weight"].data
    assert ((norm >= 0.75) & (norm < 1.25)).all()


def test_deepseek2_v3_flavour(tmp_path, ktx_bin):
    r = make(ktx_bin, tmp_path / "v3.gguf", "--model", "tiny-deepseek-v3", "--type", "Q8_0")
    ts = tensors(r)
    assert field(r, "deepseek2.expert_gating_func") == 2
    assert field(r, "deepseek2.expert_weights_norm") is True
    assert field(r, "deepseek2.expert_group_count") == 4
    assert field(r, "deepseek2.attention.key_length_mla") == 24
    assert [int(d) for d in ts["blk.3.attn_k_b.weight"].shape] == [16, 32, 4]
    assert [int(d) for d in ts["blk.3.attn_v_b.weight"].shape] == [32, 16, 4]
    assert [int(d) for d in ts["blk.3.exp_probs_b.bias"].shape] == [16]
    assert "blk.3.attn_kv_b.weight" not in ts
    assert ts["blk.3.attn_q_a.weight"].tensor_type == T.Q8_0
    assert ts["blk.3.attn_q_b.weight"].tensor_type == T.F16  # row 48: no 32-block fits
    assert ts["blk.3.attn_k_b.weight"].tensor_type == T.F16  # row 16


def test_llama(tmp_path, ktx_bin):
    r = make(ktx_bin, tmp_path / "llama.gguf", "--arch", "llama", "--layers", "2", "--hidden",
             "128", "--heads", "4", "--kv-heads", "2", "--ff", "256", "--vocab", "300",
             "--type", "Q8_0", "--embd-type", "F16")
    assert field(r, "general.architecture") == "llama"
    assert field(r, "general.file_type") == 7
    assert field(r, "llama.attention.head_count_kv") == 2
    assert field(r, "llama.rope.dimension_count") == 32
    names = ["token_embd.weight"]
    for i in range(2):
        names += [f"blk.{i}.{n}.weight" for n in ("attn_norm", "attn_q", "attn_k", "attn_v",
                                                  "attn_output", "ffn_norm", "ffn_gate",
                                                  "ffn_up", "ffn_down")]
    names += ["output_norm.weight", "output.weight"]
    assert [t.name for t in r.tensors] == names
    ts = tensors(r)
    assert [int(d) for d in ts["blk.1.attn_k.weight"].shape] == [128, 64]
    assert [int(d) for d in ts["blk.1.ffn_down.weight"].shape] == [256, 128]
    assert ts["token_embd.weight"].tensor_type == T.F16
    assert ts["blk.0.attn_q.weight"].tensor_type == T.Q8_0
    assert ts["output.weight"].tensor_type == T.Q8_0
    assert ts["blk.0.attn_norm.weight"].tensor_type == T.F32

    tied = make(ktx_bin, tmp_path / "tied.gguf", "--model", "llama", "--layers", "1",
                "--hidden", "128", "--heads", "4", "--kv-heads", "2", "--ff", "256", "--vocab",
                "300", "--preset", "Q8_0")
    ts = tensors(tied)
    assert "output.weight" not in ts
    assert [int(d) for d in ts["rope_freqs.weight"].shape] == [16]
    assert field(tied, "llama.rope.freq_base") == pytest.approx(500000.0)


def test_same_seed_same_bytes(tmp_path, ktx_bin):
    args = [*DEEPSEEK2, "--layers", "2", "--type", "Q4_K"]
    make(ktx_bin, tmp_path / "a.gguf", *args, "--threads", "1")
    make(ktx_bin, tmp_path / "b.gguf", *args, "--threads", "2")
    make(ktx_bin, tmp_path / "c.gguf", *args, "--seed", "2")
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.gguf", "b.gguf", "c.gguf"))
    assert a == b
    assert a != c and len(a) == len(c)


def test_vocab_from_copies_the_tokenizer(tmp_path, ktx_bin):
    donor = tmp_path / "donor.gguf"
    w = gguf.GGUFWriter(str(donor), arch="llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(77)])
    w.add_bos_token_id(3)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = make(ktx_bin, tmp_path / "m.gguf", "--vocab-from", donor)
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert field(r, "tokenizer.ggml.tokens") == [f"tok{i}" for i in range(77)]
    assert field(r, "tokenizer.ggml.bos_token_id") == 3
    assert [int(d) for d in tensors(r)["token_embd.weight"].shape] == [64, 77]


def test_help_dry_run_and_refusals(tmp_path, ktx_bin):
    h = run(ktx_bin, "--help")
    assert h.returncode == 0
    for name in ("tiny-deepseek2", "deepseek-v2-lite", "deepseek-v2", "deepseek-v3", "llama",
                 "--layers", "--preset", "--type", "--seed"):
        assert name in h.stdout

    out = tmp_path / "none.gguf"
    d = run(ktx_bin, out, "--model", "deepseek-v2-lite", "--layers", "8", "--preset", "Q4_K_M",
            "--dry-run")
    assert d.returncode == 0, d.stderr
    assert "111 tensors" in d.stdout and "nothing written" in d.stdout
    for t in ("Q4_K", "Q5_0", "Q6_K", "Q8_0", "F32"):
        assert f" {t} " in d.stdout
    assert not out.exists()

    cases = [
        (["--experts-used", "9"], ["n_expert_used is 9", "n_expert (8)"]),
        (["--arch", "llama", "--hidden", "100", "--heads", "3", "--kv-heads", "1"],
         ["not divisible by n_head 3"]),
        (["--model", "deepseek-v4"], ["'deepseek-v4'", "deepseek-v2-lite"]),
        (["--type", "Q9_K"], ["--type Q9_K", "Q4_K"]),
        (["--preset", "Q4_K_X"], ["Q4_K_X", "Q4_K_M"]),
        (["--type", "Q8_0", "--preset", "Q8_0"], ["not both"]),
        (["--layers", "zero"], ["--layers"]),
    ]
    for args, parts in cases:
        r = run(ktx_bin, out, *args)
        assert r.returncode == 2, (args, r.stderr)
        for part in parts:
            assert part in r.stderr, (args, r.stderr)
        assert not out.exists()


def test_options_of_the_other_architecture_are_refused(tmp_path, ktx_bin):
    out = tmp_path / "m.gguf"
    for args, words in ((["--arch", "llama", "--q-lora-rank", "8"], "--q-lora-rank shapes DeepSeek"),
                        (["--arch", "llama", "--kv-b", "split"], "--kv-b shapes DeepSeek"),
                        (["--kv-heads", "2"], "--kv-heads shapes llama"),
                        (["--groups", "0", "--groups-used", "2"], "--groups-used needs --groups"),
                        (["--layers", "2147483648"], "from 1 to 2147483647")):
        r = run(ktx_bin, out, *args, "--dry-run")
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
    assert not out.exists()


def test_an_interrupted_write_leaves_nothing_behind(tmp_path, ktx_bin):
    import signal
    import subprocess
    import time

    # ~300 MB: about a second of writing through OUT.tmp.PID.N, which Ctrl-C must remove.
    out = tmp_path / "big.gguf"
    p = subprocess.Popen([str(ktx_bin), "make-model", str(out), "--hidden", "1024", "--expert-ff",
                          "512", "--experts", "32", "--layers", "4", "--type", "F16"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while p.poll() is None and not list(tmp_path.glob("big.gguf.tmp.*")):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    if p.poll() is not None:
        pytest.skip("the write finished before it could be interrupted")
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=60) == -signal.SIGINT  # killed by the signal, as without the handler
    assert list(tmp_path.iterdir()) == []


def test_an_ignored_signal_stays_ignored(tmp_path, ktx_bin):
    import signal
    import subprocess

    # As under nohup, or a background job of a script: the signal must not stop the write.
    out = tmp_path / "m.gguf"
    p = subprocess.Popen([str(ktx_bin), "make-model", str(out), "--layers", "2"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.exists() and list(tmp_path.glob("*.tmp.*")) == []

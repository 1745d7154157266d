"""The ktx package over the C ABI: loading, errors, progress and cancel, metadata, plan, backends,
the tokenizer, and whole-model logits against the independent NumPy reference's goldens.

Runs against the module in the build tree (ctest) and against the package `pip install .` put
in a scratch environment (scripts/test.sh sets KTX_EXPECT_INSTALLED=1 there).
"""

import json
import os
import pathlib
import signal

import numpy as np
import pytest

import ktx

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
MODELS = {m["name"]: m for m in MANIFEST["models"]}


def load(name, **kwargs):
    kwargs.setdefault("progress", False)
    return ktx.Model(GOLDEN / MODELS[name]["model"], **kwargs)


# --- the package itself ---------------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("KTX_EXPECT_INSTALLED") != "1",
                    reason="checks the installed wheel's layout (scripts/test.sh)")
def test_the_installed_package_carries_its_libraries():
    package = pathlib.Path(ktx.__file__).resolve().parent
    assert not str(package).startswith(str(ROOT)), f"imported {package}, not the installed one"
    assert (package / "libktx.so.0").is_file()
    assert (package / "py.typed").is_file() and (package / "_ktx.pyi").is_file()
    # libktx finds the reference backend in its own folder, with no path given.
    ref = [b for b in ktx.backends() if b["name"] == "ref"]
    assert ref and pathlib.Path(ref[0]["path"]).resolve().parent == package / "backends"


def test_versions():
    assert ktx.__version__.count(".") == 2
    major, minor = ktx.abi_version()
    assert major == 0 and minor >= 2


# --- errors -------------------------------------------------------------------------------------

def test_a_missing_model_names_its_path(tmp_path):
    missing = tmp_path / "missing.gguf"
    with pytest.raises(ktx.IoError) as info:
        ktx.Model(missing, progress=False)
    e = info.value
    assert str(missing) in str(e)
    assert e.code == 3 and e.code_name == "KTX_STATUS_IO_ERROR"
    assert isinstance(e, ktx.Error) and isinstance(e, OSError) and isinstance(e, RuntimeError)


def test_a_malformed_model_names_its_path(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 12)
    with pytest.raises(ktx.InvalidFileError, match=str(bad)) as info:
        ktx.Model(bad, progress=False)
    assert info.value.code == 2


def test_a_bad_rule_file_names_the_file_and_line(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("- match:\n    kind: experts\n  replace:\n    op: cpu.no_such_operator\n"
                     "    device: cpu\n")
    with pytest.raises(ktx.InvalidFileError) as info:
        load("ds2_lite", rules=rules)
    assert f"{rules}:" in str(info.value), str(info.value)
    assert "no_such_operator" in str(info.value)
    with pytest.raises(ktx.IoError, match=str(tmp_path / "absent.yaml")):
        load("ds2_lite", rules=tmp_path / "absent.yaml")


def test_argument_errors_are_value_errors():
    model = load("ds2_lite")
    with pytest.raises(ktx.InvalidArgumentError, match="threads"):
        load("ds2_lite", threads=-1)
    with pytest.raises(ValueError):
        model.session(n_ctx=-5)
    with pytest.raises(TypeError):
        load("ds2_lite", progress="yes")
    with pytest.raises(ktx.InvalidArgumentError, match="4096"):
        load("ds2_lite", threads=10**6)  # refused, not a million threads started
    with pytest.raises(ktx.InvalidArgumentError, match="empty"):
        ktx.Model("", progress=False)


# --- progress and cancel ------------------------------------------------------------------------

def test_progress_is_reported_from_0_to_1():
    seen = []
    load("ds2_lite_q8_0", prefault=True, progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)


@pytest.mark.parametrize("stop_at", [0.0, 1.0])
def test_a_progress_callback_returning_false_cancels(stop_at):
    path = GOLDEN / MODELS["ds2_lite"]["model"]
    with pytest.raises(ktx.CancelledError, match=str(path)) as info:
        ktx.Model(path, progress=lambda f: f < stop_at)
    assert info.value.code == 7
    assert str(info.value).startswith("ktx_model_load: ")  # the C function that failed


def test_only_false_cancels():
    # A counter's 0, a bar's None and anything else that is not False go on.
    for answer in (0, None, "", [], 1, np.True_):
        ktx.Model(GOLDEN / MODELS["ds2_lite"]["model"], progress=lambda f, a=answer: a)
    with pytest.raises(ktx.CancelledError):  # numpy's False is False
        ktx.Model(GOLDEN / MODELS["ds2_lite"]["model"], progress=lambda f: np.False_)


def test_ctrl_c_while_loading_cancels_the_load():
    def interrupt(fraction):
        signal.raise_signal(signal.SIGINT)  # what Ctrl-C does

    # Python's own handler even where the test runner started with SIGINT ignored (a background
    # job): that is what turns the signal into KeyboardInterrupt.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            load("ds2_lite", progress=interrupt)
    finally:
        signal.signal(signal.SIGINT, previous)
    calls = []

    def fail(fraction):
        calls.append(fraction)
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        load("ds2_lite", progress=fail)
    assert calls == [0.0]  # the load stopped at the first report
    assert load("ds2_lite").n_vocab == 64  # nothing was left half-loaded


def test_the_text_bar():
    import io

    from ktx._progress import TextBar

    out = io.StringIO()
    bar = TextBar("loading m.gguf", stream=out, width=10)
    for f in (0.0, 0.001, 0.5, 1.0):
        bar(f)
    bar.close()
    lines = out.getvalue().split("\r")
    assert lines[1] == "loading m.gguf  [..........]   0%"
    assert lines[2] == "loading m.gguf  [#####.....]  50%"
    assert lines[3] == "loading m.gguf  [##########] 100%\n"


# --- what a model is ----------------------------------------------------------------------------

def test_info_and_metadata():
    m = MODELS["ds2_v3"]["variant"]
    model = load("ds2_v3")
    assert model.arch == "deepseek2"
    assert (model.n_layer, model.n_embd, model.n_vocab, model.n_head) == (
        m["n_layer"], m["n_embd"], m["n_vocab"], m["n_head"])
    assert (model.n_expert, model.n_expert_used) == (m["n_expert"], m["n_expert_used"])
    assert model.n_threads >= 1 and model.kv_bytes_per_token > 0
    meta = model.metadata
    file = ktx.GGUFFile(str(GOLDEN / MODELS["ds2_v3"]["model"])).metadata
    scalars = {k: v for k, v in file.items() if not isinstance(v, list)}
    assert meta.keys() == scalars.keys()
    for key, value in scalars.items():
        assert meta[key] == pytest.approx(value) if isinstance(value, float) else meta[key] == value
    assert meta["general.architecture"] == "deepseek2"
    assert model.n_ctx_train == meta["deepseek2.context_length"]
    assert model.warnings == []
    assert "deepseek2" in repr(model)


def test_plan_and_backends():
    model = load("ds2_lite", rules=ROOT / "rules" / "deepseek-v2-cpu.yaml")
    plan = model.plan()
    modules = {p["module"]: p for p in plan["placements"]}
    experts = modules["model.layers.1.mlp.experts"]
    assert experts["impl"] == "cpu.experts" and experts["generate_device"] == "cpu"
    assert "deepseek-v2-cpu.yaml:" in experts["why"]
    assert isinstance(plan["warnings"], list)
    names = [b["name"] for b in model.backends()]
    assert names[0] == "cpu"
    cpu = ktx.backends()[0]
    assert cpu["path"] == "" and cpu["devices"][0]["name"] == "cpu"
    assert "cpu.mla_attention" in cpu["operators"]
    assert isinstance(ktx.refused_backends(), list)


def test_a_model_without_a_tokenizer_still_evaluates():
    model = load("ds2_lite")
    assert not model.has_tokenizer
    assert model.tokenizer.bos is None and model.tokenizer.eos is None
    with pytest.raises(ktx.UnsupportedError, match="tokenizer"):
        model.tokenizer.encode("x")
    session = model.session()
    with pytest.raises(ktx.UnsupportedError, match="tokenizer"):
        session.generate([1, 2, 3])
    assert session.eval([1, 2, 3]).shape == (64,)


# --- the tokenizer --------------------------------------------------------------------------------

def test_tokenizer_through_the_abi_matches_the_core_tokenizer(default_model_path):
    model = ktx.Model(default_model_path, progress=False)
    tok = model.tokenizer
    core = ktx.Tokenizer.from_gguf(default_model_path)
    text = "Hello, wörld! 日本語 <|im_start|> ☃"
    for add, parse in [(True, False), (False, True), (False, False)]:
        assert tok.encode(text, add_special=add, parse_special=parse) == core.encode(
            text, add_special=add, parse_special=parse)
    ids = tok.encode(text)
    assert tok.decode(ids) == core.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode()
    assert b"".join(tok.token_to_piece(t) for t in ids) == text.encode()
    assert tok.bos == core.bos and tok.eos == core.eos and tok.n_vocab == model.n_vocab == 49152
    assert tok.is_eog(tok.eos) and not tok.is_eog(ids[0])
    messages = [{"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(messages) == core.apply_chat_template(
        messages, add_generation_prompt=True)
    assert tok.apply_chat_template([("user", "Hi")], add_generation_prompt=False).endswith(
        "<|im_end|>\n")
    with pytest.raises(ktx.InvalidArgumentError, match="99999999"):
        tok.decode([99999999])


# --- logits against the goldens -----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_match_the_reference(name):
    m = MODELS[name]
    tokens = MANIFEST["tokens"]
    want = np.load(GOLDEN / m["logits"]).astype(np.float64)
    session = load(name).session()
    got = session.eval(tokens, all_logits=True)
    assert got.dtype == np.float32 and got.shape == want.shape
    diff = np.abs(got - want)
    assert diff.max() <= m["tolerance"]["max_abs"], name
    assert float(np.sqrt(np.mean(diff**2))) <= m["tolerance"]["rms"], name
    if m["weights"] == "F32":
        assert diff.max() / np.abs(want).max() <= 1e-4
    # The last row is also what logits() keeps, and a copy: changing it changes nothing.
    last = session.logits()
    np.testing.assert_array_equal(last, got[-1])
    last[:] = 0
    np.testing.assert_array_equal(session.logits(), got[-1])


def test_token_by_token_equals_one_batch():
    tokens = MANIFEST["tokens"]
    model = load("ds2_lite_mla")
    batch = model.session().eval(tokens, all_logits=True)
    session = model.session()
    rows = [session.decode(t) for t in tokens]
    np.testing.assert_allclose(np.stack(rows), batch, rtol=1e-5, atol=1e-5 * np.abs(batch).max())

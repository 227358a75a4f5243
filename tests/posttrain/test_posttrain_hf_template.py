"""Post-training stages render data with a converted model's own Jinja chat template: a tiny random Qwen2
with a Qwen2.5-style template, converted by our importer, gives exactly transformers' apply_chat_template
ids, a loss mask on the assistant spans and their <|im_end|> only, and trains through zerollm.api.sft."""
from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
tk = pytest.importorskip("tokenizers")

from zerollm import api  # noqa: E402
from zerollm.chat.format import prompt_ids, render  # noqa: E402
from zerollm.interop.hf import convert_hf  # noqa: E402
from zerollm.posttrain import data as D  # noqa: E402
from zerollm.loading import load  # noqa: E402

# Qwen2.5-Instruct's template (default system prompt, tools block, <tool_call> turns, grouped tool responses)
QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CONVS = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of France?"},
     {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Japan?"},
     {"role": "assistant", "content": "Tokyo, the capital."}],
    [{"role": "user", "content": "Weather in Oslo?"},
     {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
         "name": "get_weather", "arguments": {"city": "Oslo"}}}]},
     {"role": "tool", "content": "rain, 8 C"}, {"role": "assistant", "content": "Rainy, 8 degrees."}],
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(HF dir, our converted checkpoint dir, transformers tokenizer)."""
    d = tmp_path_factory.mktemp("qwen")
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.Sequence([  # Qwen2's (transformers 5's Qwen2Tokenizer sets it too)
        tk.pre_tokenizers.Split(tk.Regex(QWEN2_PATTERN), behavior="isolated"),
        tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = tk.decoders.ByteLevel()
    text = " ".join(m["content"] for c in CONVS for m in c) + " You are Qwen, created by Alibaba Cloud. assistant"
    tok.train_from_iterator([text] * 20, tk.trainers.BpeTrainer(
        vocab_size=330, initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.add_special_tokens([tk.AddedToken(t, special=True) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                                pad_token="<|endoftext|>")
    fast.chat_template = QWEN25_TEMPLATE
    fast.save_pretrained(str(d / "hf"))
    cfg = transformers.Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                   eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(str(d / "hf"))
    convert_hf(d / "hf", d / "ours")
    return d / "hf", d / "ours", transformers.AutoTokenizer.from_pretrained(str(d / "hf"))


def _hf_ids(fast, conv, **kw) -> list[int]:
    out = fast.apply_chat_template(conv, tokenize=True, **kw)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def _target_runs(tok, ids, mask) -> list[str]:
    runs, cur = [], []
    for i, m in zip(ids, mask):
        if m:
            cur.append(i)
        elif cur:
            runs, cur = runs + [tok.decode(cur)], []
    return runs + ([tok.decode(cur)] if cur else [])


def test_stage_rendering_equals_transformers_ids_with_assistant_only_mask(converted):
    _, ours, fast = converted
    loaded = load(ours)
    tok, template = loaded.tokenizer, loaded.chat_template
    assert template == QWEN25_TEMPLATE  # the record every stage's Ctx renders with
    im_end = tok.special_tokens["<|im_end|>"]
    for conv in CONVS:
        r = render(conv, tok, template=template)
        assert r.ids == _hf_ids(fast, conv)
        said = []
        for m in conv:
            if m["role"] == "assistant":
                calls = "".join('\n<tool_call>\n{"name": "%s", "arguments": %s}\n</tool_call>'
                                % (c["function"]["name"], json.dumps(c["function"]["arguments"]))
                                for c in m.get("tool_calls") or [])
                said.append((m["content"] + calls).removeprefix("\n") + "<|im_end|>")
        assert _target_runs(tok, r.ids, r.mask) == said  # exactly the assistant spans + their end token
        assert sum(r.mask) == sum(len(tok.encode(s, allowed_special="all")) for s in said)
        ids, labels = D.encode_sft(conv, tok, 256, template)  # the SFT stage's labels: the same tokens, shifted
        assert ids == r.ids[:-1] and [t for t in labels if t != -100][-1] == im_end
        assert tok.decode([t for t in labels if t != -100]) == "".join(said)
    # generation prompts (RL rollouts, exact-match evaluation) and preference pairs use the template too
    prompt = CONVS[1][:4]
    assert prompt_ids(prompt, tok, template=template) == _hf_ids(fast, prompt, add_generation_prompt=True)
    _, labels = D.encode_pair(prompt, [CONVS[1][4]], tok, 256, template)
    assert tok.decode([t for t in labels if t != -100]) == "Tokyo, the capital.<|im_end|>"  # last turn only


def test_two_sft_steps_on_the_converted_model(converted, tmp_path):
    _, ours, _ = converted
    data = tmp_path / "chat.jsonl"
    D.write_jsonl(data, [{"messages": c} for c in CONVS * 2])
    out = api.sft(None, {"model": str(ours), "data": [str(data)], "out": str(tmp_path / "run"), "max_len": 128,
                         "val_fraction": 0.2, "train": {"steps": 2, "batch_size": 2, "eval_every": 0, "ckpt_every": 1,
                                                        "progress": False, "eval_at_start": False}})
    assert out["steps"] == 2 and out["final_loss"] == out["final_loss"]  # finite
    saved = tmp_path / "run" / "model" / "tokenizer" / "chat_template.jinja"
    assert saved.read_text() == QWEN25_TEMPLATE  # the next stage renders in the same format
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert len(ckpts) == 2  # the mid-run checkpoint too: `chat --model` on it renders the model's own format
    assert all((c / "tokenizer" / "chat_template.jinja").read_text() == QWEN25_TEMPLATE for c in ckpts)
    assert load(tmp_path / "run" / "model").chat_template == QWEN25_TEMPLATE

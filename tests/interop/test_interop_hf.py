"""Hugging Face interop: tiny random transformers models of every supported architecture convert to zerollm
with logits parity (<= 1e-4, fp32) and identical greedy continuations; zerollm models with our own BPE export
to directories AutoModelForCausalLM / AutoTokenizer load with logits parity and identical ids; GPT-2's real
tokenizer files give transformers' ids on English and Japanese text; bad inputs fail with one clear error
and leave nothing behind."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from zerollm import cli  # noqa: E402
from zerollm.config import ModelConfig  # noqa: E402
from zerollm.stages.convert import convert, export  # noqa: E402
from zerollm.engine.generate import GenerationConfig, generate  # noqa: E402
from zerollm.interop.hf import is_hf_dir, load_hf, to_hf_model  # noqa: E402
from zerollm.interop.hf_arch import config_from_hf  # noqa: E402
from zerollm.interop.hf_tokenizer import HFTokenizer, load_hf_tokenizer, render_chat_template  # noqa: E402
from zerollm.interop.weights import InteropError, read_safetensors_header  # noqa: E402
from zerollm.model.transformer import Transformer  # noqa: E402
from zerollm.loading import load
from zerollm.train.checkpoint import save_checkpoint  # noqa: E402

V = 97


def hf_tiny(arch: str, tied: bool):
    """A tiny random transformers model; GQA wherever the architecture has it."""
    T = transformers
    llama_kw = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=tied,
                    bos_token_id=1, eos_token_id=2)
    if arch == "gpt2":
        cfg = T.GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4, n_positions=128, tie_word_embeddings=tied,
                           bos_token_id=1, eos_token_id=2)
    elif arch == "llama":  # with Llama-3.1 RoPE scaling
        cfg = T.LlamaConfig(**llama_kw, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
    elif arch == "mistral":
        cfg = T.MistralConfig(**llama_kw, sliding_window=4096)
    elif arch == "qwen2":
        cfg = T.Qwen2Config(**llama_kw)
    elif arch == "qwen3":  # head_dim (24) != hidden_size / heads (16)
        cfg = T.Qwen3Config(**llama_kw, head_dim=24)
    elif arch == "gpt_neox":
        cfg = T.GPTNeoXConfig(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=128, rotary_pct=0.25,
                              use_parallel_residual=True, tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():  # random norms/biases too, so a swapped or skipped tensor cannot hide
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(1.0 if "norm" in name or "ln" in name else 0.0, 0.1)
    return model


def assert_parity(ours, hf, prompt_len: int = 12, new: int = 32):
    ids = torch.randint(0, V, (2, prompt_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(ids), hf(ids).logits
    assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-4
    prompt = ids[0].tolist()
    mine = generate(ours, None, prompt, GenerationConfig(max_new_tokens=new, temperature=0, stop_token_ids=[]))
    ref = hf.generate(ids[:1], max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0,
                      min_new_tokens=new)[0, prompt_len:].tolist()
    assert mine == ref


CASES = [(a, t) for a in ("gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox") for t in (True, False)]


@pytest.mark.parametrize("arch,tied", CASES, ids=[f"{a}-{'tied' if t else 'untied'}" for a, t in CASES])
def test_convert_parity_per_architecture(arch, tied, tmp_path):
    hf = hf_tiny(arch, tied)
    hf.save_pretrained(tmp_path / "hf")
    assert is_hf_dir(tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "ours")
    ours = load(tmp_path / "ours").model
    assert ours.cfg.tie_embeddings == tied and (ours.lm_head is None) == tied
    if arch in ("llama", "mistral", "qwen2", "qwen3"):
        assert ours.cfg.n_kv_head == 2
    assert_parity(ours, hf)
    direct = load(tmp_path / "hf").model  # every --model accepts an HF dir directly
    for (n, a), b in zip(ours.state_dict().items(), direct.state_dict().values()):
        assert torch.equal(a, b), n
    back = to_hf_model(ours)  # and in memory the other way (NeoX: embed_out is lm_head in transformers 5)
    x = torch.randint(0, hf.config.vocab_size, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, hf(x).logits, atol=1e-5, rtol=1e-5)


def test_v4_and_v5_config_keys_give_the_same_model_config(tmp_path):
    v5 = hf_tiny("llama", False).config.to_dict()
    v4 = {k: v for k, v in v5.items() if k not in ("rope_parameters", "dtype")}
    params = dict(v5["rope_parameters"])
    v4.update(rope_theta=params.pop("rope_theta"), rope_scaling=params, torch_dtype="float32")
    assert config_from_hf(v4) == config_from_hf(v5)
    assert config_from_hf(v5).rope_scaling["rope_type"] == "llama3"
    neox5 = hf_tiny("gpt_neox", False).config.to_dict()
    neox4 = {k: v for k, v in neox5.items() if k != "rope_parameters"}
    neox4.update(rotary_pct=0.25, rotary_emb_base=10000)
    assert config_from_hf(neox4) == config_from_hf(neox5) and config_from_hf(neox5).rotary_pct == 0.25


def test_sharded_safetensors_and_bin_weights(tmp_path):
    hf = hf_tiny("qwen2", False)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    ours, _, _ = load_hf(tmp_path / "sharded")
    assert_parity(ours, hf, new=4)
    # a .bin-only checkpoint is read with torch.load(weights_only=True); HF-style un-prefixed GPT-2 names too
    gpt2 = hf_tiny("gpt2", True)
    d = tmp_path / "bin"
    gpt2.config.save_pretrained(d)
    sd = {k.removeprefix("transformer."): v for k, v in gpt2.state_dict().items() if k != "lm_head.weight"}
    sd.update({f"h.{i}.attn.bias": torch.ones(1, 1, 4, 4) for i in range(2)})  # old causal-mask buffers
    torch.save(sd, d / "pytorch_model.bin")
    ours, _, _ = load_hf(d)
    assert_parity(ours, gpt2, new=4)


def test_bf16_checkpoint_converts_without_upcasting(tmp_path):
    from safetensors import safe_open

    hf = hf_tiny("llama", True).to(torch.bfloat16)
    hf.save_pretrained(tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "ours")
    with safe_open(str(tmp_path / "ours" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("tok_emb.weight").dtype == torch.bfloat16
        assert f.metadata() == {"format": "pt"}
    ours = load(tmp_path / "ours").model
    assert torch.equal(ours.tok_emb.weight, hf.model.embed_tokens.weight.float())


# ---------------------------------------------------------------------------------------------------------
# tokenizers


@pytest.fixture(scope="module")
def texts(shared_data):
    en = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:60000]
    ja = "".join((shared_data / "aozora" / f).read_text(encoding="utf-8")[:8000]
                 for f in ("752_ruby_2438.txt", "127_ruby_150.txt", "43737_ruby_19028.txt"))
    return en, ja


@pytest.fixture(scope="module")
def gpt2_hf_dir(shared_data, tmp_path_factory):
    """A transformers-style GPT-2 tokenizer dir built from the released files with the `tokenizers` library."""
    import tokenizers as tk

    src, d = shared_data / "gpt2_bpe", tmp_path_factory.mktemp("gpt2tok")
    tok = tk.Tokenizer(tk.models.BPE.from_file(str(src / "encoder.json"), str(src / "vocab.bpe")))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    tok.post_processor = tk.processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([tk.AddedToken("<|endoftext|>", special=True)])
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}))
    return d


def test_gpt2_tokenizer_json_is_our_bpe_with_transformers_ids(gpt2_hf_dir, shared_data, texts, tmp_path):
    from zerollm.tokenizer.bpe import BPETokenizer
    from zerollm.tokenizer.gpt2 import load_gpt2_bpe

    ours = load_hf_tokenizer(gpt2_hf_dir)
    assert isinstance(ours, BPETokenizer) and ours.vocab_size == 50257
    assert ours.bos_id == ours.eos_id == 50256
    src = shared_data / "gpt2_bpe"
    assert ours.hash == load_gpt2_bpe(src / "encoder.json", src / "vocab.bpe").hash
    os.symlink(src / "encoder.json", tmp_path / "vocab.json")
    os.symlink(src / "vocab.bpe", tmp_path / "merges.txt")
    ref = transformers.GPT2Tokenizer.from_pretrained(str(tmp_path))  # transformers' own GPT-2 tokenizer
    for text in texts:
        ids = ours.encode(text)
        assert ids == ref.encode(text) and ours.decode(ids) == text
    # written back as tokenizer.json (merges derived from ranks), AutoTokenizer gives the same ids again
    cfg = ModelConfig(vocab_size=50257, n_layer=1, n_head=1, d_model=8, max_seq_len=16)
    save_checkpoint(tmp_path / "ck", Transformer(cfg), cfg, tokenizer=ours)
    export(tmp_path / "ck", tmp_path / "exp")
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "exp"))
    for text in texts:
        assert auto.encode(text[:20000]) == ours.encode(text[:20000])


def test_other_tokenizer_json_is_wrapped_through_tokenizers(tmp_path, texts):
    """A Metaspace/byte-fallback BPE (Llama-2 style) is not byte-level: wrapped, same ids, saves and loads."""
    import tokenizers as tk

    from zerollm.tokenizer.base import load_tokenizer

    tok = tk.Tokenizer(tk.models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = tk.pre_tokenizers.Metaspace()
    tok.decoder = tk.decoders.Sequence([tk.decoders.Replace("▁", " "), tk.decoders.ByteFallback(),
                                        tk.decoders.Fuse(), tk.decoders.Strip(" ", 1, 0)])
    trainer = tk.trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                     initial_alphabet=[f"<0x{b:02X}>" for b in range(256)])
    tok.train_from_iterator([texts[0][:20000]], trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    ours = load_hf_tokenizer(tmp_path)
    assert isinstance(ours, HFTokenizer) and ours.bos_id == 1 and ours.eos_id == 2
    text = "Hello world</s> again"
    assert ours.encode(text, allowed_special="all") == tok.encode(text, add_special_tokens=False).ids
    assert 2 not in ours.encode(text) and 2 in ours.encode(text, allowed_special={"</s>"})
    ours.save(tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved")
    assert isinstance(again, HFTokenizer) and again.hash == ours.hash
    assert again.encode(texts[0][:3000]) == tok.encode(texts[0][:3000], add_special_tokens=False).ids


QWEN_LIKE_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}"
    "{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}{{- '# Tools\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}{{- '\\n</tools><|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
    "'<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message.role == 'system' %}{% continue %}{% endif %}"
    "{%- if message.role not in ['user', 'assistant', 'tool'] %}{{ raise_exception('bad role') }}{% endif %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}{{- eos_token if false }}"
)


@pytest.fixture(scope="module")
def small_bpe(texts):
    from zerollm.tokenizer.bpe import train_bpe

    return train_bpe([texts[0], texts[1]], vocab_size=600, show_progress=False)


@pytest.mark.parametrize("style,tied", [("gpt2", True), ("gpt2", False), ("llama", True), ("llama", False)])
def test_export_hf_loads_in_transformers(style, tied, small_bpe, texts, tmp_path):
    from safetensors import safe_open

    kw = dict(norm="layernorm", mlp="gelu", position="learned", bias=True) if style == "gpt2" else \
        dict(norm="rmsnorm", mlp="swiglu", position="rope", bias=False, n_kv_head=2, rope_theta=50000.0)
    cfg = ModelConfig(vocab_size=small_bpe.vocab_size, n_layer=2, n_head=4, d_model=64, max_seq_len=64,
                      tie_embeddings=tied, **kw)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    save_checkpoint(tmp_path / "ck", model, cfg, tokenizer=small_bpe)
    assert cli.main(["export", "--format", "hf", "--model", str(tmp_path / "ck"), "--out", str(tmp_path / "hf")]) == 0
    d = tmp_path / "hf"
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max().item() <= 1e-4
    auto = transformers.AutoTokenizer.from_pretrained(str(d))
    for text in texts:
        assert auto.encode(text[:5000]) == small_bpe.encode(text[:5000])
    config = json.loads((d / "config.json").read_text())
    assert {"rope_theta", "rope_scaling", "rope_parameters"} <= set(config) or style == "gpt2"
    assert config["torch_dtype"] == config["dtype"] == "float32"
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"} and (("lm_head.weight" in f.keys()) != tied)
    tc = json.loads((d / "tokenizer_config.json").read_text())
    assert tc["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tc["chat_template"] == (d / "chat_template.jinja").read_text()
    gen = json.loads((d / "generation_config.json").read_text())
    specials = small_bpe.special_tokens
    assert gen["eos_token_id"] == [specials["<|eos|>"], specials["<|im_end|>"]]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "こんにちは"}]
    rendered = render_chat_template(tc["chat_template"], msgs, add_generation_prompt=True)
    assert rendered == auto.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert auto.encode(rendered) == small_bpe.encode(rendered, allowed_special="all")
    loaded = load(d)  # and our own export reads back as an HF dir
    back, tok = loaded.model, loaded.tokenizer
    assert tok.hash == small_bpe.hash and all(torch.equal(a, b) for a, b in
                                              zip(back.state_dict().values(), model.state_dict().values()))


def test_export_hf_with_a_wordpiece_tokenizer(texts, tmp_path):
    """WordPiece (the tokenizer issue's BERT algorithm) exports as tokenizer.json that transformers reads
    with the same ids, English and Japanese, with no [CLS]/[SEP] added to a decoder LM's input."""
    from zerollm.tokenizer.wordpiece import train_wordpiece

    wp = train_wordpiece([texts[0], texts[1]], vocab_size=2000)
    cfg = ModelConfig(vocab_size=wp.vocab_size, n_layer=1, n_head=2, d_model=32, max_seq_len=32,
                      norm="rmsnorm", mlp="swiglu", position="rope", bias=False)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    save_checkpoint(tmp_path / "ck", model, cfg, tokenizer=wp)
    export(tmp_path / "ck", tmp_path / "hf", format="hf")
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    for text in texts:
        sample = text[:3000]
        assert auto.encode(sample) == wp.encode(sample)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32).eval()
    ids = torch.tensor([wp.encode(texts[1][:20])])
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max().item() <= 1e-4


def test_chat_template_renders_as_transformers(small_bpe, tmp_path):
    d = tmp_path / "hf"
    d.mkdir()
    from zerollm.interop.hf_tokenizer import write_hf_tokenizer

    write_hf_tokenizer(small_bpe, d, chat_template=QWEN_LIKE_TEMPLATE)
    auto = transformers.AutoTokenizer.from_pretrained(str(d))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "天気",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "weather in Tokyo?"},
            {"role": "assistant", "content": "Let me check."}, {"role": "tool", "content": "sunny"}]
    for kw in (dict(tools=tools), dict(tools=None), dict(add_generation_prompt=True)):
        ref = auto.apply_chat_template(msgs, tokenize=False, **kw)
        assert render_chat_template(QWEN_LIKE_TEMPLATE, msgs, special_tokens={"eos_token": "<|eos|>"}, **kw) == ref
    with pytest.raises(Exception, match="bad role"):
        render_chat_template(QWEN_LIKE_TEMPLATE, [{"role": "robot", "content": "x"}])


def test_generate_api_accepts_hf_dir(tmp_path):
    from zerollm import api

    hf = hf_tiny("gpt2", True)
    d = tmp_path / "hf"
    hf.save_pretrained(d)
    (d / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}))
    vocab = {chr(ord("a") + i % 26) * (1 + i // 26): i for i in range(V - 1)}  # a byte-level-free toy vocab
    import tokenizers as tk

    tok = tk.Tokenizer(tk.models.WordLevel(vocab, unk_token="a"))
    tok.pre_tokenizer = tk.pre_tokenizers.Whitespace()
    tok.add_special_tokens([tk.AddedToken("<|endoftext|>", special=True)])
    tok.save(str(d / "tokenizer.json"))
    text = api.generate(str(d), "a b c", max_new_tokens=5, temperature=0, device="cpu")
    assert isinstance(text, str)


# ---------------------------------------------------------------------------------------------------------
# bad input: one clear error naming file and tensor; no partial output


def _save_raw(path: Path, tensors: dict, config: dict) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    hf = hf_tiny("llama", False)
    d = tmp_path_factory.mktemp("good")
    hf.save_pretrained(d)
    return hf.state_dict(), json.loads((d / "config.json").read_text())


def _expect_error(tmp_path: Path, src: Path, *needles: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(InteropError) as e:
        convert(src, out)
    for n in needles:
        assert n in str(e.value), str(e.value)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert cli.main(["convert", "--from", "hf", str(src), "--out", str(out)]) == 2 and not out.exists()


def test_unknown_architecture(good, tmp_path):
    sd, config = good
    _save_raw(tmp_path / "src", sd, {**config, "model_type": "mamba", "architectures": ["MambaForCausalLM"]})
    _expect_error(tmp_path, tmp_path / "src", "config.json", "unknown architecture", "mamba")


def test_missing_extra_and_misshaped_tensors(good, tmp_path):
    sd, config = good
    name = "model.layers.1.self_attn.k_proj.weight"
    _save_raw(tmp_path / "a", {k: v for k, v in sd.items() if k != name}, config)
    _expect_error(tmp_path, tmp_path / "a", "model.safetensors", "missing tensor", name)
    _save_raw(tmp_path / "b", {**sd, "model.layers.0.mlp.extra.weight": torch.zeros(2)}, config)
    _expect_error(tmp_path, tmp_path / "b", "model.safetensors", "unexpected tensor", "model.layers.0.mlp.extra.weight")
    _save_raw(tmp_path / "c", {**sd, name: torch.zeros(16, 64)}, config)
    _expect_error(tmp_path, tmp_path / "c", "model.safetensors", name, "[16, 64]", "[32, 64]")


def test_truncated_corrupted_and_unsupported_dtype(good, tmp_path):
    sd, config = good
    _save_raw(tmp_path / "t", sd, config)
    f = tmp_path / "t" / "model.safetensors"
    header, _, start = read_safetensors_header(f)
    size = f.stat().st_size - 1000
    first_cut = min((h["data_offsets"][0], n) for n, h in header.items() if start + h["data_offsets"][1] > size)[1]
    f.write_bytes(f.read_bytes()[:size])
    _expect_error(tmp_path, tmp_path / "t", str(f), "truncated", repr(first_cut))
    _save_raw(tmp_path / "x", sd, config)
    f = tmp_path / "x" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:20] = b"#garbage!!#!"
    f.write_bytes(bytes(data))
    _expect_error(tmp_path, tmp_path / "x", str(f), "corrupted")
    f.write_bytes(struct.pack("<Q", 1 << 40) + bytes(data[8:]))
    _expect_error(tmp_path, tmp_path / "x", str(f), "corrupted or truncated")
    name = "model.layers.0.mlp.up_proj.weight"
    _save_raw(tmp_path / "q", {**sd, name: sd[name].to(torch.int8)}, config)
    _expect_error(tmp_path, tmp_path / "q", "model.safetensors", name, "I8")


def test_bad_input_keeps_an_existing_output(good, tmp_path):
    sd, config = good
    from zerollm.artifacts import write_manifest

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous")
    _save_raw(tmp_path / "src", {k: v for k, v in sd.items() if k != "model.norm.weight"}, config)
    with pytest.raises(FileExistsError, match="not a zerollm artifact"):  # not ours: never replaced
        convert(tmp_path / "src", out)
    write_manifest(out, "checkpoint")  # an earlier conversion: replaceable, but only by a good one
    with pytest.raises(InteropError, match="model.norm.weight"):
        convert(tmp_path / "src", out)
    assert (out / "keep.txt").read_text() == "previous" and len(list(tmp_path.iterdir())) == 2

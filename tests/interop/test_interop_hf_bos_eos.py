"""BOS/EOS as each tokenizer says (issue 19 item 5): an imported tokenizer's `encode_special` gives the ids
transformers' `tokenizer(text)` gives, following `add_bos_token`/`add_eos_token` in tokenizer_config.json and
the TemplateProcessing post-processor in tokenizer.json; the rule survives conversion to a zerollm checkpoint;
chat rendering (whose template writes bos_token itself) does not add a second BOS."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from zerollm.interop.hf_tokenizer import load_hf_tokenizer
from zerollm.tokenizer.base import load_tokenizer, save_affixes

transformers = pytest.importorskip("transformers")
TEXTS = ["hello world", "the lazy dog jumps.", "a"]
CORPUS = ["the quick brown fox jumps over the lazy dog.", "hello world, this is a tiny test corpus.",
          "tokenizers add special tokens around a text."] * 40


@pytest.fixture(scope="module")
def llama_model(tmp_path_factory) -> Path:
    """A tiny Llama-2-style SentencePiece tokenizer.model (BPE, byte fallback, <unk>=0 <s>=1 </s>=2)."""
    spm = pytest.importorskip("sentencepiece")
    d = tmp_path_factory.mktemp("spm")
    (d / "corpus.txt").write_text("\n".join(CORPUS), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(d / "corpus.txt"), model_prefix=str(d / "tokenizer"), vocab_size=300,
                                   model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   character_coverage=1.0, minloglevel=2)
    return d / "tokenizer.model"


@pytest.mark.parametrize("flags", [{"add_bos_token": True, "add_eos_token": False},
                                   {"add_bos_token": False, "add_eos_token": True},
                                   {"add_bos_token": True, "add_eos_token": True}, {}])
def test_llama2_style_tokenizer_follows_add_bos_eos(llama_model, tmp_path, flags):
    d = tmp_path / "llama"
    d.mkdir()
    (d / "tokenizer.model").write_bytes(llama_model.read_bytes())
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>",
                                                         "eos_token": "</s>", "unk_token": "<unk>", **flags}))
    ours = load_hf_tokenizer(d)
    for cls in (transformers.AutoTokenizer, transformers.LlamaTokenizer, transformers.LlamaTokenizerFast):
        theirs = cls.from_pretrained(str(d))
        for text in TEXTS:
            assert ours.encode_special(text) == theirs(text).input_ids, (cls.__name__, text)
    if flags.get("add_bos_token"):
        assert ours.encode_special("hi")[0] == 1 and ours.encode_special("hi", suffix=False)[-1] != 2
    # the rule travels with the tokenizer directory (convert_hf and checkpoints write it)
    ours.save(tmp_path / "saved")
    save_affixes(ours, tmp_path / "saved")
    assert load_tokenizer(tmp_path / "saved").encode_special("hello world") == ours.encode_special("hello world")


def _neox_tokenizer_json(post_processor: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    if post_processor:  # BOS in front, as a NeoX-family tokenizer.json with a TemplateProcessing has it
        tok.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A", pair="<|endoftext|> $A $B",
                                                           special_tokens=[("<|endoftext|>", 0)])
    return tok


@pytest.mark.parametrize("cls", ["PreTrainedTokenizerFast", "GPTNeoXTokenizer"])
@pytest.mark.parametrize("post_processor,flags", [(True, {}), (False, {}), (False, {"add_eos_token": True}),
                                                  (True, {"add_bos_token": False, "add_eos_token": True})])
def test_gpt_neox_style_tokenizer_follows_its_post_processor(tmp_path, cls, post_processor, flags):
    d = tmp_path / "neox"
    d.mkdir()
    _neox_tokenizer_json(post_processor).save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls, "bos_token": "<|endoftext|>",
                                                         "eos_token": "<|endoftext|>", **flags}))
    ours = load_hf_tokenizer(d)
    theirs = transformers.AutoTokenizer.from_pretrained(str(d))
    for text in TEXTS:
        assert ours.encode_special(text) == theirs(text).input_ids, text
        assert ours.encode(text) == theirs(text, add_special_tokens=False).input_ids, text
    if cls == "PreTrainedTokenizerFast" and post_processor:
        assert ours.encode_special("hello")[0] == 0  # the template's <|endoftext|> in front


def test_chat_template_with_bos_token_is_not_given_a_second_bos(tmp_path):
    """Chat rendering encodes the template's text (which prints bos_token), never encode_special: one BOS."""
    from zerollm.chat.format import render

    d = tmp_path / "neox"
    d.mkdir()
    _neox_tokenizer_json(True).save(str(d / "tokenizer.json"))
    template = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                         "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                                                         "chat_template": template}))
    ours = load_hf_tokenizer(d)
    msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}]
    ids = render(msgs, ours, template=template).ids
    theirs = transformers.AutoTokenizer.from_pretrained(str(d)).apply_chat_template(msgs, tokenize=True)
    theirs = list(theirs["input_ids"] if hasattr(theirs, "keys") else theirs)
    assert ids[0] == 0 and ids[1] != 0 and ids == theirs


def test_generate_gives_a_llama2_model_its_bos_once(llama_model, tmp_path, monkeypatch):
    """`zerollm generate` on an HF Llama-2-style directory, and on its converted checkpoint, feeds the model
    transformers' ids for the prompt: BOS first (add_bos_token), no EOS after the prompt."""
    import torch

    from zerollm.config import ModelConfig
    from zerollm.interop.hf import convert_hf, export_hf
    from zerollm.loading import load
    from zerollm.model.transformer import Transformer
    from zerollm.stages import generate as gen_stage

    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=300, n_layer=1, d_model=32, n_head=2, max_seq_len=64, position="rope",
                                    norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False))
    hf_dir = export_hf(model, None, tmp_path / "hf")
    (hf_dir / "tokenizer.model").write_bytes(llama_model.read_bytes())
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>",
                                                              "eos_token": "</s>", "add_bos_token": True,
                                                              "add_eos_token": True}))
    convert_hf(hf_dir, tmp_path / "ckpt")
    expected = transformers.AutoTokenizer.from_pretrained(str(hf_dir))("hello world").input_ids[:-1]  # minus EOS
    seen = []
    monkeypatch.setattr(gen_stage, "generate_text", lambda m, tok, ids, *a, **k: seen.append(list(ids)) or "")
    monkeypatch.setattr(gen_stage, "load_for_use", lambda path, device: load(path, "cpu"))  # no decode layout
    for where in (hf_dir, tmp_path / "ckpt"):
        gen_stage.generate(str(where), "hello world", max_new_tokens=1)
    assert seen == [expected, expected] and expected[0] == 1 and expected.count(1) == 1

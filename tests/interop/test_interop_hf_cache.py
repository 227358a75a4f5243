"""`zerollm.from_pretrained(name)` finds a hub name in the local Hugging Face cache (offline), loads through the
one loader, and gives a model whose `generate` follows the directory's generation defaults; `pipeline(
"text-generation")` returns transformers' [{"generated_text": ...}]."""
from __future__ import annotations

import pytest
import torch

import zerollm
from zerollm.interop.hf_cache import resolve_model_dir

transformers = pytest.importorskip("transformers")


def _cache_layout(root, repo: str, src_files: dict[str, bytes], commit="0123abcd"):
    """What huggingface_hub writes: models--ORG--NAME/refs/main and snapshots/<commit>/<files>."""
    repo_dir = root / "hub" / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for name, data in src_files.items():
        (snap / name).write_bytes(data)
    return snap


@pytest.fixture
def cached_gpt2(tmp_path, monkeypatch):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=96, n_embd=32, n_layer=1, n_head=2, n_positions=64,
                                  bos_token_id=5, eos_token_id=5, initializer_range=0.1)
    src = tmp_path / "src"
    transformers.GPT2LMHeadModel(cfg).save_pretrained(src)
    files = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    snap = _cache_layout(tmp_path / "hf", "openai-community/tiny-gpt2", files)
    return snap, transformers.GPT2LMHeadModel.from_pretrained(src).eval()


def test_hub_name_resolves_in_the_cache(cached_gpt2, tmp_path):
    snap, _ = cached_gpt2
    assert resolve_model_dir("openai-community/tiny-gpt2") == snap
    assert resolve_model_dir("tiny-gpt2") == snap  # a bare name matches its one cached ORG/name
    assert resolve_model_dir(str(snap)) == snap  # a directory is itself
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache.*huggingface-cli download"):
        zerollm.from_pretrained("nobody/absent-model")


def test_from_pretrained_generates_as_transformers(cached_gpt2):
    _, hf = cached_gpt2
    model, tok = zerollm.from_pretrained("openai-community/tiny-gpt2")
    assert tok is None and model.generation_config["eos_token_id"] == 5
    ids = torch.tensor([[10, 11, 12]])
    ours = model.generate(ids, max_length=20)  # transformers' defaults and the directory's eos
    with torch.no_grad():
        theirs = hf.generate(ids, max_length=20, pad_token_id=5)
    assert torch.equal(ours, theirs)


def test_pipeline_text_generation(tmp_path, tiny_model, tiny_bpe_tokenizer):
    from zerollm.train.checkpoint import save_checkpoint

    tok = tiny_bpe_tokenizer
    m = tiny_model(1, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=2, d_model=32)
    ck = save_checkpoint(tmp_path / "ck", m, m.cfg, tokenizer=tok)
    gen = zerollm.pipeline("text-generation", model=str(ck))
    torch.manual_seed(0)
    out = gen("the cat", max_length=12, num_return_sequences=2)
    assert isinstance(out, list) and len(out) == 2 and all(o["generated_text"].startswith("the cat") for o in out)
    greedy = gen("the cat", max_new_tokens=6, do_sample=False, return_full_text=False)[0]["generated_text"]
    model, tok2 = zerollm.from_pretrained(ck)
    ids = model.generate(torch.tensor([tok2.encode("the cat")]), max_new_tokens=6)[0].tolist()
    new = [i for i in ids[len(tok2.encode("the cat")):] if i not in tok2.special_tokens.values()]
    assert greedy == tok2.decode(new)
    assert [len(x) for x in gen(["a", "b"], max_new_tokens=3)] == [1, 1]
    with pytest.raises(ValueError, match="not supported"):
        zerollm.pipeline("fill-mask", model=str(ck))

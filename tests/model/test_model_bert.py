"""The BERT encoder of zerollm.model.bert against Hugging Face `transformers` on a tiny random config laid out
as a sentence-transformers directory (written by hand: the sentence-transformers package is not needed):
hidden states, pooled embeddings, token ids (English + Japanese), dense retrieval through a RAG index, and
bad input (missing tensor, wrong shape, unknown model_type)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from zerollm.rag import RAGError
from zerollm.model.bert import BertEncoder, load_bert
from zerollm.tokenizer.wordpiece import train_wordpiece

transformers = pytest.importorskip("transformers")

CORPUS = ["The quick brown fox jumps over the lazy dog. Paris is the capital of France.",
          "Python is a programming language created by Guido van Rossum in 1991.",
          "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
          "富士山は静岡県と山梨県にまたがる活火山で、日本最高峰の山である。"] * 3
TEXTS = ["The quick brown fox!", "Héllo WORLD, Python's creator", "吾輩は猫である。名前はまだ無い。",
         "富士山の標高は3776メートルです", "unseen zebra words ☃", ""]


def _write_st_dir(root, vocab: list[str], *, normalize=True, pooling="mean", seed=0):
    """A tiny random BertModel saved as a sentence-transformers directory (Transformer module at root)."""
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=48, max_position_embeddings=64)
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    model.save_pretrained(root)
    (root / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    (root / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48, "do_lower_case": False}))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False}))
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (root / "2_Normalize").mkdir()
    (root / "modules.json").write_text(json.dumps(modules))
    return model


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    torch.set_num_threads(1)
    vocab = train_wordpiece(CORPUS, vocab_size=160, min_frequency=1, strip_accents=None).vocab
    root = tmp_path_factory.mktemp("st")
    hf = _write_st_dir(root, vocab)
    if int(transformers.__version__.split(".")[0]) >= 5:
        tok = transformers.BertTokenizerFast(vocab=str(root / "vocab.txt"), do_lower_case=True)
    else:
        tok = transformers.BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True)
    return {"dir": root, "hf": hf, "tok": tok, "enc": BertEncoder(root), "vocab": vocab}


def test_token_ids_match_bert_tokenizer_fast(st):
    enc, tok = st["enc"], st["tok"]
    for t in TEXTS + CORPUS[:4]:
        assert enc.token_ids(t) == tok(t)["input_ids"], t
    long = " ".join(["fox"] * 100)  # truncation to max_seq_length keeps [SEP]
    assert enc.token_ids(long) == tok(long, truncation=True, max_length=48)["input_ids"]


def test_hidden_states_match_transformers(st):
    enc, hf = st["enc"], st["hf"]
    ids, mask = enc.batch(TEXTS)  # right-padded: the padding mask matters
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        ours = enc.model(ids, mask)
    real = mask.bool()
    assert ours.shape == ref.shape
    assert (ours - ref)[real].abs().max().item() <= 1e-5


def test_pooled_embeddings_match_manual_mean_pooling(st):
    enc, hf = st["enc"], st["hf"]
    emb = enc.encode(TEXTS, batch_size=4)  # batches sorted by length: order must be restored
    assert emb.dtype == np.float32 and emb.shape == (len(TEXTS), 32)
    ref = []
    with torch.no_grad():
        for t in TEXTS:  # one text at a time: no padding at all in the reference
            ids, mask = enc.batch([t])
            h = hf(input_ids=ids, attention_mask=mask).last_hidden_state[0]
            v = h.mean(0)
            ref.append((v / v.norm()).numpy())
    np.testing.assert_allclose(emb, np.stack(ref), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # 2_Normalize is listed


def test_cls_and_max_pooling_without_normalize(st, tmp_path):
    with torch.no_grad():
        for pooling in ("cls", "max"):
            root = tmp_path / pooling
            root.mkdir()
            hf = _write_st_dir(root, st["vocab"], normalize=False, pooling=pooling, seed=1)
            enc = BertEncoder(root)
            ids, mask = enc.batch(TEXTS[:3])
            h = hf(input_ids=ids, attention_mask=mask).last_hidden_state
            if pooling == "cls":
                ref = h[:, 0]
            else:
                ref = torch.stack([h[i, mask[i].bool()].max(0).values for i in range(len(ids))])
            np.testing.assert_allclose(enc.encode(TEXTS[:3]), ref.numpy(), atol=1e-5)


def test_dense_retrieval_round_trip(st, tmp_path):
    from zerollm.rag.embed import load_embedder
    from zerollm.rag.index import RAGIndex, build_index
    from zerollm.rag.retrieve import Retriever

    docs = tmp_path / "docs"
    docs.mkdir()
    texts = {"fox.txt": CORPUS[0], "python.txt": CORPUS[1], "neko.txt": CORPUS[2], "fuji.txt": CORPUS[3]}
    for name, text in texts.items():
        (docs / name).write_text(text, encoding="utf-8")
    emb = load_embedder(str(st["dir"]))
    assert isinstance(emb, BertEncoder) and emb.normalize
    build_index([docs], tmp_path / "idx", embedder=emb)
    index = RAGIndex.open(tmp_path / "idx")  # the embedder comes back from the manifest's spec
    assert isinstance(index.embedder, BertEncoder)
    r = Retriever(index)
    for name, text in texts.items():  # a random encoder still maps identical text to cosine 1
        hit = r.search(text, k=1, mode="dense")[0]
        assert hit.chunk.source.endswith(name) and hit.score == pytest.approx(1.0, abs=1e-4)
        assert r.search(text, k=1, mode="hybrid")[0].chunk.source.endswith(name)


# ---------------------------------------------------------------- bad input
def _copy(st, tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(st["dir"], d)
    return d


def test_missing_tensor(st, tmp_path):
    from safetensors.torch import load_file, save_file

    d = _copy(st, tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    del sd["encoder.layer.1.attention.self.key.weight"]
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(RAGError, match=r"encoder\.layer\.1\.attention\.self\.key\.weight.*missing"):
        load_bert(d)


def test_wrong_shape_and_bert_prefix(st, tmp_path):
    from safetensors.torch import load_file, save_file

    d = _copy(st, tmp_path)
    sd = {"bert." + k: v for k, v in load_file(str(d / "model.safetensors")).items()}  # BertForMaskedLM keys
    save_file(sd, str(d / "model.safetensors"))
    assert load_bert(d).cfg.hidden_size == 32
    sd["bert.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(47, 32)
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(RAGError, match=r"encoder\.layer\.0\.intermediate\.dense\.weight.*\(47, 32\).*\(48, 32\)"):
        load_bert(d)


def test_pytorch_model_bin(st, tmp_path):
    from safetensors.torch import load_file

    d = _copy(st, tmp_path)
    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    np.testing.assert_allclose(BertEncoder(d).encode(TEXTS[:2]), st["enc"].encode(TEXTS[:2]), atol=1e-6)


def test_unknown_model_type_and_missing_files(st, tmp_path):
    d = _copy(st, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model_type": "roberta"}))
    with pytest.raises(RAGError, match="model_type 'roberta' is not supported"):
        BertEncoder(d)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "vocab.txt").unlink()
    with pytest.raises(RAGError, match="vocab.txt: not found"):
        BertEncoder(d)
    (d / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_lasttoken": True}))
    with pytest.raises(RAGError, match="pooling_mode_lasttoken is not supported"):
        BertEncoder(d)

"""Export to a Hugging Face MarianMTModel directory: transformers loads it and gives our logits (<= 1e-4)
and our beam search output; importing it back gives the same model. Each for a joint vocabulary (one shared
table) and for one vocabulary per side (source table of 45 ids, target/output table of 60)."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from zerollm.engine.config import GenerationConfig
from zerollm.engine.seq2seq import translate_batch
from zerollm.interop.marian import export_marian, import_marian
from zerollm.model.seq2seq import Seq2Seq, Seq2SeqConfig

PAD, BOS, EOS = 0, 1, 2


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(vocab_size=60, d_model=32, n_head=4, n_enc_layer=2, n_dec_layer=2, d_ff=64, dropout=0.0,
                        max_seq_len=48, pad_id=PAD, bos_id=BOS, eos_id=EOS, **kw)
    m = Seq2Seq(cfg).eval()
    with torch.no_grad():  # a nonzero bias, and eos likely enough that beams finish before the limit
        m.final_logits_bias.normal_(0, 0.5)
        m.final_logits_bias[EOS] = 4.0
    return m


SOURCES = [[5, 9, 12, 7], [20, 21], [30, 31, 32, 33, 34, 35]]
VOCABS = {"joint": {}, "separate": {"src_vocab_size": 45, "share_embeddings": False}}


def _src_batch():
    S = max(map(len, SOURCES)) + 1
    src = torch.full((len(SOURCES), S), PAD)
    for b, s in enumerate(SOURCES):
        src[b, :len(s) + 1] = torch.tensor(s + [EOS])
    return src


def _strip(out):
    """HF output rows -> token lists without the start token, cut at eos / padding."""
    rows = []
    for row in out.tolist():
        ids = []
        for t in row[1:]:
            if t in (EOS, PAD):
                break
            ids.append(t)
        rows.append(ids)
    return rows


@pytest.mark.parametrize("vocab", VOCABS)
def test_marian_logits_match(tmp_path, vocab):
    m = tiny(**VOCABS[vocab])
    export_marian(m, tmp_path / "marian")
    hf = transformers.MarianMTModel.from_pretrained(tmp_path / "marian").eval()
    enc, dec = hf.model.encoder.embed_tokens, hf.model.decoder.embed_tokens
    assert (enc.weight is dec.weight) == (vocab == "joint") and hf.lm_head.weight is dec.weight  # output tied
    assert (enc.num_embeddings, dec.num_embeddings) == ((45, 60) if vocab == "separate" else (60, 60))
    src = _src_batch()
    tgt = torch.tensor([[BOS, 7, 8, 9, 10], [BOS, 3, 4, 5, 6], [BOS, 11, 12, 13, 14]])
    with torch.no_grad():
        ours = m(src, tgt)
        theirs = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt).logits
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= 1e-4


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("early_stopping", [False, True])
def test_marian_beam_output_matches_generate(tmp_path, early_stopping, vocab):
    m = tiny(seed=8, **VOCABS[vocab])  # a seed whose beams end at eos, at the limit and in between
    export_marian(m, tmp_path / "marian")
    hf = transformers.MarianMTModel.from_pretrained(tmp_path / "marian").eval()
    src = _src_batch()
    gen = GenerationConfig(temperature=0.0, num_beams=4, max_new_tokens=12, early_stopping=early_stopping)
    ours = translate_batch(m, SOURCES, gen, max_len_a=100, max_len_b=100)
    with torch.no_grad():
        out = hf.generate(input_ids=src, attention_mask=(src != PAD).long(), num_beams=4, max_new_tokens=12,
                          do_sample=False, early_stopping=early_stopping, length_penalty=1.0,
                          bad_words_ids=[[PAD], [BOS]])
    assert ours == _strip(out)
    assert any(EOS in row for row in out.tolist())  # some beams ended on eos, not only at the length limit
    greedy = translate_batch(m, SOURCES, GenerationConfig(temperature=0.0, max_new_tokens=12), max_len_a=100,
                             max_len_b=100)
    with torch.no_grad():
        g = hf.generate(input_ids=src, attention_mask=(src != PAD).long(), num_beams=1, max_new_tokens=12,
                        do_sample=False, bad_words_ids=[[PAD], [BOS]])
    assert greedy == _strip(g)


@pytest.mark.parametrize("vocab", VOCABS)
def test_marian_import_roundtrip(tmp_path, vocab):
    m = tiny(seed=2, **VOCABS[vocab])
    export_marian(m, tmp_path / "marian")
    back = import_marian(tmp_path / "marian")
    assert back.cfg == m.cfg
    theirs = back.state_dict()
    for name, w in m.state_dict().items():
        assert torch.equal(w, theirs[name]), name
    src, tgt = _src_batch(), torch.tensor([[BOS, 4, 5]] * 3)
    with torch.no_grad():
        assert torch.allclose(m(src, tgt), back(src, tgt), atol=1e-6)


def test_marian_export_refuses_other_variants(tmp_path):
    with pytest.raises(ValueError, match="pre-LN|post-LN"):
        export_marian(tiny(norm_first=True), tmp_path / "a")
    with pytest.raises(ValueError, match="rope"):
        export_marian(tiny(position="rope"), tmp_path / "b")

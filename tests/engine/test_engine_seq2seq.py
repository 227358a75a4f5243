"""Seq2seq decoding: batched greedy equals the plain no-cache loop; batched beam search equals the same
search run one sentence at a time; finished sentences leave the batch; no_repeat_ngram_size and the
relative length limit hold."""
import torch

from zerollm.engine.config import GenerationConfig
from zerollm.engine.sampling import banned_ngram_tokens
from zerollm.engine.seq2seq import max_lengths, translate_batch, translate_ids
from zerollm.model.seq2seq import Seq2Seq, Seq2SeqConfig

PAD, BOS, EOS = 0, 1, 2
SOURCES = [[5, 9, 12, 7], [20, 21], [30, 31, 32, 33, 34, 35], [40]]


def tiny(seed=0):
    torch.manual_seed(seed)
    m = Seq2Seq(Seq2SeqConfig(vocab_size=60, d_model=32, n_head=4, n_enc_layer=2, n_dec_layer=2, d_ff=64,
                              dropout=0.0, max_seq_len=48, pad_id=PAD, bos_id=BOS, eos_id=EOS)).eval()
    with torch.no_grad():
        m.final_logits_bias[EOS] = 3.0
    return m


def reference_greedy(m, src, n):
    """The textbook loop: whole forward every step, no cache; pad and bos never chosen."""
    ys = [BOS]
    for _ in range(n):
        logits = m(torch.tensor([src + [EOS]]), torch.tensor([ys]))[0, -1]
        logits[[PAD, BOS]] = float("-inf")
        t = int(logits.argmax())
        if t == EOS:
            break
        ys.append(t)
    return ys[1:]


def test_batched_greedy_equals_reference_loop():
    m = tiny()
    gen = GenerationConfig(temperature=0.0, max_new_tokens=10)
    out = translate_batch(m, SOURCES, gen, max_len_a=100, max_len_b=100)
    assert out == [reference_greedy(m, s, 10) for s in SOURCES]


def spy_batch_sizes(m) -> list[int]:
    """Record the batch size of every decoder call of `m`."""
    sizes, decode = [], m.decode
    m.decode = lambda tgt, *a, **k: sizes.append(tgt.shape[0]) or decode(tgt, *a, **k)
    return sizes


def test_finished_sentences_leave_the_batch():
    """A sentence that reaches its limit stops costing decoder work, and the others' translations do not change."""
    m = tiny()
    sizes = spy_batch_sizes(m)
    gen = GenerationConfig(temperature=0.0, max_new_tokens=10)
    out = translate_batch(m, SOURCES, gen, max_len_a=1, max_len_b=0)  # limit: len(source) + 1 (its eos)
    assert sizes == [4, 4, 3, 2, 2, 1, 1]  # one decoder row per sentence still translating
    assert [len(o) for o in out] == [5, 3, 7, 2]
    assert out == [reference_greedy(m, s, len(s) + 1) for s in SOURCES]
    sizes.clear()  # beam search: 3 beams per sentence still searching
    gen = GenerationConfig(temperature=0.0, max_new_tokens=10, num_beams=3, early_stopping=True)
    translate_batch(m, SOURCES, gen, max_len_a=1, max_len_b=0)
    assert sizes[0] == 12 and sizes[-1] == 3 and sizes == sorted(sizes, reverse=True)
    assert all(n % 3 == 0 for n in sizes)


def test_batched_beam_equals_one_sentence_at_a_time():
    m = tiny(1)
    for es in (False, True, "never"):
        gen = GenerationConfig(temperature=0.0, max_new_tokens=10, num_beams=3, early_stopping=es)
        batched, scores = translate_batch(m, SOURCES, gen, return_scores=True, max_len_a=100, max_len_b=100)
        alone = [translate_batch(m, [s], gen, return_scores=True, max_len_a=100, max_len_b=100) for s in SOURCES]
        assert batched == [a[0][0] for a in alone]
        assert all(abs(x - a[1][0]) < 1e-4 for x, a in zip(scores, alone))
    # translate_ids sorts by length into batches and restores the input order
    gen = GenerationConfig(temperature=0.0, max_new_tokens=10, num_beams=3)
    assert translate_ids(m, SOURCES, gen, batch_size=2, max_len_a=100, max_len_b=100) == translate_batch(
        m, SOURCES, gen, max_len_a=100, max_len_b=100)


def test_no_repeat_ngram_and_relative_length():
    m = tiny(2)
    with torch.no_grad():
        m.final_logits_bias[EOS] = -10.0  # never stop early: lengths come from the limit
    for beams in (1, 3):
        gen = GenerationConfig(temperature=0.0, max_new_tokens=30, num_beams=beams, no_repeat_ngram_size=2)
        outs = translate_batch(m, SOURCES, gen, max_len_a=1.0, max_len_b=2)
        for src, out in zip(SOURCES, outs):
            seq = [BOS] + out
            assert all(seq[i + 1] not in banned_ngram_tokens(seq[:i + 1], 2) for i in range(len(seq) - 1))
            assert len(out) <= len(src) + 1 + 2  # a * (S + eos) + b
    assert max_lengths([4], GenerationConfig(max_new_tokens=3), 48, 1.5, 10) == [4]

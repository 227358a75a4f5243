"""Label smoothing equals torch's definition; BLEU/chrF are sacrebleu's."""
import pytest
import torch
import torch.nn.functional as F

from zerollm.objectives.seq2seq import bleu_scores, smoothed_loss


def test_label_smoothing_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    y = torch.randint(0, 11, (2, 5))
    y[1, 3:] = -100
    loss, nll = smoothed_loss(logits, y, 0.1)
    ref = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100, label_smoothing=0.1)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)
    assert nll.item() == pytest.approx(F.cross_entropy(logits.flatten(0, 1), y.flatten()).item(), abs=1e-6)


def test_bleu_scores_are_sacrebleus():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = ["私 は 学生 で す 。", "彼 は 来 た"], ["私 は 学生 で す 。", "彼 は 来 な かっ た 。"]
    s = bleu_scores(hyps, refs, "ja")
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score)
    assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert 0 < s["bleu"] < 100
    assert s["bleu_ja_mecab"] == pytest.approx(sacrebleu.corpus_bleu(
        ["私は学生です。", "彼は来た"], [["私は学生です。", "彼は来なかった。"]], tokenize="ja-mecab").score)
    assert bleu_scores(refs, refs)["bleu"] == pytest.approx(100.0)


@pytest.mark.parametrize("bias", [False, True])
def test_fused_projection_and_loss_equal_the_definition(monkeypatch, bias):
    """objectives/fused_ce.py (chunked projection + label-smoothed CE, gradient computed in the forward)
    gives smoothed_loss's value and the same gradients for the hidden rows, the weight and the bias."""
    import zerollm.objectives.fused_ce as fused

    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 50)  # 50 // 11 = 4 rows a chunk: 10 chunks, the last short
    torch.manual_seed(0)
    h = torch.randn(37, 16, requires_grad=True)
    w = torch.randn(11, 16, requires_grad=True)
    b = torch.randn(11, requires_grad=True) if bias else None
    y = torch.randint(0, 11, (37,))
    loss, nll = fused.linear_label_smoothed_ce(h, w, b, y, 0.1)
    (3 * loss).backward()
    got = [t.grad.clone() for t in (h, w, b) if t is not None]
    for t in (h, w, b):
        if t is not None:
            t.grad = None
    ref, ref_nll = smoothed_loss(h @ w.t() + (b if bias else 0), y, 0.1)
    (3 * ref).backward()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5)
    assert nll.item() == pytest.approx(ref_nll.item(), abs=1e-5)
    for g, t in zip(got, [t for t in (h, w, b) if t is not None]):
        torch.testing.assert_close(g, t.grad, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="ignored"):
        fused.linear_label_smoothed_ce(h, w, b, torch.full((37,), -100), 0.1)


def test_seq2seq_forward_with_targets_is_the_loss_of_its_logits():
    """model(src, tgt_in, targets=tgt_out) (the training path: padded rows skipped, fused loss) equals
    smoothed_loss over model(src, tgt_in)'s full logits, gradients included."""
    from zerollm.model.seq2seq import Seq2Seq, Seq2SeqConfig

    torch.manual_seed(0)
    m = Seq2Seq(Seq2SeqConfig(vocab_size=23, d_model=16, n_head=2, n_enc_layer=1, n_dec_layer=1, d_ff=32,
                              dropout=0.0, max_seq_len=16))
    src = torch.randint(3, 23, (3, 6))
    src[1, 4:] = 0
    tgt_in = torch.randint(3, 23, (3, 5))
    tgt_out = torch.randint(3, 23, (3, 5))
    tgt_out[2, 3:] = -100
    loss, nll = m(src, tgt_in, targets=tgt_out, label_smoothing=0.1)
    loss.backward()
    got = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    ref, ref_nll = smoothed_loss(m(src, tgt_in), tgt_out, 0.1)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5) and nll.item() == pytest.approx(ref_nll.item(), abs=1e-5)
    for n, p in m.named_parameters():
        torch.testing.assert_close(got[n], p.grad, atol=1e-6, rtol=1e-4, msg=n)


def test_translation_throughput_counts_real_tokens():
    """The loop's tokens/s for translation counts real source + target tokens (eos included), not padding."""
    from zerollm.data.parallel import collate
    from zerollm.objectives.seq2seq import Seq2SeqObjective

    batch = collate([([5, 6, 7], [8]), ([9], [10, 11])], pad_id=0, bos_id=1, eos_id=2)  # src 4+2, tgt 2+3
    assert Seq2SeqObjective(0.1, pad_id=0).batch_tokens(batch) == 6 + 5

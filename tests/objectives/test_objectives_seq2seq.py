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

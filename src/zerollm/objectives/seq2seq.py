"""Translation (encoder-decoder): label-smoothed cross entropy of the target given the source.

Batch = (src (B, S), tgt_in (B, T), tgt_out (B, T)) from data/parallel.py: the decoder reads
tgt_in = [bos, y_1 .. y_{T-1}] and is scored on tgt_out = [y_1 .. y_T, eos] (-100 on padding).

Label smoothing (Szegedy et al. 2016; Vaswani et al. 2017 sec. 5.4, eps = 0.1): the target distribution
puts 1 - eps on the reference token and eps spread uniformly over the vocabulary, so per position

    loss_t = (1 - eps) * (-log p(y_t))  +  eps * mean_v(-log p(v))

(what F.cross_entropy(label_smoothing=eps) computes). The metrics carry the plain NLL too, since that is
the number comparable across eps (and its exp is the perplexity).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from zerollm.objectives.base import IGNORE_INDEX


def smoothed_loss(logits: torch.Tensor, target: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(label-smoothed loss, plain NLL), both means over the positions with target != -100."""
    logp = F.log_softmax(logits.reshape(-1, logits.size(-1)).float(), -1)  # (N, V)
    y = target.reshape(-1)
    keep = y != IGNORE_INDEX
    nll = -logp.gather(-1, y.clamp_min(0)[:, None]).squeeze(-1)  # (N,)
    n = keep.sum().clamp_min(1)
    nll_mean = (nll * keep).sum() / n
    if not eps:
        return nll_mean, nll_mean
    uniform = -logp.mean(-1)  # (N,): cross entropy against the uniform distribution
    return ((1 - eps) * nll_mean + eps * (uniform * keep).sum() / n), nll_mean


class Seq2SeqObjective:
    name = "seq2seq"

    def __init__(self, label_smoothing: float = 0.1, pad_id: int = 0):
        self.eps, self.pad_id = label_smoothing, pad_id

    def batch_tokens(self, batch: tuple[torch.Tensor, ...]) -> int:
        """What the training loop's throughput counts: real source + real target tokens (no padding)."""
        return int((batch[0] != self.pad_id).sum()) + int((batch[2] != IGNORE_INDEX).sum())

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        """smoothed_loss, computed inside the model's forward by the fused projection + loss
        (objectives/fused_ce.py) on the real target positions only."""
        src, tgt_in, tgt_out = batch[0], batch[1], batch[2]
        loss, nll = model(src, tgt_in, targets=tgt_out, label_smoothing=self.eps)
        return loss, {"nll": float(nll)}


@torch.no_grad()
def evaluate_seq2seq(model: torch.nn.Module, batches) -> dict:
    """Mean target NLL (nats/token) over (src, tgt_in, tgt_out) batches: {"val_loss"}."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for src, tgt_in, tgt_out in batches:
        logits = model(src.to(device), tgt_in.to(device))
        y = tgt_out.to(device)
        total += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                       ignore_index=IGNORE_INDEX, reduction="sum"))
        count += int((y != IGNORE_INDEX).sum())
    model.train(was)
    return {"val_loss": total / count} if count else {}


def bleu_scores(hyps: list[str], refs: list[str], tgt_lang: str = "") -> dict:
    """Corpus BLEU and chrF with sacrebleu (Post 2018), the standard scorer. The corpus is pre-tokenized,
    so BLEU is taken on its own tokens (tokenize="none"); for a Japanese target also with sacrebleu's
    ja-mecab tokenizer on the text with the spaces removed (when mecab-python3 + ipadic are installed)."""
    import sacrebleu

    # force: the text is tokenized on purpose (sacrebleu would warn that it looks undetokenized)
    out = {"bleu": sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score,
           "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score}
    if tgt_lang == "ja":
        try:
            join = lambda xs: ["".join(x.split()) for x in xs]
            out["bleu_ja_mecab"] = sacrebleu.corpus_bleu(join(hyps), [join(refs)], tokenize="ja-mecab").score
        except (ImportError, RuntimeError, OSError):  # the optional Japanese tokenizer is not installed
            pass
    return out

"""Per-item metrics and their aggregation (mean ± standard error), computed as lm-evaluation-harness does.

Multiple choice by log-likelihood (lm-eval `ConfigurableTask.process_results`, output_type multiple_choice):

    acc      = 1[argmax_i ll_i            = gold]     ll_i = Σ log p(choice_i tokens | context)
    acc_norm = 1[argmax_i ll_i / len(c_i) = gold]     len(c_i) in characters of the choice string as the
                                                      task lists it (lm-eval: `completion_len`; the " "
                                                      delimiter before it is scored but not counted)

Standard error of a mean over n items (lm-eval `mean_stderr`): sqrt(Σ (x − x̄)² / (n − 1)) / sqrt(n).

Generative: GSM8K's strict match reads the number after "#### "; the flexible match takes the last number in
the text (lm-eval gsm8k's two filters). JSQuAD: exact match after trimming, and character F1 (JGLUE's
SQuAD-style F1 over characters, since Japanese has no spaces to split words on).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np


def mc_scores(lls: Sequence[float], choices: Sequence[str], gold: int) -> dict:
    lls = np.asarray(lls, dtype=np.float64)
    lengths = np.array([float(len(c)) for c in choices])
    return {"acc": float(np.argmax(lls) == gold), "acc_norm": float(np.argmax(lls / lengths) == gold)}


def mean_stderr(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    mean = math.fsum(xs) / n
    if n < 2:
        return mean, float("nan")
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var / n)


_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")  # lm-eval gsm8k "strict-match"
_FLEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # lm-eval gsm8k "flexible-extract" (last match)


def _clean_number(s: str) -> str:
    s = s.strip().replace(",", "").replace("$", "").rstrip(".")
    return s


def gsm8k_gold(answer: str) -> str:
    return _clean_number(answer.split("####")[-1])


def gsm8k_strict(text: str) -> str | None:
    m = _STRICT.search(text)
    return _clean_number(m.group(1)) if m else None


def gsm8k_flexible(text: str) -> str | None:
    found = _FLEX.findall(text)
    if not found:
        return None
    a, b = found[-1]
    return _clean_number(a or b)


def exact_match(pred: str, golds: Sequence[str]) -> float:
    return float(pred.strip() in {g.strip() for g in golds})


def char_f1(pred: str, golds: Sequence[str]) -> float:
    """Best over golds of F1 on character multisets (whitespace ignored)."""
    best = 0.0
    p = [c for c in pred if not c.isspace()]
    for g in golds:
        g = [c for c in g if not c.isspace()]
        common = sum((Counter(p) & Counter(g)).values())
        if common:
            prec, rec = common / len(p), common / len(g)
            best = max(best, 2 * prec * rec / (prec + rec))
        elif not p and not g:
            best = 1.0
    return best


__all__ = ["char_f1", "exact_match", "gsm8k_flexible", "gsm8k_gold", "gsm8k_strict", "mc_scores", "mean_stderr"]

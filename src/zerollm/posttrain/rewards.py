"""Verifiable rewards for RL (GRPO / PPO without a learned reward model).

GSM8K convention (Cobbe et al. 2021): a solution ends with a line `#### <answer>`; the answer is a number,
possibly with thousands separators or a currency sign. `parse_final_number` reads it as a float (the
answer of a free reasoning text, as a string, is chat.prompts.extract_answer_text). `exact_numeric_reward`
is 1 when the completion's final `#### …` number equals the reference numerically, else 0. `format_reward`
is 1 when the completion ends with a well-formed `#### <number>` line (a shaping signal that teaches the
answer format first).
"""
from __future__ import annotations

import re

from zerollm.data.sources import DataError

_ANSWER = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
_FORMAT = re.compile(r"####\s*\$?\s*-?[\d,]*\.?\d+\s*$")


def parse_final_number(text: str) -> float | None:
    """The number after the last `####`, as a float (thousands separators and `$` dropped), or None."""
    found = _ANSWER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def exact_numeric_reward(completion: str, answer: str | float | int) -> float:
    """1.0 if the completion's `#### x` equals the reference answer (itself a number or a GSM8K solution)."""
    if answer is None:
        return 0.0
    ref = answer if isinstance(answer, (int, float)) else parse_final_number(answer)
    if ref is None and isinstance(answer, str):
        try:
            ref = float(answer.replace(",", ""))
        except ValueError:
            return 0.0
    got = parse_final_number(completion)
    return float(got is not None and ref is not None and abs(got - float(ref)) < 1e-6)


def reference_number(answer) -> float | None:
    """The number a completion is graded against: a number, a GSM8K solution's `#### x`, or a numeric string."""
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return float(answer)
    if not isinstance(answer, str):
        return None
    ref = parse_final_number(answer)
    if ref is None:
        try:
            ref = float(answer.replace(",", ""))
        except ValueError:
            return None
    return ref


def check_gradeable(records: list[dict], source) -> None:
    """A DataError when no record has an answer the exact reward can grade (it would train on all zeros)."""
    if not any(reference_number(r.get("answer")) is not None for r in records):
        raise DataError(f"{source}: no record has a gradeable 'answer' (a number or a solution ending in "
                        f"'#### <number>'): the exact reward would be 0 for every sample")


def format_reward(completion: str) -> float:
    return float(_FORMAT.search(completion.strip()) is not None)


def combined_reward(completion: str, answer, format_weight: float = 0.1) -> float:
    """Exact-match reward plus a small format bonus."""
    return exact_numeric_reward(completion, answer) + format_weight * format_reward(completion)


REWARDS = {"exact": exact_numeric_reward, "format": lambda c, a: format_reward(c), "exact+format": combined_reward}

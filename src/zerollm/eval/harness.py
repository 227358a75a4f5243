"""lm-evaluation-harness adapter: `lm_eval --model zerollm --model_args pretrained=DIR --tasks ...`.

lm-eval (0.4.x) finds a model class in its registry; it has no plugin entry points, so the class must be
registered by importing this module before lm-eval's CLI runs. `python -m zerollm.eval.harness` does that and
then runs lm-eval's own CLI with the same arguments:

    python -m zerollm.eval.harness run --model zerollm --model_args pretrained=DIR,batch_size=16 \\
        --tasks piqa --include_path my_tasks/            # every lm_eval option works
    # or in Python: import zerollm.eval.harness; lm_eval.simple_evaluate(model="zerollm", ...)

The three request types map onto eval/lm.py's Scorer, so `lm_eval` and `zerollm eval` score identically:
loglikelihood → Scorer.loglikelihood (lm-eval's own context/continuation tokenization, batched by length),
loglikelihood_rolling → Scorer.loglikelihood_rolling (lm-eval's rolling windows), generate_until →
Scorer.generate (engine.Engine, greedy unless the task asks to sample; stop at `until`).
"""
from __future__ import annotations

import sys

import lm_eval.models  # noqa: F401  (fills the registry first: registering into an empty one hides "hf")
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from zerollm.eval.lm import Scorer


@register_model("zerollm")
class ZeroLLM(LM):
    """`pretrained`: any directory zerollm.loading.load reads; `adapter`: an optional PEFT LoRA adapter."""

    def __init__(self, pretrained: str, batch_size: int | str = 16, device: str = "cpu", adapter: str | None = None,
                 max_gen_toks: int = 256, **_ignored):
        super().__init__()
        import torch

        from zerollm.loading import load

        if str(device).startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"  # lm-eval's CLI passes its default device, cuda
        loaded = load(pretrained, device)
        if adapter:
            from zerollm.posttrain.lora import load_adapter, strip_lora

            load_adapter(loaded.model, adapter)
            strip_lora(loaded.model)
        if loaded.tokenizer is None:
            raise FileNotFoundError(f"{pretrained}: the model has no tokenizer")
        bs = 16 if str(batch_size).startswith("auto") else int(batch_size)
        self.scorer = Scorer(loaded.model, loaded.tokenizer, batch_size=bs)
        self.max_gen_toks = int(max_gen_toks)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.scorer.loglikelihood([r.args for r in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        return self.scorer.loglikelihood_rolling([r.args[0] for r in requests])

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        groups: dict[tuple, list[int]] = {}  # requests with the same stop strings/length run as one batch
        for i, r in enumerate(requests):
            kw = dict(r.args[1] or {})
            until = kw.get("until") or []
            until = (until,) if isinstance(until, str) else tuple(until)
            temperature = float(kw.get("temperature", 0.0)) if kw.get("do_sample") else 0.0
            groups.setdefault((until, int(kw.get("max_gen_toks", self.max_gen_toks)), temperature), []).append(i)
        out: list[str] = [""] * len(requests)
        for (until, max_new, temperature), idx in groups.items():
            texts = self.scorer.generate([requests[i].args[0] for i in idx], until=until, max_new_tokens=max_new,
                                         temperature=temperature)
            for i, t in zip(idx, texts):
                out[i] = t[0]
        return out


def main(argv: list[str] | None = None) -> None:
    """lm-eval's CLI with the zerollm model registered."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()


__all__ = ["ZeroLLM", "main"]

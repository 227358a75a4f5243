"""The Python API: one function per CLI stage, with the same names and arguments (re-exported from
zerollm/stages/, where each stage lives in one module).

    zerollm tokenizer train  ↔ tokenizer_train(inputs, out, vocab_size=...)        stages/tokenizer.py
    zerollm data prepare     ↔ data_prepare(inputs, tokenizer, out, ...)           stages/data.py
    zerollm pretrain         ↔ pretrain(config_or_yaml, overrides)                 stages/pretrain.py
    zerollm quickstart       ↔ quickstart(corpus=..., minutes=..., preset=...)     stages/pretrain.py
    zerollm sft|reward|dpo|grpo|ppo ↔ sft(config_or_yaml, overrides), ...           stages/posttrain.py
    zerollm generate         ↔ generate(model, prompt, ...)                        stages/generate.py
    zerollm chat             ↔ chat(model, system=...)                             stages/chat.py
    zerollm rag index / ask  ↔ rag_index(docs, out, ...) / rag_ask(index, question, model=...)   stages/rag.py
    zerollm convert / export ↔ convert(src, out, from_format="hf") / export(model, out, format=...)  stages/convert.py
    zerollm quantize / memory ↔ quantize(model, out, scheme=...) / memory(params=...)   stages/quantize.py
    zerollm serve            ↔ serve(model, host="127.0.0.1", port=8000, api_key=None)  stages/serve.py
    zerollm translate train / translate ↔ translate_train(config_or_yaml, overrides) / translate(model, texts)  stages/translate.py
    zerollm model info       ↔ model_info(preset=..., model=...)                    stages/model.py
    zerollm checkpoint consolidate ↔ checkpoint_consolidate(path, out)             stages/checkpoint.py
    zerollm scaling sweep / fit ↔ scaling_sweep(SweepConfig) / scaling_fit(dir)      stages/scaling.py
    zerollm estimate         ↔ estimate(params="7B", tokens="2T", ...)               stages/scaling.py
    zerollm eval / report    ↔ evaluate(model, tasks, out, ...) / report(runs, out)  stages/eval.py
    load(DIR) → Loaded(model, tokenizer, path, chat_template, stop_ids)             loading.py

Library modules never import this facade; it only re-exports.
"""
from __future__ import annotations

from zerollm.loading import Loaded, load, load_for_use
from zerollm.stages.chat import chat
from zerollm.stages.checkpoint import consolidate as checkpoint_consolidate
from zerollm.stages.convert import convert, export
from zerollm.stages.data import data_prepare
from zerollm.stages.eval import evaluate, report
from zerollm.stages.generate import generate
from zerollm.stages.model import model_info
from zerollm.stages.posttrain import dpo, grpo, ppo, reward, sft
from zerollm.stages.pretrain import PretrainConfig, QuickstartConfig, pretrain, quickstart
from zerollm.stages.quantize import memory, quantize
from zerollm.stages.rag import rag_ask, rag_index
from zerollm.stages.scaling import estimate, scaling_fit, scaling_sweep
from zerollm.stages.serve import serve
from zerollm.stages.tokenizer import tokenizer_compare, tokenizer_stats, tokenizer_train
from zerollm.stages.translate import translate, translate_train

__all__ = ["tokenizer_train", "tokenizer_stats", "tokenizer_compare", "data_prepare", "pretrain", "PretrainConfig",
           "quickstart", "QuickstartConfig", "sft", "reward", "dpo", "grpo", "ppo", "generate", "chat", "rag_index",
           "rag_ask", "convert", "export", "quantize", "memory", "serve", "model_info", "load", "load_for_use",
           "Loaded", "checkpoint_consolidate", "scaling_sweep", "scaling_fit", "estimate", "evaluate", "report", "translate_train",
           "translate"]

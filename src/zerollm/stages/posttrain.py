"""Post-training stages: `sft`, `reward`, `dpo`, `grpo`, `ppo` — each a config dataclass plus a function that
composes data, an objective (zerollm/objectives/) and the one training loop (train/loop.py).

    model dir (checkpoint / run / HF) ─┐
    data files (JSONL / JSON / parquet)┴─▶ stage ─▶ run dir/
                                                     manifest.json, config.yaml, metrics.jsonl, loss.png,
                                                     <stage>.png (stage figures), report.md,
                                                     checkpoints/step-N/ (exact resume: weights incl. LoRA,
                                                                          optimizer, RNG, data/rollout state)
                                                     model/    final plain checkpoint (LoRA merged) → next stage
                                                     adapter/  PEFT adapter (with --lora / --qlora)

Conversations are rendered in the starting model's own chat template when it has one (a model converted
from Hugging Face keeps its tokenizer's Jinja `chat_template`; loading.Loaded.chat_template), zerollm's
ChatML otherwise; the loss mask covers assistant tokens and their end-of-turn token either way.

`--lora` freezes the base and trains LoRA adapters (lora.py); `--qlora` first quantizes the frozen base
linear layers to NF4 (posttrain/qlora.py over model/quant.py's codec). RL stages (grpo, ppo) produce their
batches by sampling the current policy through the Engine (rl.py), so they run in the same loop with the same checkpoints.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from zerollm.chat.format import prompt_ids
from zerollm.config import load_config
from zerollm.loading import load
from zerollm.objectives import (
    DPOObjective,
    GRPOObjective,
    PPOObjective,
    RewardObjective,
    SFTObjective,
    add_value_head,
    evaluate_pairs,
    evaluate_sft,
    reference_logps,
    reward_margin,
)
from zerollm.posttrain import data as D
from zerollm.posttrain.lora import LoRAConfig, apply_lora, save_adapter, strip_lora, trainable_share
from zerollm.posttrain.rewards import REWARDS, check_gradeable, exact_numeric_reward
from zerollm.posttrain.rl import GRPORollouts, PPORollouts, Reference, completion_text, sample, sample_many
from zerollm.rundir import fenced, finish_report, plot_metrics, start_run
from zerollm.runtime import setup_runtime
from zerollm.train.checkpoint import save_checkpoint
from zerollm.train.distributed import barrier, cleanup, failure_guard, init_distributed
from zerollm.train.loop import TrainConfig, train
from zerollm.train.parallel import full_model


def _post_train_defaults() -> TrainConfig:
    return TrainConfig(steps=200, batch_size=8, seq_len=256, lr=1e-4, warmup_steps=10, weight_decay=0.0,
                       eval_every=50, eval_batches=10, ckpt_every=100, log_every=5)


@dataclass
class StageConfig:
    model: str = ""  # checkpoint / run / HF directory to start from
    data: list = field(default_factory=list)  # training files (JSONL, JSON list, parquet; dirs and globs)
    val_data: list = field(default_factory=list)  # held-out files; default: val_fraction of `data`
    val_fraction: float = 0.05
    max_examples: int = 0  # 0 = all
    max_len: int = 256  # tokens per example (prompt + response)
    out: str = "runs/posttrain"
    lora: bool = False
    qlora: bool = False  # LoRA over an NF4-quantized frozen base
    lora_config: LoRAConfig = field(default_factory=LoRAConfig)
    train: TrainConfig = field(default_factory=_post_train_defaults)
    epochs: float = 0.0  # > 0: train for this many passes over the training data (sets train.steps)
    resume: bool = False
    overwrite: bool = False  # `out` holds another run: move it aside (rundir.py) instead of refusing


@dataclass
class SFTConfig(StageConfig):
    out: str = "runs/sft"
    template: str = field(default="chat", metadata={"choices": ["chat", "alpaca"], "help": "chat: the model's chat "
                          "template (ChatML unless it brought one); alpaca: the raw Stanford Alpaca prompt"})
    packing: bool = False
    eval_answers: list = field(default_factory=list)  # {"question","answer"} files: greedy exact match
    eval_limit: int = 100
    eval_max_new_tokens: int = 64


@dataclass
class RewardConfig(StageConfig):
    out: str = "runs/reward"


@dataclass
class DPOConfig(StageConfig):
    out: str = "runs/dpo"
    beta: float = 0.1
    loss_type: str = "sigmoid"  # sigmoid | ipo
    label_smoothing: float = 0.0  # cDPO / robust DPO ε


@dataclass
class GRPOConfig(SFTConfig):
    out: str = "runs/grpo"
    group_size: int = 8
    prompts_per_step: int = 4
    max_new_tokens: int = 64
    temperature: float = 1.0
    beta: float = 0.04  # KL(π‖π_ref) weight
    clip: float = 0.2
    updates_per_rollout: int = 1  # GRPO's μ
    reward: str = "exact+format"  # rewards.REWARDS key
    loss_norm: str = "seq"  # seq (GRPO) | token (DAPO) | constant (Dr. GRPO): objectives.grpo_loss
    scale_rewards: bool = True  # divide advantages by the group std (False: Dr. GRPO)
    drop_uniform: bool = False  # leave all-equal-reward groups (zero advantage) out of the batch


@dataclass
class PPOConfig(StageConfig):
    out: str = "runs/ppo"
    reward_model: str = ""  # run/model dir of a `zerollm reward` run
    prompts_per_step: int = 8
    max_new_tokens: int = 32
    temperature: float = 1.0
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.1
    ppo_epochs: int = 4
    eval_limit: int = 32


# ----------------------------------------------------------------------------------------------------------
# shared plumbing


def _resolve(cls, cfg, overrides):
    if not isinstance(cfg, cls):
        return load_config(cls, cfg, overrides)
    return load_config(cls, None, overrides, base=cfg) if overrides else cfg


class Ctx:
    """What every stage sets up the same way: device, model (+LoRA), tokenizer, run dir, resume point."""

    def __init__(self, cfg: StageConfig, stage: str, value_head: bool = False):
        if not cfg.model:
            raise ValueError(f"{stage}: no starting model (set model=DIR or --model)")
        self.cfg, self.stage = cfg, stage
        self.device = setup_runtime(cfg.train.device)
        # under torchrun: one process group; every rank trains on its slice of each global batch
        # (train.parallel=ddp|fsdp|auto, docs/distributed.md); files are written by rank 0 only
        self.info = init_distributed(cfg.train.device, cfg.train.dist_timeout_s)
        self.device = self.info.device
        torch.manual_seed(cfg.train.seed)
        if cfg.qlora:  # NF4 base built tensor by tensor: the fp32 base is never resident as a whole
            from zerollm.posttrain.qlora import load_nf4_model

            loaded = load_nf4_model(cfg.model, cfg.lora_config.targets, device=self.device)
        else:
            loaded = load(cfg.model, self.device)
        self.model, self.tok = loaded.model, loaded.tokenizer
        # a converted model's own Jinja template (None: ChatML) renders every example and prompt of the stage
        self.chat_template = loaded.chat_template
        if self.tok is None:
            raise FileNotFoundError(f"{cfg.model}: no tokenizer/ directory")
        # wide models: freed activation blocks go back to the OS instead of piling up (runtime.py)
        setup_runtime(cfg.train.device, d_model=getattr(self.model.cfg, "d_model", None))
        self.model.train().requires_grad_(True)
        if cfg.qlora:  # no-op for layers load_nf4_model already quantized
            from zerollm.posttrain.qlora import quantize_nf4

            quantize_nf4(self.model, cfg.lora_config.targets)
        self.lora = cfg.lora or cfg.qlora
        if self.lora:
            apply_lora(self.model, cfg.lora_config)
        if value_head:
            if not hasattr(self.model, "value_head"):
                add_value_head(self.model)
            self.model.value_head.requires_grad_(True)
        self.run = start_run(cfg.out, stage, cfg, resume=cfg.resume, overwrite=cfg.overwrite, model=str(cfg.model),
                             lora=self.lora, write=self.info.is_main)
        barrier(self.info)
        self.run_dir, self.resume_from = self.run.dir, self.run.resume_from
        self.trainable, self.total = trainable_share(self.model)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """A prompt in the model's chat format, ending in the assistant header."""
        return prompt_ids(messages, self.tok, template=self.chat_template)

    def train(self, objective, data, evaluate=None) -> dict:
        if hasattr(data, "shard"):  # batch sources draw global batches; this rank takes its rows
            data.shard(self.info.rank, self.info.world_size)
        with failure_guard(self.info, self.cfg.train.dist_timeout_s):
            summary = train(self.model, objective, data, self.cfg.train, self.run_dir, model_cfg=self.model.cfg,
                            tokenizer=self.tok, chat_template=self.chat_template, evaluate=evaluate,
                            resume_from=self.resume_from, config_yaml=self.run.config_yaml, dist_info=self.info)
            self.model = full_model(self.model)  # train.parallel=fsdp: the gathered weights, for samples and saving
        return summary

    def finish(self, summary: dict, plots: list[tuple[str, list[str]]], lines: list[str],
               samples: list[tuple[str, str]] | None = None, keep_head: bool = False) -> dict:
        model, cfg = self.model, self.cfg
        if not self.info.is_main:  # rank 0 writes the model, adapter, plots and report
            cleanup(self.info)
            return summary
        if self.lora:
            save_adapter(model, self.run_dir / "adapter", base_model_name_or_path=str(cfg.model))
            summary["adapter"] = str(self.run_dir / "adapter")
        if not cfg.qlora:
            if self.lora:
                strip_lora(model)
            if not keep_head and hasattr(model, "value_head"):
                del model.value_head
            save_checkpoint(self.run_dir / "model", model, model.cfg, tokenizer=self.tok,
                            chat_template=self.chat_template, step=summary["steps"],
                            extra={"stage": self.stage, "value_head": keep_head})
            summary["model_dir"] = str(self.run_dir / "model")
        figures = []
        for name, keys in plots:
            png = plot_metrics(self.run_dir / "metrics.jsonl", keys, self.run_dir / f"{name}.png", f"{self.stage}: {name}")
            if png:
                figures.append(f"![{name}]({png.name})")
        share = self.trainable / max(self.total, 1)
        lines = [f"- trainable parameters: {self.trainable:,} of {self.total:,} ({share:.2%})"
                 + (" — LoRA" + (" over NF4 base (QLoRA)" if cfg.qlora else "") if self.lora else "")] + lines
        sections = [(f"{self.stage} results", "\n".join(lines))] + ([("Figures", "\n\n".join(figures))] if figures else [])
        for title, text in samples or []:
            sections.append((title, fenced(text)))
        summary.update(run_dir=str(self.run_dir), trainable_params=self.trainable, total_params=self.total)
        finish_report(self.run_dir, self.stage, model, cfg.train, summary, extra_sections=sections)
        cleanup(self.info)
        return summary


def _set_epochs(cfg: StageConfig, n_rows: int) -> None:
    """`epochs` → train.steps from the training set's size (rows per epoch / batch size)."""
    if cfg.epochs:
        cfg.train.steps = D.steps_for_epochs(cfg.epochs, n_rows, cfg.train.batch_size)


def _split(items: list, cfg: StageConfig) -> tuple[list, list]:
    items = list(items)
    random.Random(cfg.train.seed).shuffle(items)
    n_val = max(1, int(len(items) * cfg.val_fraction)) if len(items) > 1 else 0
    return items[n_val:], items[:n_val]


def greedy_texts(model, tok, prompts: list, max_new_tokens: int, template: str | None = None) -> list[str]:
    """Greedy completions of (messages, record) prompts, batched through the engine (rl.sample_many)."""
    ids = [prompt_ids(m, tok, template=template) for m, _ in prompts]
    groups = sample_many(model, tok, ids, 1, max_new_tokens, 0.0, [0] * len(ids))
    return [completion_text(tok, g[0]) for g in groups]


@torch.no_grad()
def exact_match(model, tok, prompts: list, max_new_tokens: int, template: str | None = None) -> float:
    """Greedy decoding on (messages, record) prompts; share whose `#### x` equals record["answer"]."""
    if not prompts:
        return float("nan")
    texts = greedy_texts(model, tok, prompts, max_new_tokens, template)
    return sum(exact_numeric_reward(t, r["answer"]) for t, (_, r) in zip(texts, prompts)) / len(prompts)


def greedy_samples(model, tok, prompts: list, max_new_tokens: int, n: int = 3, template: str | None = None) -> str:
    texts = greedy_texts(model, tok, prompts[:n], max_new_tokens, template)
    return "\n\n".join(f"> {m[-1]['content']}\n{t}" for (m, _), t in zip(prompts[:n], texts))


# ----------------------------------------------------------------------------------------------------------
# stages


def sft(cfg: SFTConfig | str | None = None, overrides=None) -> dict:
    """Supervised fine-tuning on conversations (loss on assistant tokens incl. <|im_end|>)."""
    cfg = _resolve(SFTConfig, cfg, overrides)
    ctx = Ctx(cfg, "sft")
    limit = cfg.max_examples or None
    examples = D.load_sft_examples(cfg.data, ctx.tok, cfg.max_len, limit, ctx.chat_template, cfg.template)
    train_ex, val_ex = (examples, D.load_sft_examples(cfg.val_data, ctx.tok, cfg.max_len, None, ctx.chat_template,
                                                      cfg.template)) \
        if cfg.val_data \
        else _split(examples, cfg)
    pad = D.pad_id_of(ctx.tok)
    data = D.SFTData(train_ex, cfg.train.batch_size, pad, cfg.max_len, cfg.packing, seed=cfg.train.seed)
    _set_epochs(cfg, len(data.rows))
    val = D.SFTData(val_ex, cfg.train.batch_size, pad, shuffle=False) if val_ex else None
    answers = D.load_prompts(cfg.eval_answers, cfg.eval_limit) if cfg.eval_answers else []

    def evaluate(m):
        out = evaluate_sft(m, val.iter_all(cfg.train.batch_size)) if val else {}
        if answers:
            out["exact_match"] = exact_match(m, ctx.tok, answers, cfg.eval_max_new_tokens, ctx.chat_template)
        return out

    summary = ctx.train(SFTObjective(), data, evaluate)
    ev = summary["evals"]
    lines = [f"- examples: {len(train_ex)} train, {len(val_ex)} held out" + (" (packed)" if cfg.packing else "")]
    if answers and ev:
        lines.append(f"- held-out exact match: {ev[0].get('exact_match', float('nan')):.1%} (step {ev[0]['step']}) → "
                     f"**{ev[-1].get('exact_match', float('nan')):.1%}** (step {ev[-1]['step']}), {len(answers)} prompts")
    samples = [("Samples after SFT", greedy_samples(ctx.model, ctx.tok, answers, cfg.eval_max_new_tokens,
                                                         template=ctx.chat_template))] if answers else []
    return ctx.finish(summary, [("sft", ["val_loss", "exact_match"])], lines, samples)


def _preference_split(cfg, ctx):
    pairs = D.load_preference_pairs(cfg.data, ctx.tok, cfg.max_len, cfg.max_examples or None, ctx.chat_template)
    if cfg.val_data:
        return pairs, D.load_preference_pairs(cfg.val_data, ctx.tok, cfg.max_len, template=ctx.chat_template)
    return _split(pairs, cfg)


def reward(cfg: RewardConfig | str | None = None, overrides=None) -> dict:
    """Reward model: scalar head on the transformer, Bradley–Terry loss on (chosen, rejected) pairs."""
    cfg = _resolve(RewardConfig, cfg, overrides)
    ctx = Ctx(cfg, "reward", value_head=True)
    train_p, val_p = _preference_split(cfg, ctx)
    pad = D.pad_id_of(ctx.tok)
    data = D.PreferenceData(train_p, cfg.train.batch_size, pad, seed=cfg.train.seed)
    _set_epochs(cfg, len(data.pairs))
    val = D.PreferenceData(val_p, cfg.train.batch_size, pad, shuffle=False)

    def evaluate(m):
        return evaluate_pairs(m, val, cfg.train.batch_size, reward_margin)

    summary = ctx.train(RewardObjective(), data, evaluate)
    ev = summary["evals"]
    lines = [f"- pairs: {len(train_p)} train, {len(val_p)} held out"]
    if ev:
        lines.append(f"- held-out pairwise accuracy: {ev[0]['pair_accuracy']:.1%} → **{ev[-1]['pair_accuracy']:.1%}**"
                     f"; mean margin {ev[0]['margin']:.3f} → {ev[-1]['margin']:.3f}")
    return ctx.finish(summary, [("reward", ["pair_accuracy", "margin", "accuracy"])], lines, keep_head=True)


def dpo(cfg: DPOConfig | str | None = None, overrides=None) -> dict:
    """Direct preference optimization against the start model as reference (log-probs computed once)."""
    cfg = _resolve(DPOConfig, cfg, overrides)
    ctx = Ctx(cfg, "dpo")
    train_p, val_p = _preference_split(cfg, ctx)
    pad = D.pad_id_of(ctx.tok)
    data = D.PreferenceData(train_p, cfg.train.batch_size, pad, seed=cfg.train.seed)
    _set_epochs(cfg, len(data.pairs))
    val = D.PreferenceData(val_p, cfg.train.batch_size, pad, shuffle=False)
    # π_ref = the start model (LoRA's B = 0, so the same function); deterministic, so recomputed on resume
    obj = DPOObjective(reference_logps(ctx.model, data), cfg.beta, cfg.loss_type, cfg.label_smoothing)
    val_obj = DPOObjective(reference_logps(ctx.model, val), cfg.beta, cfg.loss_type, cfg.label_smoothing)

    def evaluate(m):
        return evaluate_pairs(m, val, cfg.train.batch_size, val_obj.pair_margin)

    summary = ctx.train(obj, data, evaluate)
    ev = summary["evals"]
    lines = [f"- pairs: {len(train_p)} train, {len(val_p)} held out; β={cfg.beta}, loss {cfg.loss_type}"
             + (f", label smoothing {cfg.label_smoothing}" if cfg.label_smoothing else "")]
    if ev:
        lines.append(f"- held-out preference accuracy: {ev[0]['pair_accuracy']:.1%} → **{ev[-1]['pair_accuracy']:.1%}**;"
                     f" implicit reward margin {ev[0]['margin']:.3f} → **{ev[-1]['margin']:.3f}**")
    return ctx.finish(summary, [("dpo", ["pair_accuracy", "margin", "reward_accuracy", "reward_margin"])], lines)


def grpo(cfg: GRPOConfig | str | None = None, overrides=None) -> dict:
    """GRPO on verifiable rewards: group sampling, group-normalized advantages, k3 KL to the start model."""
    cfg = _resolve(GRPOConfig, cfg, overrides)
    if cfg.epochs:
        raise ValueError("grpo: epochs is for sft, reward and dpo (RL samples its data); set train.steps")
    if cfg.reward not in REWARDS:
        raise ValueError(f"grpo: unknown reward {cfg.reward!r}; known: {', '.join(REWARDS)}")
    ctx = Ctx(cfg, "grpo")
    prompts = D.load_prompts(cfg.data, cfg.max_examples or None)
    if cfg.reward != "format":
        check_gradeable([rec for _, rec in prompts], cfg.data)
    answers = D.load_prompts(cfg.eval_answers, cfg.eval_limit) if cfg.eval_answers else []
    data = GRPORollouts(ctx.model, Reference(ctx.model, ctx.lora), ctx.tok, prompts, REWARDS[cfg.reward],
                        prompts_per_step=cfg.prompts_per_step, group_size=cfg.group_size,
                        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                        updates_per_rollout=cfg.updates_per_rollout, seed=cfg.train.seed,
                        accuracy_fn=exact_numeric_reward, scale_rewards=cfg.scale_rewards,
                        drop_uniform=cfg.drop_uniform, chat_template=ctx.chat_template)

    def evaluate(m):
        if not answers:
            return {}
        return {"exact_match": exact_match(m, ctx.tok, answers, cfg.max_new_tokens, ctx.chat_template)}

    summary = ctx.train(GRPOObjective(cfg.clip, cfg.beta, GRPORollouts.stat_names, cfg.temperature, cfg.loss_norm,
                                      cfg.max_new_tokens), data, evaluate)
    ev = summary["evals"]
    lines = [f"- {len(prompts)} prompts, {cfg.prompts_per_step} per step × group of {cfg.group_size}; reward "
             f"{cfg.reward}; β={cfg.beta}, clip {cfg.clip}, μ={cfg.updates_per_rollout}, T={cfg.temperature}; loss norm "
             f"{cfg.loss_norm}, std-scaled advantages {cfg.scale_rewards}, uniform groups dropped {cfg.drop_uniform}"]
    if ev and answers:
        lines.append(f"- held-out exact match (greedy): {ev[0]['exact_match']:.1%} → **{ev[-1]['exact_match']:.1%}**"
                     f" ({len(answers)} prompts)")
    samples = [("Samples after GRPO", greedy_samples(ctx.model, ctx.tok, answers, cfg.max_new_tokens,
                                                          template=ctx.chat_template))] if answers else []
    return ctx.finish(summary, [("grpo", ["reward", "accuracy", "exact_match", "kl", "informative"])], lines, samples)


def ppo(cfg: PPOConfig | str | None = None, overrides=None, property_fn=None) -> dict:
    """PPO (RLHF): policy + value head, frozen reference, per-token KL penalty, GAE, reward-model score."""
    cfg = _resolve(PPOConfig, cfg, overrides)
    if cfg.epochs:
        raise ValueError("ppo: epochs is for sft, reward and dpo (RL samples its data); set train.steps")
    if not cfg.reward_model:
        raise ValueError("ppo: no reward model (set reward_model=DIR from `zerollm reward`)")
    ctx = Ctx(cfg, "ppo", value_head=True)
    rm = load(cfg.reward_model, ctx.device, value_head=True).model
    rm.requires_grad_(False)
    prompts = D.load_prompts(cfg.data, cfg.max_examples or None)
    train_pr, val_pr = _split(prompts, cfg)
    val_pr = val_pr[:cfg.eval_limit]
    ref = Reference(ctx.model, ctx.lora)
    data = PPORollouts(ctx.model, ref, rm, ctx.tok, train_pr, prompts_per_step=cfg.prompts_per_step,
                       max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, kl_coef=cfg.kl_coef,
                       gamma=cfg.gamma, lam=cfg.lam, updates_per_rollout=cfg.ppo_epochs, seed=cfg.train.seed,
                       property_fn=property_fn, chat_template=ctx.chat_template)

    @torch.no_grad()
    def evaluate(m):
        # held-out prompts, sampled with fixed seeds: reward-model score, KL to the reference, property
        ev = PPORollouts(m, ref, rm, ctx.tok, val_pr, prompts_per_step=len(val_pr), max_new_tokens=cfg.max_new_tokens,
                         temperature=cfg.temperature, kl_coef=cfg.kl_coef, gamma=cfg.gamma, lam=cfg.lam,
                         seed=12345, property_fn=property_fn, chat_template=ctx.chat_template)
        stats = ev._rollout()[-1][0].tolist()
        return {"val_score": stats[0], "val_kl": stats[1], "val_property": stats[3]}

    summary = ctx.train(PPOObjective(cfg.clip, cfg.value_clip, cfg.vf_coef, PPORollouts.stat_names), data, evaluate)
    ev = summary["evals"]
    lines = [f"- {len(train_pr)} train prompts, {len(val_pr)} held out; {cfg.prompts_per_step} rollouts per batch, "
             f"{cfg.ppo_epochs} epochs; KL coef {cfg.kl_coef}, γ={cfg.gamma}, λ={cfg.lam}"]
    if ev:
        lines.append(f"- held-out reward-model score: {ev[0]['val_score']:.3f} → **{ev[-1]['val_score']:.3f}**; "
                     f"KL to reference {ev[0]['val_kl']:.3f} → {ev[-1]['val_kl']:.3f} nats/sequence")
        if property_fn is not None:
            lines.append(f"- held-out property score: {ev[0]['val_property']:.3f} → **{ev[-1]['val_property']:.3f}**")
    texts = []
    for i, (msgs, _) in enumerate(val_pr[:3]):
        (c,) = sample(ctx.model, ctx.tok, ctx.prompt_ids(msgs), 1, cfg.max_new_tokens, cfg.temperature, i)
        texts.append(f"> {msgs[-1]['content']}\n{completion_text(ctx.tok, c)}")
    return ctx.finish(summary, [("ppo", ["val_score", "val_kl", "score", "kl"])], lines,
                      [("Samples after PPO", "\n\n".join(texts))])


STAGES = {"sft": (sft, SFTConfig), "reward": (reward, RewardConfig), "dpo": (dpo, DPOConfig),
          "grpo": (grpo, GRPOConfig), "ppo": (ppo, PPOConfig)}

__all__ = ["sft", "reward", "dpo", "grpo", "ppo", "SFTConfig", "RewardConfig", "DPOConfig", "GRPOConfig",
           "PPOConfig", "StageConfig", "exact_match", "STAGES"]

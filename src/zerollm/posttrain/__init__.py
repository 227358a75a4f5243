"""Post-training: chat SFT, LoRA/QLoRA, reward model, DPO, GRPO and PPO on the one training loop.

    data.py        formats (messages, ShareGPT, Alpaca, prompt–completion, preference) → padded batches
    lora.py        LoRA layers, merge/unmerge, PEFT-format adapters;  qlora.py  LoRA over a 4-bit NF4 base
    rl.py          rollouts through engine.generate as batch sources for the loop
                   (the losses — SFT, reward, DPO/IPO, PPO, GRPO — are in zerollm.objectives)
    rewards.py     verifiable rewards (GSM8K `#### answer`, format);  tasks.py  generated checkable tasks
    stages.py      `sft`, `reward`, `dpo`, `grpo`, `ppo` stage functions and their config dataclasses
"""
from zerollm.posttrain.stages import (DPOConfig, GRPOConfig, PPOConfig, RewardConfig, SFTConfig, dpo, grpo, ppo,
                                      reward, sft)

__all__ = ["sft", "reward", "dpo", "grpo", "ppo", "SFTConfig", "RewardConfig", "DPOConfig", "GRPOConfig", "PPOConfig"]

"""Post-training pieces (the stages that compose them are zerollm/stages/posttrain.py: sft, reward, dpo, grpo, ppo).

    data.py        formats (messages, ShareGPT, Alpaca, prompt–completion, preference) → padded batches
    lora.py        LoRA layers, merge/unmerge, PEFT-format adapters;  qlora.py  LoRA over a 4-bit NF4 base
    rl.py          rollouts through the engine as batch sources for the loop
                   (the losses — SFT, reward, DPO/IPO, PPO, GRPO — are in zerollm.objectives)
    rewards.py     verifiable rewards (GSM8K `#### answer`, format);  tasks.py  generated checkable tasks
"""

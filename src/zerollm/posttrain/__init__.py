"""Post-training pieces (the stages that compose them are zerollm/stages/posttrain.py: sft, reward, dpo, grpo, ppo).

    data.py        formats (messages, ShareGPT, Alpaca, prompt–completion, preference) → padded batches
    lora.py        LoRA layers, merge/unmerge, PEFT-format adapters;  nf4.py  4-bit NF4 base for QLoRA
    objectives.py  SFT, Bradley–Terry reward, DPO/IPO, PPO (GAE, clipped losses, KL), GRPO losses
    rl.py          rollouts through the engine as batch sources for the loop
    rewards.py     verifiable rewards (GSM8K `#### answer`, format);  tasks.py  generated checkable tasks
"""

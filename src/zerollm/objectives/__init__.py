"""Training objectives: what a batch means and what loss it gives, for the one training loop.

Every objective has `name` and `loss(model, batch) -> (loss tensor, metrics dict)` (base.Objective);
the loop (zerollm.train.loop.train) knows nothing else about it.

    base.py        Objective protocol, IGNORE_INDEX (-100: no loss), token/sequence log-probs, value head
    lm.py          pretraining: next-token cross entropy (LMObjective), evaluate_lm (loss, bits per byte)
    sft.py         supervised fine-tuning: the same loss on assistant tokens only (SFTObjective)
    preference.py  reward model (Bradley–Terry) and DPO/IPO on chosen/rejected pairs
    seq2seq.py     translation: label-smoothed cross entropy of target given source (Seq2SeqObjective)
    rl.py          PPO (GAE, clipped policy and value losses, KL-shaped rewards) and GRPO (group advantages, k3 KL)
"""
from zerollm.objectives.base import (IGNORE_INDEX, Objective, add_value_head, hidden_and_values, sequence_logps,
                                     token_logps, unwrap)
from zerollm.objectives.lm import LMObjective, evaluate_lm, next_token_loss
from zerollm.objectives.preference import (DPOObjective, RewardObjective, bradley_terry_loss, dpo_loss,
                                           evaluate_pairs, last_target_index, reference_logps, reward_margin,
                                           scores)
from zerollm.objectives.rl import (GRPO_NORMS, GRPOObjective, PPOObjective, gae, group_advantages, grpo_loss,
                                   k3_kl, kl_shaped_rewards, ppo_policy_loss, ppo_value_loss)
from zerollm.objectives.seq2seq import Seq2SeqObjective, bleu_scores, evaluate_seq2seq, smoothed_loss
from zerollm.objectives.sft import SFTObjective, evaluate_sft

__all__ = ["IGNORE_INDEX", "Objective", "unwrap", "token_logps", "sequence_logps", "add_value_head",
           "hidden_and_values", "next_token_loss", "LMObjective", "evaluate_lm", "SFTObjective", "evaluate_sft",
           "last_target_index", "scores", "bradley_terry_loss", "RewardObjective", "evaluate_pairs",
           "reward_margin", "dpo_loss", "reference_logps", "DPOObjective", "gae", "ppo_policy_loss",
           "ppo_value_loss", "kl_shaped_rewards", "PPOObjective", "group_advantages", "k3_kl", "GRPO_NORMS",
           "grpo_loss", "GRPOObjective", "Seq2SeqObjective", "evaluate_seq2seq", "smoothed_loss", "bleu_scores"]

"""Scaling laws on your own data, and planning a run before paying for it.

    estimate.py   training FLOPs (6ND + attention), memory per device (weights, grads, AdamW, activations;
                  DDP / FSDP; activation checkpointing), time at an MFU on a named accelerator, cost
    sweep.py      a grid or IsoFLOP sweep of model sizes x token budgets, each point trained by the one loop
    fit.py        L(N, D) = E + A/N^α + B/D^β (Chinchilla approach 3) and IsoFLOP parabolas (approach 2),
                  bootstrap intervals, plots and a report
"""

"""Preallocated key/value cache for incremental decoding.

During generation every new token attends to the keys/values of all earlier tokens. Recomputing them costs
O(T) work per token; caching them makes each decode step one forward over a single token. Memory is
allocated once, at `max_len`, so decoding never reallocates or copies the past:

    k[layer]: (B, Hkv, max_len, hd)    slots [0, pos) are filled, pos is shared by all rows and layers

A forward pass with a cache writes its T new keys/values at slots [pos, pos+T) of every layer
(`update`, called by each attention layer) and then advances `pos` by T (`advance`, called once by the
model). `crop(n)` rolls back (speculative decoding, retries); `reset()` reuses the memory for a new prompt.

Batched prompts of different lengths are supported by left padding: row b's prompt is right-aligned, its
first `pad[b]` slots are marked invalid with `set_left_padding(pad)`, and the model is called with explicit
`positions` (B, T) so RoPE/learned positions start at 0 for every row. The attention mask then hides the
invalid slots (`attn_mask`).
"""
from __future__ import annotations

import torch


class KVCache:
    """Per-layer key/value tensors of shape (B, n_kv_head, max_len, head_dim) and the fill level `pos`."""

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.batch_size, self.max_len = batch_size, max_len
        self.pos = 0  # number of filled slots
        self.valid: torch.Tensor | None = None  # (B, max_len) bool; None = every slot below pos is valid

    @classmethod
    def for_model(cls, model, batch_size: int = 1, max_len: int | None = None,
                  dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "KVCache":
        """A cache shaped for `model` (a Transformer), on the model's device and dtype unless told."""
        cfg = model.cfg
        p = next(model.parameters())
        max_len = cfg.max_seq_len if max_len is None else min(max_len, cfg.max_seq_len)
        return cls(cfg.n_layer, batch_size, cfg.n_kv_head, max_len, cfg.head_dim,
                   dtype=dtype or p.dtype, device=device or p.device)

    # --- used by the model -------------------------------------------------------------------------------

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this call's k/v (B, Hkv, T, hd) at slots [pos, pos+T) of `layer`; return views of slots
        [0, pos+T), i.e. every key/value the new queries may look at: (B, Hkv, L, hd)."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions > max_len {self.max_len}")
        self.k[layer][:, :, self.pos:end] = k
        self.v[layer][:, :, self.pos:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """Mark n more slots as filled (the model calls this once per forward, after all layers)."""
        self.pos += n

    def attn_mask(self, T: int) -> torch.Tensor | None:
        """Boolean mask (True = may attend) for T new queries at slots [pos, pos+T) over keys [0, pos+T).

        None when plain causality suffices: a single new token sees every filled slot, and a prefill into
        an empty cache is ordinary causal attention (the caller then uses SDPA's `is_causal`).
        Otherwise (T, L) causal-with-offset: query i (absolute slot pos+i) sees keys j <= pos+i; with left
        padding (B, 1, T, L), additionally hiding invalid slots. A query always sees its own slot so that a
        padding row never has an all-masked (NaN) softmax.
        """
        if self.valid is None and (T == 1 or self.pos == 0):
            return None
        L = self.pos + T
        device = self.k[0].device
        q_slot = torch.arange(self.pos, L, device=device)[:, None]  # (T, 1)
        k_slot = torch.arange(L, device=device)[None, :]  # (1, L)
        mask = k_slot <= q_slot  # (T, L)
        if self.valid is None:
            return mask
        valid = self.valid[:, None, None, :L]  # (B, 1, 1, L)
        return (mask & valid) | (k_slot == q_slot)  # (B, 1, T, L)

    # --- used by the engine ------------------------------------------------------------------------------

    def set_left_padding(self, pad: torch.Tensor | list[int]) -> None:
        """Mark the first pad[b] slots of row b as padding (never attended to)."""
        pad = torch.as_tensor(pad, device=self.k[0].device).view(-1, 1)  # (B, 1)
        self.valid = torch.arange(self.max_len, device=self.k[0].device)[None, :] >= pad  # (B, max_len)

    def select_rows(self, rows: torch.Tensor) -> None:
        """Row r becomes (a copy of) old row rows[r]: beams take their parent's past (beam search), and
        finished rows leave the batch when `rows` is shorter. Copies the filled slots [0, pos) only."""
        for kv in (self.k, self.v):
            for i, t in enumerate(kv):
                new = t.new_empty((rows.numel(), *t.shape[1:]))
                new[:, :, :self.pos] = t[:, :, :self.pos].index_select(0, rows)
                kv[i] = new
        if self.valid is not None:
            self.valid = self.valid.index_select(0, rows)
        self.batch_size = rows.numel()

    def reset(self) -> None:
        """Empty the cache (keeps the memory)."""
        self.pos = 0
        self.valid = None

    def crop(self, n: int) -> None:
        """Keep only the first n slots (drop the rest), e.g. to reject speculative tokens."""
        if not 0 <= n <= self.pos:
            raise ValueError(f"crop({n}) outside [0, {self.pos}]")
        self.pos = n

    @property
    def remaining(self) -> int:
        return self.max_len - self.pos

    def __repr__(self) -> str:
        B, Hkv, L, hd = self.k[0].shape
        return f"KVCache(layers={len(self.k)}, B={B}, n_kv_head={Hkv}, max_len={L}, head_dim={hd}, pos={self.pos})"

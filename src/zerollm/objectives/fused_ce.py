"""Output projection + label-smoothed cross entropy in one autograd Function, over chunks of rows: the
performance twin of objectives/seq2seq.py::smoothed_loss (which stays the readable definition; tests hold
the two equal in value and gradient).

With logits z = h W^T + b over V classes, p = softmax(z), target y and smoothing eps, the per-row loss is

    loss = (1 - eps) * (-log p_y)  +  eps * mean_v(-log p_v)

and its gradient has a closed form (Szegedy et al. 2016, sec. 7): d loss / d z = p - q, with
q = (1 - eps) * onehot(y) + eps / V. So the forward pass can finish the backward's work chunk by chunk:

    for each chunk of rows:  z = h_c W^T + b;  log p = log_softmax(z);  loss += ...
                             g = p - q  (in place on log p);  dh_c = g W;  dW += g^T h_c;  db += sum(g)

and the backward only scales the stored dh, dW, db by the incoming gradient. The full (N, V) logits never
exist: the memory is one chunk's, and on a CPU the chunks stay below the allocator's mmap threshold, so no
step pays page faults on fresh 50 MB buffers (with N = 2000 rows and V = 8000 that was a third of the
loss's time). The same trick as Liger-Kernel's fused linear cross entropy (Hsu et al. 2024).
"""
from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 21  # rows per chunk = this / V: ~8 MB of fp32 logits at a time


class _LinearLabelSmoothedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, target: torch.Tensor, eps: float):
        N, V = h.shape[0], w.shape[0]
        n = max(1, N)
        want_h, want_w, want_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if want_w else None
        grad_b = torch.zeros(V, dtype=torch.float32, device=w.device) if (want_b and b is not None) else None
        wc = w.to(h.dtype)
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        nll = torch.zeros((), dtype=torch.float32, device=h.device)
        step = max(1, CHUNK_ELEMENTS // V)
        for i in range(0, N, step):
            hc, yc = h[i:i + step], target[i:i + step]
            z = hc @ wc.t()
            if b is not None:
                z += b.to(z.dtype)
            logp = torch.log_softmax(z.float(), -1)  # (c, V)
            nll_c = -logp.gather(-1, yc[:, None]).sum()
            nll += nll_c
            loss += (1 - eps) * nll_c - eps * logp.mean(-1).sum() if eps else nll_c
            if grad_h is None and grad_w is None and grad_b is None:
                continue
            g = logp.exp_()  # p, in place of log p
            if eps:
                g.sub_(eps / V)
            g[torch.arange(g.shape[0], device=g.device), yc] -= 1 - eps  # p - q
            g.div_(n)  # the loss is a mean over the N rows
            if grad_h is not None:
                grad_h[i:i + step] = (g.to(wc.dtype) @ wc).to(h.dtype)
            if grad_w is not None:
                grad_w.addmm_(g.t(), hc.float())
            if grad_b is not None:
                grad_b += g.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.w_dtype = w.dtype
        nll_mean = nll / n
        ctx.mark_non_differentiable(nll_mean)
        return loss / n, nll_mean

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_nll):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = lambda g, dtype: None if g is None else (g * grad_loss).to(dtype)
        return (scale(grad_h, grad_h.dtype if grad_h is not None else None), scale(grad_w, ctx.w_dtype),
                scale(grad_b, ctx.w_dtype), None, None)


def linear_label_smoothed_ce(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, target: torch.Tensor,
                             eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """h (N, D) hidden rows, w (V, D) output projection, b (V,) or None, target (N,) class ids (real rows
    only: select them first) -> (mean label-smoothed loss, mean plain NLL without gradient)."""
    if target.numel() and int(target.min()) < 0:
        raise ValueError("linear_label_smoothed_ce: target holds ignored (-100) rows; select the real rows first")
    return _LinearLabelSmoothedCE.apply(h, w, b, target, float(eps))


__all__ = ["linear_label_smoothed_ce"]

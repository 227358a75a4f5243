"""Training a Unigram language-model tokenizer (Kudo 2018, "Subword Regularization: Improving Neural
Network Translation Models with Multiple Subword Candidates"), the algorithm of SentencePiece
(Kudo & Richardson 2018).

A Unigram LM gives every piece x a probability p(x); a text's segmentation x_1..x_k has probability
prod p(x_i), and encoding picks the most probable segmentation (Viterbi). Training alternates:

1. **Seed vocabulary**: all characters plus the most frequent substrings (score = frequency x length),
   counted with vectorized rolling hashes over the corpus (substrings seen once are dropped, and a
   substring whose prefix was seen once is never extended). SentencePiece uses an enhanced suffix array
   for the same job.
2. **EM**: the E-step runs forward-backward over every chunk's segmentation lattice and adds up the
   expected count of each piece; the M-step sets log p(x) from the counts. Like SentencePiece we use the
   Bayesian ("DP-ified") M-step: log p(x) = digamma(count(x)) - digamma(sum of counts), and pieces with an
   expected count < 0.5 are dropped.
3. **Pruning**: for each piece, estimate how much the corpus likelihood drops if it is removed and its
   Viterbi occurrences are re-segmented with the rest of the vocabulary (SentencePiece's approximation);
   keep the best `shrinking_factor` (0.75) of the pieces. Repeat 2-3 until the vocabulary is 1.1x the
   target, then keep the top-scoring pieces (and every required character).

The corpus is handled as unique *chunks* (script runs inside `▁`-words, see `spm.split_chunks`) with
counts: pieces never cross a chunk boundary (SentencePiece's split_by_whitespace/unicode_script/number
rules), so the lattice of a sentence is the product of its chunks' lattices. All chunks are laid out
"position-major" (chunks sorted by length, node (c, t) at `off[t] + c`), so one forward step handles
position t of every chunk at once with numpy: the sequential loop runs max-chunk-length times, not
once per character.
"""
from __future__ import annotations

import collections
import math

import numpy as np

from zerollm.tokenizer.spm import WS, required_characters, split_chunks

_B = np.uint64(0x100000001B3)  # rolling-hash multiplier (odd, FNV prime)
NEG = -1e30


def digamma(x: np.ndarray) -> np.ndarray:
    """psi(x) for x > 0: recurrence up to 7, then the asymptotic series (as SentencePiece does)."""
    x = np.asarray(x, dtype=np.float64).copy()
    result = np.zeros_like(x)
    for _ in range(7):
        small = x < 7
        if not small.any():
            break
        result[small] -= 1.0 / x[small]
        x[small] += 1.0
    x = x - 0.5
    xx = 1.0 / x
    xx2 = xx * xx
    xx4 = xx2 * xx2
    return result + np.log(x) + xx2 / 24 - 7 / 960 * xx4 + 31 / 8064 * xx4 * xx2 - 127 / 30720 * xx4 * xx4


class ChunkLattices:
    """Every chunk's segmentation lattice at once. Node (c, t) (chunk c, after t characters) lives at
    `off[t] + rank[c]`; chunks are sorted by length descending so the live chunks at depth t are a prefix."""

    def __init__(self, chunks: list[str], weights: np.ndarray, max_len: int):
        order = np.argsort([-len(c) for c in chunks], kind="stable")
        self.chunks = [chunks[i] for i in order]
        self.weights = np.asarray(weights, dtype=np.float64)[order]
        self.lens = np.array([len(c) for c in self.chunks], dtype=np.int64)
        self.max_len = max_len
        T = int(self.lens.max()) if len(self.lens) else 0
        self.T = T
        # n[t] = chunks with len >= t (nodes at depth t); off[t] = first node at depth t
        counts = np.bincount(self.lens, minlength=T + 1)
        self.n = np.cumsum(counts[::-1])[::-1].astype(np.int64)
        self.off = np.concatenate([[0], np.cumsum(self.n)]).astype(np.int64)
        self.num_nodes = int(self.off[-1])
        # characters in chunk-major order, and the node each one ends at
        text = "".join(self.chunks)
        self.codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) + np.uint64(1)
        starts = np.concatenate([[0], np.cumsum(self.lens)[:-1]]).astype(np.int64)
        chunk_of = np.repeat(np.arange(len(self.chunks)), self.lens)
        self.rel = np.arange(len(self.codes)) - starts[chunk_of]  # 0-based char position in its chunk
        self.chunk_of = chunk_of
        self.end_node = self.off[self.rel + 1] + chunk_of  # node after this char
        self.final = self.off[self.lens] + np.arange(len(self.chunks))  # each chunk's last node
        self.depth = np.repeat(np.arange(T + 1), self.n)  # depth (chars consumed) of every node

    def hashes(self):
        """Yield (L, mask, hash) for L = 1..max_len: rolling hash of the L chars ending at each char."""
        h = np.zeros(len(self.codes), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for L in range(1, self.max_len + 1):
                prev = np.empty_like(h)
                prev[0] = 0
                prev[1:] = h[:-1]
                h = prev * _B + self.codes
                yield L, self.rel >= L - 1, h

    # ---------------------------------------------------------------- lattice edges
    def build_edges(self, piece_hash: np.ndarray, piece_len: np.ndarray) -> None:
        """Every edge of every lattice: a vocabulary piece matching the chunk text at that place.
        Kept twice, sorted by end node (forward pass) and by start node (backward pass)."""
        ends, lens, pids = [], [], []
        for L, mask, h in self.hashes():
            ids = np.nonzero(piece_len == L)[0]
            if len(ids) == 0:
                continue
            order = np.argsort(piece_hash[ids])
            sh = piece_hash[ids][order]
            pos = np.nonzero(mask)[0]
            hv = h[pos]
            j = np.minimum(np.searchsorted(sh, hv), len(sh) - 1)
            hit = sh[j] == hv
            ends.append(self.end_node[pos[hit]])
            lens.append(np.full(int(hit.sum()), L, dtype=np.int64))
            pids.append(ids[order[j[hit]]].astype(np.int64))
        end, L, pid = np.concatenate(ends), np.concatenate(lens), np.concatenate(pids)
        depth = self.depth[end]
        start = end - (self.off[depth] - self.off[depth - L])
        fwd = np.argsort(end, kind="stable")
        bwd = np.argsort(start, kind="stable")
        self.fwd = {"start": start[fwd], "end": end[fwd], "pid": pid[fwd]}
        self.bwd = {"start": start[bwd], "end": end[bwd], "pid": pid[bwd]}

    def remap(self, keep: np.ndarray) -> None:
        """Pieces were removed (`keep` mask over old ids): renumber edges, drop those of removed pieces."""
        new_id = np.full(len(keep), -1, dtype=np.int64)
        new_id[keep] = np.arange(int(keep.sum()))
        for edges in (self.fwd, self.bwd):
            pid = new_id[edges["pid"]]
            ok = pid >= 0
            for k in ("start", "end"):
                edges[k] = edges[k][ok]
            edges["pid"] = pid[ok]

    @staticmethod
    def _groups(nodes: np.ndarray, depth: np.ndarray, T: int):
        """Per depth: the slice of (sorted) edges and their group starts (one group per node)."""
        first = np.ones(len(nodes), dtype=bool)
        first[1:] = nodes[1:] != nodes[:-1]
        gstart = np.nonzero(first)[0]
        bounds = np.searchsorted(depth[nodes], np.arange(T + 2))
        gb = np.searchsorted(gstart, bounds)
        return gstart, bounds, gb

    def _sweep(self, scores: np.ndarray, reduce: str, backward: bool = False):
        """Forward (alpha, over edges grouped by end node) or backward (beta, grouped by start node)
        log-sum-exp ("sum") or max ("max") sweep. Returns node values and, for "max", best edge per node."""
        edges = self.bwd if backward else self.fwd
        key, other = ("start", "end") if backward else ("end", "start")
        nodes, src, sc = edges[key], edges[other], scores[edges["pid"]]
        gstart, bounds, gb = self._groups(nodes, self.depth, self.T)
        grp = np.zeros(len(nodes), dtype=np.int64)  # group (= target node) index of every edge
        grp[gstart[1:]] = 1
        grp = np.cumsum(grp)
        val = np.full(self.num_nodes, NEG)
        if backward:
            val[self.final] = 0.0
            order = range(self.T - 1, -1, -1)
        else:
            val[: int(self.n[0])] = 0.0
            order = range(1, self.T + 1)
        best_edge = np.full(self.num_nodes, -1, dtype=np.int64) if reduce == "max" else None
        for t in order:
            a, b = int(bounds[t]), int(bounds[t + 1])
            if a == b:
                continue
            v = val[src[a:b]] + sc[a:b]
            g = gstart[int(gb[t]):int(gb[t + 1])] - a
            tgt = nodes[a + g]
            mx = np.maximum.reduceat(v, g)
            rep = mx[grp[a:b] - int(gb[t])]
            if reduce == "max":
                hit = np.nonzero(v >= rep)[0]
                best_edge[nodes[a + hit]] = a + hit
                val[tgt] = mx
            else:
                val[tgt] = mx + np.log(np.add.reduceat(np.exp(v - rep), g))
        return val, best_edge

    def forward_backward(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        """Expected count of every piece under the current model, and the corpus log-likelihood."""
        alpha, _ = self._sweep(scores, "sum")
        beta, _ = self._sweep(scores, "sum", backward=True)
        z = alpha[self.final]
        e = self.fwd
        c = e["end"] - self.off[self.depth[e["end"]]]  # chunk of each edge
        post = np.exp(alpha[e["start"]] + scores[e["pid"]] + beta[e["end"]] - z[c]) * self.weights[c]
        expected = np.bincount(e["pid"], weights=post, minlength=len(scores))
        return expected, float((z * self.weights).sum())

    def viterbi(self, scores: np.ndarray, exclude_whole: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Best segmentation of every chunk: flat (piece id, chunk) arrays of all pieces used.
        `exclude_whole` forbids the edge covering a whole chunk (for 'second best' of a piece)."""
        sc = scores
        if exclude_whole:
            e = self.fwd
            is_final = np.zeros(self.num_nodes, dtype=bool)
            is_final[self.final] = True
            whole = (e["start"] < int(self.n[0])) & is_final[e["end"]]
            sc = scores[e["pid"]].copy()
            sc[whole] = NEG
            saved = self.fwd
            self.fwd = {**e, "pid": np.arange(len(sc))}
            try:
                _, best_edge = self._sweep(sc, "max")
            finally:
                self.fwd = saved
        else:
            _, best_edge = self._sweep(sc, "max")
        e = self.fwd
        pids, owners = [], []
        node = self.final[self.lens > 0]
        while len(node):
            k = best_edge[node]
            ok = k >= 0
            node, k = node[ok], k[ok]
            pids.append(e["pid"][k])
            owners.append(node - self.off[self.depth[node]])
            node = e["start"][k]
            node = node[node >= int(self.n[0])]
        if not pids:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(pids).astype(np.int64), np.concatenate(owners)


def _unique_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(x, return_inverse=True) by one argsort (faster than numpy's hash path here)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    first = np.ones(len(xs), dtype=bool)
    first[1:] = xs[1:] != xs[:-1]
    inv = np.empty(len(x), dtype=np.int64)
    inv[order] = np.cumsum(first) - 1
    return xs[first], inv


def count_substrings(lat: ChunkLattices, max_len: int, allowed: np.ndarray, min_count: float = 2.0):
    """Frequent substrings (length 2..max_len) of the chunks: (hash, length, count, end char index).
    `allowed[i]` is False for characters that may not appear inside a piece (rare chars, and `▁` except
    at the start of a chunk). Apriori: a substring is extended only if it occurred >= min_count times."""
    out_h, out_len, out_cnt, out_pos = [], [], [], []
    w = lat.weights[lat.chunk_of]
    alive = allowed.copy()  # alive[p]: the substring ending at p (current L) is frequent and allowed
    for L, mask, h in lat.hashes():
        if L == 1:
            continue
        # a substring of length L ending at p is a candidate if its length L-1 prefix (ending p-1) is alive
        prev_alive = np.zeros_like(alive)
        prev_alive[1:] = alive[:-1]
        cand = np.nonzero(mask & prev_alive & allowed)[0]
        if len(cand) == 0:
            break
        uh, inv = _unique_inverse(h[cand])
        cnt = np.bincount(inv, weights=w[cand])
        good = cnt[inv] >= min_count
        alive = np.zeros_like(alive)
        alive[cand[good]] = True
        first = np.full(len(uh), -1, dtype=np.int64)
        first[inv[::-1]] = cand[::-1]  # first occurrence of each distinct substring
        keep = cnt >= min_count
        out_h.append(uh[keep])
        out_len.append(np.full(int(keep.sum()), L))
        out_cnt.append(cnt[keep])
        out_pos.append(first[keep])
    if not out_h:
        return (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    return (np.concatenate(out_h), np.concatenate(out_len), np.concatenate(out_cnt), np.concatenate(out_pos))


def train_unigram_pieces(sentences, vocab_size: int, *, num_meta: int, max_piece_len: int = 16,
                         character_coverage: float = 0.9995, seed_size: int = 1_000_000,
                         shrinking_factor: float = 0.75, num_sub_iterations: int = 2,
                         max_chunk_len: int = 64, unk_char: str = "\u2585",
                         log=None) -> list[tuple[str, float]]:
    """Learn `vocab_size - num_meta` pieces with scores (log probabilities), best first.
    `sentences` are already normalized (with `▁`)."""
    say = log or (lambda msg: None)
    counter: collections.Counter = collections.Counter()
    for s in sentences:
        counter.update(split_chunks(s))
    # required characters: the most frequent ones covering `character_coverage` of all occurrences
    char_count, required = required_characters(counter, vocab_size, num_meta, character_coverage)
    target = vocab_size - num_meta
    req_set = set(required)
    rare = [ch for ch in char_count if ch not in req_set]
    chunks, weights = [], []
    for chunk, c in counter.items():
        if rare and any(ch not in req_set for ch in chunk):
            chunk = "".join(ch if ch in req_set else unk_char for ch in chunk)
        for i in range(0, len(chunk), max_chunk_len):
            chunks.append(chunk[i:i + max_chunk_len])
            weights.append(c)
    lat = ChunkLattices(chunks, np.array(weights, dtype=np.float64), max_piece_len)
    say(f"unigram: {len(counter)} unique chunks, {len(lat.codes)} chars, {len(required)} required chars")

    # seed pieces: characters (score = count) + frequent substrings (score = count * length)
    ws_code = np.uint64(ord(WS) + 1)
    allowed = lat.codes != np.uint64(ord(unk_char) + 1)
    allowed &= (lat.codes != ws_code) | (lat.rel == 0)  # `▁` only at the start of a piece
    sh, slen, scnt, spos = count_substrings(lat, max_piece_len, allowed)
    top = np.argsort(-(scnt * slen), kind="stable")[: max(0, seed_size - len(required))]
    text = "".join(lat.chunks)
    char_start = spos[top] - slen[top] + 1
    pieces = list(required) + [text[a:b] for a, b in zip(char_start.tolist(), (spos[top] + 1).tolist())]
    piece_hash = np.concatenate([np.array([ord(ch) + 1 for ch in required], dtype=np.uint64), sh[top]])
    piece_len = np.concatenate([np.ones(len(required), dtype=np.int64), slen[top]])
    freq = np.concatenate([np.array([char_count[ch] for ch in required], dtype=np.float64),
                           scnt[top] * slen[top]])
    scores = np.log(freq) - np.log(freq.sum())
    # the unknown-character sentinel: an always-available edge with a low score, never in the output
    pieces.append(unk_char)
    piece_hash = np.append(piece_hash, np.uint64(ord(unk_char) + 1))
    piece_len = np.append(piece_len, 1)
    scores = np.append(scores, 0.0)
    is_char = piece_len == 1
    say(f"unigram: {len(pieces) - 1} seed pieces")

    desired = int(target * 1.1)
    lat.build_edges(piece_hash, piece_len)  # the vocabulary only shrinks from here: edges are remapped
    rnd = 0
    while True:
        for _ in range(num_sub_iterations):
            scores[-1] = scores[:-1].min() - 10.0
            expected, loglik = lat.forward_backward(scores)
            expected[-1] = 0
            keep = (expected >= 0.5) | is_char
            keep[-1] = True
            pieces, piece_hash, piece_len, is_char, expected = _subset(
                keep, pieces, piece_hash, piece_len, is_char, expected)
            if not keep.all():
                lat.remap(keep)
            total = expected[:-1].sum()
            # characters are kept even when unused (floor 0.5, the M-step's own threshold)
            scores = digamma(np.maximum(expected, np.where(is_char, 0.5, 1e-9))) - digamma(total)
            say(f"unigram round {rnd}: {len(pieces) - 1} pieces, log-likelihood per chunk "
                f"{loglik / lat.weights.sum():.4f}")
        if len(pieces) - 1 <= desired:
            break
        keep = _prune(lat, pieces, piece_hash, piece_len, scores, is_char, desired, shrinking_factor)
        pieces, piece_hash, piece_len, is_char, scores = _subset(keep, pieces, piece_hash, piece_len,
                                                                 is_char, scores)
        lat.remap(keep)
        rnd += 1

    # finalize: required characters always, then the best-scoring pieces up to the target size
    final = {}
    min_score = float(scores[:-1].min())
    for i, p in enumerate(pieces[:-1]):
        if is_char[i] and p in req_set:
            final[p] = float(scores[i])
    penalty = 0.0
    for ch in sorted(req_set - set(final)):
        final[ch] = min_score + penalty
        penalty += 1e-4
    for i in np.argsort(-scores[:-1], kind="stable"):
        if len(final) >= target:
            break
        final.setdefault(pieces[i], float(scores[i]))
    if len(final) < target:  # as spm_train with hard_vocab_limit
        raise ValueError(f"vocab_size {vocab_size} is too high for this corpus: only {len(final) + num_meta} "
                         f"pieces found; use vocab_size <= {len(final) + num_meta}")
    return sorted(final.items(), key=lambda kv: (-kv[1], kv[0]))


def _subset(keep, pieces, *arrays):
    pieces = [p for p, k in zip(pieces, keep) if k]
    return (pieces, *[a[keep] for a in arrays])


def _prune(lat, pieces, piece_hash, piece_len, scores, is_char, desired, shrinking_factor):
    """SentencePiece's PruneSentencePieces: drop the pieces whose removal costs the least likelihood."""
    V = len(pieces)
    # 1. each multi-char piece's best segmentation without itself (its "alternatives")
    multi = np.nonzero(~is_char[:-1])[0]
    plat = ChunkLattices([pieces[i] for i in multi], np.ones(len(multi)), lat.max_len)
    plat.build_edges(piece_hash, piece_len)
    best_single = np.zeros(V, dtype=bool)
    plat_order = np.argsort([-len(pieces[i]) for i in multi], kind="stable")  # plat's chunk order
    owner_piece = multi[plat_order]
    _, v_owner = plat.viterbi(scores)  # is the piece itself its own best segmentation?
    n_seg = np.bincount(v_owner, minlength=len(multi))
    best_single[owner_piece[n_seg == 1]] = True
    alt_pid, alt_owner = plat.viterbi(scores, exclude_whole=True)
    # 2. Viterbi counts on the corpus and how many chunk-weights contain each piece
    pid, owner = lat.viterbi(scores)
    freq = np.bincount(pid, weights=lat.weights[owner], minlength=V)
    uniq = np.sort(pid * len(lat.chunks) + owner)  # distinct (piece, chunk) pairs
    uniq = uniq[np.append(True, uniq[1:] != uniq[:-1])]
    F = np.bincount(uniq // len(lat.chunks), weights=lat.weights[uniq % len(lat.chunks)], minlength=V)
    F /= lat.weights.sum()
    # 3. loss of removing piece i: its occurrences move to its alternatives
    total = freq[:-1].sum()
    logsum = math.log(total)
    alt_piece = owner_piece[alt_owner]  # the piece each alternative belongs to
    n_alt = np.bincount(alt_piece, minlength=V)
    with np.errstate(divide="ignore", invalid="ignore"):
        logsum_alt = np.log(total + freq * (n_alt - 1))
        contrib = np.log(freq[alt_pid] + freq[alt_piece]) - logsum_alt[alt_piece]
        logprob_alt = np.bincount(alt_piece, weights=contrib, minlength=V)
        logprob_sp = np.log(freq) - logsum
        loss = F * (logprob_sp - logprob_alt)
    keep = np.zeros(V, dtype=bool)
    keep[is_char] = True
    keep[-1] = True
    removable = np.zeros(V, dtype=bool)
    removable[multi] = True
    removable &= best_single & (freq > 0) & (n_alt > 0)
    no_alt = np.zeros(V, dtype=bool)
    no_alt[multi] = best_single[multi] & (freq[multi] > 0) & (n_alt[multi] == 0)
    keep |= no_alt
    size = max(desired, int(shrinking_factor * (V - 1)))
    budget = size - int(keep[:-1].sum())
    cand = np.nonzero(removable)[0]
    cand = cand[np.argsort(-loss[cand], kind="stable")][: max(0, budget)]
    keep[cand] = True
    return keep

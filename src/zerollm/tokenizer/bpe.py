"""Byte-level BPE: the trainer (incremental pair counts), the tiktoken-backed encoder, save and load.

Byte Pair Encoding for subwords (Sennrich, Haddow & Birch 2016, "Neural Machine Translation of Rare Words
with Subword Units", ACL) starts from single symbols and repeatedly merges the most frequent adjacent pair
into a new symbol. Byte-level BPE (GPT-2, Radford et al. 2019) starts from the 256 byte values, so every
string is encodable and nothing is ever "unknown".

Vocabulary layout (ids == tiktoken "ranks"):

    0 .. 255                   the single bytes 0x00 .. 0xFF
    256 .. 256+M-1             learned tokens, in the order they were learned (rank = merge priority)
    256+M .. vocab_size-1      special tokens (`<|bos|>`, `<|eos|>`, ...; see base.default_special_tokens)

Training (`train_bpe`), the efficient way:

 1. Pre-tokenize every text with the regex (pretokenize.py) and count the *unique* chunks:
    {b" the": 61234, b" cat": 97, ...}. Merges never cross chunks, so a chunk seen 61k times is
    processed once with weight 61234 (`count_chunks`; optionally in worker processes).
 2. Count adjacent pairs over the unique chunks (weighted) and index pair -> set of chunk ids holding it.
 3. Loop: take the most frequent pair (a, b) from a max-heap; create token c = bytes(a) + bytes(b); rewrite
    only the chunks in index[(a, b)], left to right. For each occurrence (x, a, b, y) -> (x, c, y) the pair
    counts change by: (x,a) -= f, (x,c) += f, (b,y) -= f, (c,y) += f (f = chunk frequency). So each merge
    costs time proportional to the chunks it touches, never a full recount.
 4. The heap uses lazy invalidation: entries are (count, pair) snapshots. A popped entry whose count is
    stale is re-pushed with the current count (or dropped); pairs whose count grows are pushed anew.
(`learn_merges` has the details, including the trick that makes the Python fast: token ids stored as
characters, so rewriting a chunk is `str.split` + `str.join` in C.)

Tie-breaking (deterministic): the highest count wins; among equal counts, the lexicographically smallest
pair of token ids (a, b) wins (lower bytes / earlier-learned tokens first). Occurrences inside a chunk are
merged left to right without overlap (merging (a, a) into c turns "aaa" into "ca"). If a merge yields bytes
that are already a token (via a different split; not seen in practice), the existing id is reused and no new
token is added. bpe_reference.train_bpe_reference is the textbook loop (recount every pair for every
merge) with these same rules; the tests prove both learn identical merges.

Encoding is done by tiktoken (Rust): split with the same regex, then inside each chunk repeatedly merge the
adjacent pair whose concatenation has the lowest rank. bpe_reference.py is the same algorithm in a few
lines of Python, and the tests prove the two agree.

Tokenizer directory format (docs/architecture.md):

    manifest.json    {"kind": "tokenizer", "format_version": 1, "algorithm": "bpe", "pattern": <regex>,
                      "special_tokens": {"<|bos|>": 4080, ...}, "roles": {"bos": "<|bos|>", ...},
                      "vocab_size": 4096, "num_merges": 3824, "hash": <sha256>, "created": ..., ...}
    ranks.tiktoken   tiktoken's own format: one line per mergeable token, `base64(token bytes) rank\\n`,
                     sorted by rank, ranks 0..n-1 (loadable with tiktoken.load.load_tiktoken_bpe)

`hash` = sha256 of the canonical JSON of {algorithm, pattern, special_tokens, roles}, a newline, then the
exact bytes of ranks.tiktoken. Equal hashes mean identical tokenization; the data pipeline records it.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import collections
import gc
import heapq
import json
import multiprocessing
import operator
import warnings
from pathlib import Path
from typing import AbstractSet, Iterable, Iterator, Mapping, Sequence

import regex
import tiktoken

from zerollm.artifacts import atomic_dir, atomic_write_bytes, read_manifest, sha256_bytes, write_manifest
from zerollm.tokenizer.base import (AllowedSpecial, DEFAULT_ROLES, Tokenizer, default_num_threads,
                                    default_special_tokens)
from zerollm.tokenizer.pretokenize import DEFAULT_PATTERN, compile_pattern, resolve_pattern

MAX_VOCAB_SIZE = 2 ** 17
RANKS_FILE = "ranks.tiktoken"


class BPETokenizer(Tokenizer):
    """A byte-level BPE tokenizer: mergeable ranks + pre-tokenization regex + special tokens.

    `mergeable_ranks` maps token bytes -> rank (== id) and must hold ranks 0..n-1 including all 256 single
    bytes; special token ids must be n, n+1, ... (any order). `roles` maps "bos"/"eos"/"pad" to special
    token strings (default: `<|bos|>`, `<|eos|>`, `<|pad|>` when present)."""

    algorithm = "bpe"

    def __init__(self, mergeable_ranks: Mapping[bytes, int], pattern: str = DEFAULT_PATTERN,
                 special_tokens: Mapping[str, int] | None = None, roles: Mapping[str, str] | None = None,
                 name: str = "zerollm-bpe"):
        self._ranks = dict(mergeable_ranks)
        self._pattern = resolve_pattern(pattern)
        self._special = dict(special_tokens or {})
        n = len(self._ranks)
        id_to_bytes: list[bytes | None] = [None] * (n + len(self._special))
        for token, rank in self._ranks.items():
            if not isinstance(rank, int) or not 0 <= rank < n or id_to_bytes[rank] is not None:
                raise ValueError(f"mergeable ranks must be 0..{n - 1} without duplicates; bad rank {rank!r}")
            id_to_bytes[rank] = token
        missing = [b for b in range(256) if bytes([b]) not in self._ranks]
        if missing:
            raise ValueError(f"mergeable ranks lack {len(missing)} single-byte tokens (e.g. {bytes([missing[0]])!r}); "
                             "a byte-level BPE needs all 256")
        for tok, i in self._special.items():
            if not tok or not isinstance(i, int) or not n <= i < len(id_to_bytes) or id_to_bytes[i] is not None:
                raise ValueError(f"special token {tok!r} has id {i!r}; special ids must be distinct and "
                                 f"fill {n}..{len(id_to_bytes) - 1} (right after the {n} mergeable tokens)")
            id_to_bytes[i] = tok.encode("utf-8")
        self._id_to_bytes: list[bytes] = id_to_bytes  # type: ignore[assignment]
        if roles is None:
            roles = {r: t for r, t in DEFAULT_ROLES.items() if t in self._special}
        for role, tok in roles.items():
            if tok not in self._special:
                raise ValueError(f"role {role!r} names {tok!r}, which is not a special token")
        self._roles = dict(roles)
        self._hash: str | None = None
        self._enc = tiktoken.Encoding(name, pat_str=self._pattern, mergeable_ranks=self._ranks,
                                      special_tokens=self._special)

    # ---- vocabulary ---------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._id_to_bytes)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def roles(self) -> dict[str, str]:
        return dict(self._roles)

    @property
    def pattern(self) -> str:
        return self._pattern

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        return dict(self._ranks)

    @property
    def num_merges(self) -> int:
        return len(self._ranks) - 256

    @property
    def tiktoken_encoding(self) -> tiktoken.Encoding:
        """The underlying tiktoken.Encoding (for callers that want its extra methods)."""
        return self._enc

    def token_bytes(self, token_id: int) -> bytes:
        if not 0 <= token_id < len(self._id_to_bytes):
            raise ValueError(f"token id {token_id} out of range for vocab_size {self.vocab_size}")
        return self._id_to_bytes[token_id]

    # ---- encode / decode ----------------------------------------------------------------------------
    def _allowed(self, allowed_special: AllowedSpecial) -> AbstractSet[str] | None:
        """None for "none"; otherwise the set of special strings to turn into ids."""
        if allowed_special == "none":
            return None
        if allowed_special == "all":
            return set(self._special)
        if isinstance(allowed_special, str):
            raise ValueError(f'allowed_special must be "none", "all" or a set of special tokens, '
                             f"got {allowed_special!r}")
        unknown = set(allowed_special) - set(self._special)
        if unknown:
            raise ValueError(f"allowed_special names unknown special tokens: {sorted(unknown)}")
        return set(allowed_special)

    def encode(self, text: str, allowed_special: AllowedSpecial = "none") -> list[int]:
        allowed = self._allowed(allowed_special)
        if not allowed:  # specials (if any) are encoded as ordinary text
            return self._enc.encode_ordinary(text)
        return self._enc.encode(text, allowed_special=allowed, disallowed_special=())

    def encode_batch(self, texts: Sequence[str], allowed_special: AllowedSpecial = "none",
                     num_threads: int | None = None) -> list[list[int]]:
        """Encode many texts on `num_threads` threads (tiktoken releases the GIL while encoding)."""
        allowed = self._allowed(allowed_special)
        num_threads = num_threads or default_num_threads()
        texts = list(texts)
        if num_threads == 1 or len(texts) == 1:
            return [self.encode(t, allowed_special=allowed_special) for t in texts]
        if not allowed:
            return self._enc.encode_ordinary_batch(texts, num_threads=num_threads)
        return self._enc.encode_batch(texts, num_threads=num_threads, allowed_special=allowed,
                                      disallowed_special=())

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = ids if isinstance(ids, list) else list(ids)
        try:
            return self._enc.decode_bytes(ids)
        except (KeyError, OverflowError, TypeError):
            bad = next((i for i in ids if not isinstance(i, int) or not 0 <= i < self.vocab_size), None)
            raise ValueError(f"cannot decode token id {bad!r} (vocab_size {self.vocab_size})") from None

    # ---- persistence --------------------------------------------------------------------------------
    def _ranks_file_bytes(self) -> bytes:
        return b"".join(base64.b64encode(tok) + b" %d\n" % rank
                        for rank, tok in enumerate(self._id_to_bytes[:len(self._ranks)]))

    def _definition(self) -> dict:
        return {"algorithm": self.algorithm, "pattern": self._pattern, "special_tokens": self._special,
                "roles": self._roles}

    @property
    def hash(self) -> str:
        if self._hash is None:
            header = json.dumps(self._definition(), sort_keys=True, ensure_ascii=False).encode("utf-8")
            self._hash = sha256_bytes(header + b"\n" + self._ranks_file_bytes())
        return self._hash

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        with atomic_dir(directory, "tokenizer") as tmp:
            atomic_write_bytes(tmp / RANKS_FILE, self._ranks_file_bytes())
            write_manifest(tmp, "tokenizer", **self._definition(), vocab_size=self.vocab_size,
                           num_merges=self.num_merges, hash=self.hash)
        return directory

    @classmethod
    def load(cls, directory: str | Path, manifest: dict | None = None) -> "BPETokenizer":
        directory = Path(directory)
        mpath = directory / "manifest.json"
        if manifest is None:
            manifest = read_manifest(directory, kind="tokenizer")
        if manifest.get("algorithm") != cls.algorithm:
            raise ValueError(f"{mpath}: algorithm is {manifest.get('algorithm')!r}, expected {cls.algorithm!r}")
        pattern, special, roles = manifest.get("pattern"), manifest.get("special_tokens"), manifest.get("roles")
        if not isinstance(pattern, str):
            raise ValueError(f"{mpath}: 'pattern' must be a regex string")
        if not isinstance(special, dict) or not all(isinstance(k, str) and type(v) is int for k, v in special.items()):
            raise ValueError(f"{mpath}: 'special_tokens' must map strings to integer ids")
        if roles is not None and not isinstance(roles, dict):
            raise ValueError(f"{mpath}: 'roles' must be an object like {{\"eos\": \"<|eos|>\"}}")
        ranks = read_ranks(directory / RANKS_FILE)
        try:
            tok = cls(ranks, pattern=pattern, special_tokens=special, roles=roles)
        except ValueError as e:
            raise ValueError(f"{directory}: {e}") from None
        if manifest.get("vocab_size") != tok.vocab_size:
            raise ValueError(f"{mpath}: vocab_size is {manifest.get('vocab_size')!r} but {RANKS_FILE} and "
                             f"special_tokens define {tok.vocab_size} tokens")
        if manifest.get("hash") not in (None, tok.hash):
            raise ValueError(f"{directory}: hash mismatch (manifest {manifest['hash'][:12]}..., files "
                             f"{tok.hash[:12]}...): {RANKS_FILE} or manifest.json was modified after saving")
        return tok


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """Read a tiktoken ranks file, validating every line; errors name `file:line`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a BPE tokenizer dir needs {RANKS_FILE})")
    ranks: dict[bytes, int] = {}
    line_of_rank: dict[int, int] = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<base64 token> <rank>', got {line[:80]!r}")
            try:
                token = base64.b64decode(parts[0], validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{path}:{lineno}: invalid base64 token {parts[0][:80]!r}") from None
            if not parts[1].isdigit():
                raise ValueError(f"{path}:{lineno}: rank must be a non-negative integer, got {parts[1][:40]!r}")
            rank = int(parts[1])
            if not token:
                raise ValueError(f"{path}:{lineno}: empty token")
            if token in ranks:
                raise ValueError(f"{path}:{lineno}: duplicate token {token!r} (also rank {ranks[token]})")
            if rank in line_of_rank:
                raise ValueError(f"{path}:{lineno}: duplicate rank {rank} (also on line {line_of_rank[rank]})")
            ranks[token] = rank
            line_of_rank[rank] = lineno
    if not ranks:
        raise ValueError(f"{path}: no tokens")
    if max(line_of_rank) != len(ranks) - 1:
        gap = next(r for r in range(len(ranks)) if r not in line_of_rank)
        raise ValueError(f"{path}: ranks must be 0..{len(ranks) - 1} without gaps; rank {gap} is missing")
    return ranks


# ====================================================================================================
# Training
# ====================================================================================================

def _count_batch(batch: list[str], pattern: str, counts: collections.Counter | None = None) -> collections.Counter:
    """Count the pre-token chunks (as str) of a batch of texts, into `counts` or a new Counter."""
    findall = compile_pattern(pattern).findall
    counts = collections.Counter() if counts is None else counts
    for text in batch:
        counts.update(findall(text))  # Counter.update(list) counts in C
    return counts


def _batches(texts: Iterable[str], batch_chars: int) -> Iterator[list[str]]:
    batch, size = [], 0
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"training texts must be str, got {type(text).__name__}")
        batch.append(text)
        size += len(text)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _utf8(chunk: str) -> bytes:
    try:
        return chunk.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: replace with U+FFFD, as tiktoken does when encoding
        return chunk.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def count_chunks(texts: Iterable[str], pattern: str = DEFAULT_PATTERN, num_workers: int = 1,
                 batch_chars: int = 1 << 21, show_progress: bool = False) -> dict[bytes, int]:
    """Step 1: {chunk bytes: frequency} over all texts.

    num_workers > 1 counts batches of ~`batch_chars` characters in worker processes, with at most two
    batches per worker in flight so a huge corpus is never all in memory. The default is 1 because on the
    2-core development machine (shared with other jobs) workers were slower: 24 MB took 3.6 s with 2
    processes vs 2.1 s in one, as each batch's Counter is pickled back to the parent; and counting is under
    10% of training time. Many idle cores and a corpus of GBs are where workers pay off."""
    pattern = resolve_pattern(pattern)
    from tqdm import tqdm

    total: collections.Counter = collections.Counter()
    bar = tqdm(desc="counting chunks", unit="char", unit_scale=True, disable=not show_progress)
    if num_workers <= 1:
        for batch in _batches(texts, batch_chars):
            _count_batch(batch, pattern, total)
            bar.update(sum(map(len, batch)))
    else:
        with multiprocessing.get_context().Pool(num_workers) as pool:
            pending: collections.deque = collections.deque()
            for batch in _batches(texts, batch_chars):
                pending.append((pool.apply_async(_count_batch, (batch, pattern)), sum(map(len, batch))))
                while len(pending) > 2 * num_workers or (pending and pending[0][0].ready()):
                    result, n = pending.popleft()
                    total.update(result.get())
                    bar.update(n)
            for result, n in pending:
                total.update(result.get())
                bar.update(n)
    bar.close()
    counts: dict[bytes, int] = collections.defaultdict(int)
    for chunk, n in total.items():
        counts[_utf8(chunk)] += n
    return dict(counts)


def learn_merges(chunk_counts: Mapping[bytes, int], num_tokens: int, min_frequency: int = 2,
                 show_progress: bool = False) -> tuple[list[bytes], list[tuple[int, int, int]]]:
    """Steps 2-4: learn up to `num_tokens` new tokens from {chunk bytes: frequency}.

    Returns (vocab, merges): vocab[i] = bytes of token i (256 single bytes first, then learned tokens);
    merges = [(a, b, c), ...] in order: pair (a, b) was merged into token c. Stops early (with fewer
    tokens) when no pair occurs at least `min_frequency` times.

    Representation trick: token id t is stored as the character chr(t) (ids < 2**17 <= 0x10FFFF), so a
    chunk is a Python str, a pair is a 2-character str, and "merge every (a, b) in this chunk, left to
    right" is `chunk.split(a + b)` + `c.join(parts)`, done in C. Python code only runs per occurrence."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small containers: the cyclic GC would rescan them all, over and over
    try:
        return _learn_merges(chunk_counts, num_tokens, max(min_frequency, 1), show_progress)
    finally:
        if gc_was_enabled:
            gc.enable()


def _heap_key(count: int, pair: str) -> int:
    """Heap entries are single ints (fast to compare): -count in the high bits, the pair's two ids below,
    so the smallest entry is the highest count, then the lexicographically smallest pair (a, b)."""
    return ((ord(pair[0]) << 17) | ord(pair[1])) - (count << _PAIR_BITS)


_PAIR_BITS = 34  # two 17-bit token ids
_PAIR_MASK = (1 << _PAIR_BITS) - 1


def _learn_merges(chunk_counts, num_tokens, min_frequency, show_progress):
    vocab: list[bytes] = [bytes([i]) for i in range(256)]
    token_id: dict[bytes, int] = {tok: i for i, tok in enumerate(vocab)}
    # words[i]: unique chunk i as a str of token characters (latin-1 maps byte b to chr(b)); freqs[i]: count.
    words: list[str] = []
    freqs: list[int] = []
    for chunk, f in chunk_counts.items():
        if len(chunk) > 1 and f > 0:  # a one-byte chunk has no pair to merge
            words.append(chunk.decode("latin-1"))
            freqs.append(f)
    weight = freqs.__getitem__  # sum(map(weight, chunk_ids)) = total frequency of those chunks

    # Step 2: for each pair, the chunk ids holding it (once per occurrence), then weighted counts and the
    # index pair -> set of chunk ids. Index entries may go stale later (the pair was merged away); that
    # only costs a wasted split.
    occurrences: dict[str, list[int]] = collections.defaultdict(list)
    for i, w in enumerate(words):
        for pair in map(operator.add, w, w[1:]):  # all adjacent 2-character substrings
            occurrences[pair].append(i)
    counts: dict[str, int] = {}
    where: dict[str, set[int]] = {}
    for pair, ids in occurrences.items():
        counts[pair] = sum(map(weight, ids))
        where[pair] = set(ids)
    del occurrences
    heap = [_heap_key(n, pair) for pair, n in counts.items() if n >= min_frequency]
    heapq.heapify(heap)

    merges: list[tuple[int, int, int]] = []
    from tqdm import tqdm

    bar = tqdm(total=num_tokens, desc="bpe merges", unit="merge", disable=not show_progress, mininterval=0.5)
    while len(vocab) < 256 + num_tokens:
        # Step 4: the best pair. Entries are snapshots; pop stale ones until the top is current.
        while heap:
            top = heap[0]
            snapshot = -(top >> _PAIR_BITS)
            pair = chr((top & _PAIR_MASK) >> 17) + chr(top & 0x1FFFF)
            n = counts.get(pair, 0)
            if n == snapshot:
                break
            heapq.heappop(heap)
            if min_frequency <= n < snapshot:  # count fell since the push: re-queue with the true count
                heapq.heappush(heap, _heap_key(n, pair))
            # n > snapshot: a fresher entry is already queued; n < min_frequency: can never win
        else:
            break  # no pair occurs min_frequency times
        heapq.heappop(heap)
        a, b = pair
        merged = vocab[ord(a)] + vocab[ord(b)]
        c = token_id.get(merged)
        if c is None:
            c = token_id[merged] = len(vocab)
            vocab.append(merged)
            bar.update(1)
        merges.append((ord(a), ord(b), c))
        cc = chr(c)

        # Step 3: rewrite the chunks holding (a, b). Occurrence t sits between parts[t] and parts[t+1];
        # its left neighbour x is the last char of parts[t] (or c, if the previous occurrence is adjacent)
        # and its right neighbour y the first char of parts[t+1] (or a, if the next occurrence is
        # adjacent). Record the chunk id under each neighbour; counts are updated per neighbour below.
        lefts: dict[str, list[int]] = collections.defaultdict(list)
        rights: dict[str, list[int]] = collections.defaultdict(list)
        for i in where.pop(pair, ()):
            parts = words[i].split(pair)
            k = len(parts) - 1  # number of occurrences
            if k == 1:  # the common case
                left, right = parts
                if left:
                    lefts[left[-1]].append(i)
                if right:
                    rights[right[0]].append(i)
            elif k == 0:
                continue  # stale index entry
            else:
                for t in range(k):
                    if parts[t]:
                        lefts[parts[t][-1]].append(i)
                    elif t:
                        lefts[cc].append(i)
                    if parts[t + 1]:
                        rights[parts[t + 1][0]].append(i)
                    elif t + 1 < k:
                        rights[a].append(i)
            words[i] = cc.join(parts)
        del counts[pair]  # every occurrence is gone

        # (x, a) -> (x, c) for each left neighbour x; (b, y) -> (c, y) for each right neighbour y.
        for is_left, neighbours in ((True, lefts), (False, rights)):
            for z, ids in neighbours.items():
                n = sum(map(weight, ids))
                old, new = (z + a, z + cc) if is_left else (b + z, cc + z)
                if old != pair:  # (a, a) pairs: "aaa" -> "ca" also removes the merged pair's overlap
                    counts[old] = counts.get(old, 0) - n
                total = counts[new] = counts.get(new, 0) + n
                if new in where:  # only when c is an existing token (reused), or (c, c)
                    where[new].update(ids)
                else:
                    where[new] = set(ids)
                if total >= min_frequency:
                    heapq.heappush(heap, _heap_key(total, new))
    bar.close()
    return vocab, merges


# A letter or digit followed by a line break: a pre-token boundary for the GPT-2 and GPT-4 patterns that
# does not depend on what follows, so a file cut there pre-tokenizes exactly like the whole file.
_CUT_RE = regex.compile(r"(?r)[\p{L}\p{N}](?=[\r\n])")  # (?r): search backwards, find the last one


def _read_text_file(path: Path, block_bytes: int = 1 << 22) -> Iterator[str]:
    """Yield a UTF-8 file as text blocks of about `block_bytes`, cut at `_CUT_RE` points (a file with no
    such point for 16 blocks is cut at any newline). Decoding errors name `file:line`."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines, rest = 0, ""
    with open(path, "rb") as f:
        while True:
            data = f.read(block_bytes)
            try:
                buf = rest + decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                line = newlines + e.object[:e.start].count(b"\n") + 1
                raise ValueError(f"{path}:{line}: invalid UTF-8 ({e.reason})") from None
            newlines += data.count(b"\n")
            cut = len(buf)
            if data:
                m = _CUT_RE.search(buf)
                cut = m.end() if m else 0
                if not cut and len(buf) > 16 * block_bytes:
                    cut = buf.rfind("\n") + 1
            if cut:
                block, rest = buf[:cut], buf[cut:]
                if block:
                    yield block
            else:
                rest = buf
            if not data:
                return


def train_bpe(texts: Iterable[str] | str | None = None, vocab_size: int = 4096, *,
              files: Iterable[str | Path] | None = None, pattern: str = DEFAULT_PATTERN,
              special_tokens: Sequence[str] | None = None, min_frequency: int = 2,
              show_progress: bool = True, num_workers: int = 1) -> BPETokenizer:
    """Train a byte-level BPE tokenizer.

    texts: strings (documents) and/or files: UTF-8 text files. vocab_size counts everything: 256 bytes +
    learned tokens + special tokens (default: the 16 of base.default_special_tokens()). pattern: a regex or
    "gpt2"/"gpt4". min_frequency: a pair must occur this often to be merged; if the corpus runs out of
    such pairs the vocabulary comes out smaller (with a warning)."""
    specials = default_special_tokens() if special_tokens is None else list(special_tokens)
    if len(set(specials)) != len(specials) or not all(isinstance(s, str) and s for s in specials):
        raise ValueError(f"special_tokens must be distinct non-empty strings, got {specials}")
    if not 256 + len(specials) <= vocab_size <= MAX_VOCAB_SIZE:
        raise ValueError(f"vocab_size={vocab_size} is out of range: it must be at least 256 byte tokens + "
                         f"{len(specials)} special tokens = {256 + len(specials)}, and at most {MAX_VOCAB_SIZE}")
    pattern = resolve_pattern(pattern)
    if isinstance(texts, str):
        texts = [texts]

    def all_texts() -> Iterator[str]:
        yield from texts or ()
        for path in files or ():
            yield from _read_text_file(Path(path))

    chunk_counts = count_chunks(all_texts(), pattern, num_workers=num_workers, show_progress=show_progress)
    if not chunk_counts:
        raise ValueError("empty training corpus: the texts/files contain no characters to learn from")
    num_tokens = vocab_size - 256 - len(specials)
    vocab, _ = learn_merges(chunk_counts, num_tokens, min_frequency=min_frequency, show_progress=show_progress)
    if len(vocab) < 256 + num_tokens:
        warnings.warn(f"BPE training stopped after {len(vocab) - 256} of {num_tokens} merges: no pair occurs "
                      f">= min_frequency={min_frequency} times; vocab_size is {len(vocab) + len(specials)} "
                      f"instead of {vocab_size}", stacklevel=2)
    ranks = {tok: i for i, tok in enumerate(vocab)}
    return BPETokenizer(ranks, pattern=pattern, special_tokens={s: len(vocab) + k for k, s in enumerate(specials)})

"""A factorised packet head's tables (train/model.py): which head output each packet id belongs to, and how the exact
length is drawn inside it.

The model scores (direction, length bucket). Buckets are quantiles of the training lengths of each direction, so every
bucket holds about as many packets; a length frequent enough to fill a quantile (0, the MSS, a protocol's fixed
message) is a bucket alone and keeps its exact probability; a grid caps a bucket's width at a quarter of its lowest
length (8 bytes below 32), so that rare lengths share only with near neighbours.

Inside a bucket there are two tables, both from the training packets:
- class-blind, `logp`: the model's logit of an id is its bucket's plus log P(id | bucket), each id's share of the
  bucket's packets plus one packet spread evenly over the bucket's lengths, so a length never seen stays possible;
- per class, `redraw`: generation keeps the bucket the model drew and draws the exact length from the flow's own
  class, its packets in that bucket plus CLASS_PRIOR pseudo-packets spread as the class-blind table. The model embeds
  buckets, not lengths, so what it generates next does not depend on which length was drawn: this is the model with a
  per-class table, without a per-class input in its graph. Real flows redrawn through the class-blind table move far
  from real lengths' statistics; through the per-class one, hardly (docs/benchmarks.md, factorised packet head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID_MIN, GRID_STEP = 32, 1.25
CLASS_PRIOR = 0.5  # pseudo-packets of the class-blind table in each class's table (2 did as well)


def bucket_lows(counts: np.ndarray, per_direction: int) -> np.ndarray:
    """Lowest length of each bucket, ascending, from one direction's (max_len + 1,) length counts."""
    top = len(counts) - 1
    grid = [*range(0, GRID_MIN, 8), *np.unique(np.round(GRID_MIN * GRID_STEP ** np.arange(
        int(np.log(top / GRID_MIN) / np.log(GRID_STEP)) + 1)).astype(int))]
    lows = set(grid)
    total = counts.sum()
    if total:
        lows |= set(np.searchsorted(np.cumsum(counts), total * np.arange(1, per_direction) / per_direction,
                                    side="right").tolist())
        heavy = np.flatnonzero(counts * per_direction >= total)
        lows |= set(heavy.tolist()) | set((heavy + 1).tolist())
    return np.array(sorted(x for x in lows if x <= top), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class LengthHead:
    """The tables of one factorised head over a vocabulary whose packet ids are `packet_base` and the `packets` ids
    after it, two directions of equal width (runtime/tokenizer.py). An output's ids are consecutive."""

    head_of: np.ndarray  # (vocab,) int64: each id's head output
    logp: np.ndarray  # (vocab,) float64: log P(id | its output), class-blind
    # per class and packet id, flattened: (class x packet outputs + the id's output among them) plus the cumulative
    # P(id | output) of the class inside the output; increasing, so one searchsorted draws every packet of a batch
    keys: np.ndarray  # (n_classes * packets,) float64
    bucket: np.ndarray  # (packets,) int64: each packet id's (offset's) output among the packet outputs
    first: np.ndarray  # (packets,) int64: the first and last packet id (offset) of each id's output
    last: np.ndarray
    packet_base: int

    @classmethod
    def fit(cls, counts: np.ndarray, per_direction: int, packet_base: int, vocab: int) -> "LengthHead":
        """From (n_classes, packets) training packet counts per class and packet id (offset from packet_base).

        Outputs: each id before the packets its own, then the buckets of each direction, then each id after them."""
        packets = counts.shape[1]
        width = packets // 2
        total = counts.sum(0)
        bucket = np.empty(packets, dtype=np.int64)  # each packet id's bucket, numbered across both directions
        blind = np.empty(packets)  # P(id | bucket), class-blind
        for d in range(2):
            ids = slice(d * width, (d + 1) * width)
            c = total[ids]
            b = np.searchsorted(bucket_lows(c, per_direction), np.arange(width), side="right") - 1
            mass = c + 1.0 / np.bincount(b)[b]
            blind[ids] = mass / np.bincount(b, weights=mass)[b]
            bucket[ids] = b + (bucket[width - 1] + 1 if d else 0)
        n_buckets = int(bucket[-1]) + 1
        head_of = np.arange(vocab) + n_buckets - packets  # ids after the packets: an output each
        head_of[:packet_base] = np.arange(packet_base)
        head_of[packet_base : packet_base + packets] = packet_base + bucket
        logp = np.zeros(vocab)
        logp[packet_base : packet_base + packets] = np.log(blind)
        mass = counts + CLASS_PRIOR * blind  # (n_classes, packets): every share > 0
        sums = np.stack([np.bincount(bucket, weights=m, minlength=n_buckets) for m in mass])  # (n_classes, buckets)
        share = mass / sums[:, bucket]
        cum = np.cumsum(share, axis=1)
        before = np.concatenate([np.zeros((len(cum), 1)), cum[:, :-1]], axis=1)  # cumulative before each id
        first = np.searchsorted(bucket, bucket)
        last = np.searchsorted(bucket, bucket, side="right") - 1
        keys = bucket + cum - before[:, first] + n_buckets * np.arange(len(counts))[:, None]
        return cls(head_of, logp, keys.ravel(), bucket, first, last, packet_base)

    @property
    def size(self) -> int:
        """Head outputs."""
        return int(self.head_of.max()) + 1

    def redraw(self, ids: np.ndarray, classes: np.ndarray | int, u: np.ndarray) -> np.ndarray:
        """Packet ids (rows, n) or (n,) -> ids of the same outputs, each drawn from its row's class table (`classes`:
        (rows,) class indices, or one) with its uniform in [0, 1) (u, shaped as ids); other ids pass unchanged."""
        ids = np.asarray(ids, dtype=np.int64)
        c = np.broadcast_to(np.asarray(classes)[..., None] if np.ndim(classes) else classes, ids.shape)
        off = ids - self.packet_base
        packet = (off >= 0) & (off < len(self.last))
        off, c = off[packet], c[packet]
        packets, n_buckets = len(self.last), int(self.bucket[-1]) + 1
        pick = np.searchsorted(self.keys, c * n_buckets + self.bucket[off] + u[packet], side="right") - c * packets
        pick = np.clip(pick, self.first[off], self.last[off])  # where rounding crossed the output's edge
        out = ids.copy()
        out[packet] = self.packet_base + pick
        return out
